"""The catalog push (issue 20, SPEC 7 amended) against the real stack and a real receiver on loopback: a
group change arrives as seed 003's catalog.update, signed (verified on the raw bytes), with its media; and
`--backfill` sends the tenant's current state, then live changes, losing nothing and repeating nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from cli import main as cli
from cli.testing import wait_for
from connectors.notify import backfill, payload, subscriptions
from stockledger.db import migrate
from stockledger.produce import producer_config
from stockledger.security import sign, verify
from tests.connectors import support
from tests.connectors.notify_support import T0, NotifierThread, Receiver, deliveries, level, notify_settings

SECRET = "whsec_catalog_0123456789abcdef"


@pytest.fixture
def env(sink_db, stack, settings):
    url, engine = sink_db
    migrate.upgrade(engine)
    prefix = support.new_prefix()
    topics = [prefix + "stock.levels", prefix + "catalog.groups"]
    support.create_topics(settings, topics)
    yield url, engine, prefix, f"test-notify-{uuid.uuid4().hex[:8]}"
    support.delete_topics(settings, topics)


def group(tenant: str, gid: str, version: int, variants: list[dict], **fields) -> dict:
    """The catalog.groups record of a group's version."""
    return {"tenant_id": tenant, "product_group_id": gid, "version": version,
            "updated_at": T0 + timedelta(minutes=version), "event_id": f"cat-{gid}-{version}",
            "group_name": fields.get("group_name", gid), "description": fields.get("description"),
            "category_hierarchy": fields.get("category_hierarchy", []), "tax_hsn": fields.get("tax_hsn"),
            "is_active": fields.get("is_active", True), "tax_rate": fields.get("tax_rate"),
            "variants": [{"display_name": v["sku"], "mrp": None, "attributes": {}, "media": [], **v}
                         for v in variants]}


def publish(settings, codec, prefix: str, records: list[tuple[str, dict]]) -> None:
    """(topic, record) in order: stock.levels keyed `<tenant>:<sku>`, catalog.groups `<tenant>:<group>`."""
    producer = Producer(producer_config(settings))
    for topic, rec in records:
        key = rec["sku"] if topic == "stock.levels" else rec["product_group_id"]
        producer.produce(prefix + topic, codec.encode(topic, rec), f"{rec['tenant_id']}:{key}".encode())
    assert producer.flush(30) == 0


def test_a_group_change_arrives_signed_with_its_media(env, settings, codec, tenant):
    url, engine, prefix, group_id = env
    g = group(tenant, "PG-1001", 1, [
        {"sku": "IPH15-128-BLK", "display_name": "iPhone 15 128GB Black", "price": Decimal("79900.0000"),
         "mrp": Decimal("89900.0000"), "attributes": {"Color": "Black", "Storage": "128GB"},
         "media": [{"url": "https://erp-cdn.com/u/iph15-blk.jpg", "is_main": True},
                   {"url": "https://erp-cdn.com/u/iph15-blk-back.jpg", "is_main": False}]},
        {"sku": "IPH15-128-BLU", "display_name": "iPhone 15 128GB Blue", "price": Decimal("79900.5000")}],
        group_name="iPhone 15", description="<p>Full HTML...</p>",
        category_hierarchy=["Electronics", "Smartphones", "Apple"], tax_hsn="85171300", tax_rate=Decimal("18.0000"))
    with Receiver() as rx:
        subscriptions.add(engine, settings.master_key(), tenant, rx.url, events=("catalog.update",), secret=SECRET,
                          allow_private=True)
        with NotifierThread(notify_settings(settings, url), prefix, group_id):
            publish(settings, codec, prefix, [("catalog.groups", g), ("stock.levels", level(tenant, "X", 5, 1))])
            wait_for(lambda: len(rx.ok()) == 1, 30, "the catalog delivery", interval=0.05)
            key = payload.group_key("PG-1001")
            wait_for(lambda: deliveries(engine, tenant)[key]["pending_offset"] is None, 10, "the delivery recorded",
                     interval=0.05)
            rows = deliveries(engine, tenant)
    assert len(rx.requests) == 1 and set(rows) == {key}  # the stock change: not subscribed
    r = rx.requests[0]
    ts = r.headers["X-ERP-Timestamp"]
    assert r.headers["X-ERP-Signature"] == sign(SECRET, r.body, ts)
    assert verify([SECRET], r.body, r.headers["X-ERP-Signature"], ts)
    assert not verify([SECRET], r.body.replace(b"blk-back", b"blk-bak"), r.headers["X-ERP-Signature"], ts)
    eid = payload.catalog_event_id(g)
    assert r.headers["X-ERP-Event-Id"] == eid
    assert r.body.decode() == (
        '{"event_id":"' + eid + '","event_type":"catalog.update","tenant_id":"' + tenant + '",'
        '"timestamp":"2026-03-01T10:01:00Z","data":{"product_group_id":"PG-1001","group_name":"iPhone 15",'
        '"description":"<p>Full HTML...</p>","category_hierarchy":["Electronics","Smartphones","Apple"],'
        '"tax_hsn":"85171300","is_active":true,"tax_rate":18.00,"variants":['
        '{"sku":"IPH15-128-BLK","display_name":"iPhone 15 128GB Black","price":79900.00,"mrp":89900.00,'
        '"attributes":{"Color":"Black","Storage":"128GB"},"media":[{"url":"https://erp-cdn.com/u/iph15-blk.jpg",'
        '"is_main":true},{"url":"https://erp-cdn.com/u/iph15-blk-back.jpg","is_main":false}]},'
        '{"sku":"IPH15-128-BLU","display_name":"iPhone 15 128GB Blue","price":79900.50,"attributes":{},'
        '"media":[]}]}}')


def _seen(r) -> tuple:
    doc = r.doc
    if doc["event_type"] == "catalog.update":
        return ("group", doc["data"]["product_group_id"], doc["data"]["group_name"])
    return ("sku", doc["data"]["sku"], doc["data"]["new_quantity"])


def test_backfill_then_live_loses_nothing_and_repeats_nothing(env, settings, codec, tenant):
    url, engine, prefix, group_id = env
    other = f"{tenant}-other"
    before = [("stock.levels", level(tenant, "A", 10, 1)), ("stock.levels", level(tenant, "A", 9, 2)),
              ("stock.levels", level(tenant, "B", 4, 1)), ("stock.levels", level(other, "A", 1, 1)),
              ("catalog.groups", group(tenant, "G1", 1, [{"sku": "A", "price": Decimal(5)}], group_name="G1 v1")),
              ("catalog.groups", group(tenant, "G2", 1, [{"sku": "C", "price": Decimal(7)}], group_name="G2 v1")),
              ("catalog.groups", group(other, "G9", 1, [{"sku": "Z", "price": Decimal(1)}], group_name="other"))]
    with Receiver() as rx:
        with NotifierThread(notify_settings(settings, url), prefix, group_id) as nt:
            publish(settings, codec, prefix, before)
            wait_for(lambda: nt.notifier.stats.records == len(before), 30, "the state consumed (no subscriber yet)")
            sub, _ = subscriptions.add(engine, settings.master_key(), tenant, rx.url,
                                       events=("inventory.change", "catalog.update"), secret=SECRET,
                                       allow_private=True)
            # a change between the subscription and the snapshot: live, and in the snapshot too
            publish(settings, codec, prefix, [("stock.levels", level(tenant, "A", 8, 3))])
            wait_for(lambda: len(rx.ok()) == 1, 30, "the live change")
            wait_for(lambda: deliveries(engine, tenant)["A"]["pending_offset"] is None, 10, "it recorded")
            first = backfill.run(settings, engine, sub, topic_prefix=prefix, codec=codec)
            assert (first.levels, first.catalog_only, first.groups, first.records) == (3, 1, 2, len(before) + 1)
            wait_for(lambda: len(rx.ok()) == 5, 30, "the backfill delivered")
            wait_for(lambda: all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 10,
                     "the backfill recorded")
            publish(settings, codec, prefix, [
                ("stock.levels", level(tenant, "B", 3, 2)),
                ("catalog.groups", group(tenant, "G1", 2, [{"sku": "A", "price": Decimal(6)}], group_name="G1 v2"))])
            wait_for(lambda: len(rx.ok()) == 7, 30, "the live changes after the backfill")
            wait_for(lambda: all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 10,
                     "the live changes recorded")
            # a second backfill finds everything delivered: nothing becomes pending, so nothing is sent again
            again = backfill.run(settings, engine, sub, topic_prefix=prefix, codec=codec)
            assert (again.levels, again.groups) == (3, 2)
            assert [k for k, d in deliveries(engine, tenant).items() if d["pending_offset"] is not None] == []
            assert nt.metric("stockledger_webhook_pending", tenant=tenant) == 0
    seen = [_seen(r) for r in rx.requests]
    assert all(r.status == 200 for r in rx.requests) and len(seen) == 7
    assert seen[0] == ("sku", "A", 8)
    assert sorted(seen[1:5]) == [("group", "G1", "G1 v1"), ("group", "G2", "G2 v1"), ("sku", "B", 4), ("sku", "C", 0)]
    assert sorted(seen[5:]) == [("group", "G1", "G1 v2"), ("sku", "B", 3)]
    for r in rx.requests:
        assert verify([SECRET], r.body, r.headers["X-ERP-Signature"], r.headers["X-ERP-Timestamp"])
        assert r.doc["tenant_id"] == tenant


def test_webhook_add_with_backfill_and_backfill_again(env, settings, codec, tenant, capsys):
    url, engine, prefix, group_id = env
    db = ["--database-url", url, "--topic-prefix", prefix]
    publish(settings, codec, prefix, [
        ("stock.levels", level(tenant, "A", 3, 1)),
        ("catalog.groups", group(tenant, "G1", 1, [{"sku": "A", "price": Decimal(5)},
                                                  {"sku": "B", "price": Decimal(1)}]))])
    with Receiver() as rx:
        code = cli.main(["webhook", "add", tenant, rx.url, "--events", "inventory.change,catalog.update",
                         "--secret", SECRET, "--allow-private-url", "--backfill", *db])
        out = capsys.readouterr().out
        assert code == 0
        sub_id = out.split()[1].rstrip(":")
        assert out.splitlines()[1] == "backfill: 2 SKU levels (1 catalog-only at 0), 1 groups from 2 records"
        with NotifierThread(notify_settings(settings, url), prefix, group_id):
            wait_for(lambda: len(rx.ok()) == 3, 30, "the backfill delivered")
            wait_for(lambda: all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 10,
                     "the backfill recorded")
            assert cli.main(["webhook", "backfill", sub_id, *db]) == 0
            assert capsys.readouterr().out == "backfill: 2 SKU levels (1 catalog-only at 0), 1 groups from 2 records\n"
            assert [k for k, d in deliveries(engine, tenant).items() if d["pending_offset"] is not None] == []
        assert cli.main(["webhook", "backfill", "wh_nope", *db]) == 2
    assert sorted(_seen(r) for r in rx.requests) == [("group", "G1", "G1"), ("sku", "A", 3), ("sku", "B", 0)]


def test_the_body_writes_money_exactly_and_leaves_unknowns_out():
    g = group("acme", "G", 3, [{"sku": "S", "price": Decimal("0.1000"), "mrp": Decimal("12345678901234.5678")}])
    eid, body = payload.catalog_body(g)
    assert body == ('{"event_id":"' + eid + '","event_type":"catalog.update","tenant_id":"acme",'
                    '"timestamp":"2026-03-01T10:03:00Z","data":{"product_group_id":"G","group_name":"G",'
                    '"category_hierarchy":[],"is_active":true,"variants":[{"sku":"S","display_name":"S","price":0.10,'
                    '"mrp":12345678901234.5678,"attributes":{},"media":[]}]}}')
    assert eid == payload.catalog_event_id(g) != payload.catalog_event_id({**g, "version": 4})
    assert payload.shown_key(payload.group_key("G")) == "group G" and payload.shown_key("SKU-1") == "SKU-1"
