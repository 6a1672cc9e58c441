"""Outbound webhooks against the real stack and a real receiver on loopback (issue 12): signed and
verifiable, retried with the newest level, 400 never retried, the breaker, dead letters, a slow
receiver under 1,000 changes, and a notifier killed mid-delivery."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid

import pytest
from sqlalchemy import text

from connectors import migrate
from connectors.notify import payload, subscriptions
from stockledger.security import sign, verify
from stockledger.testing import wait_for
from tests.connectors import support
from tests.connectors.notify_support import (NotifierThread, Receiver, deliveries, failures, level, notify_settings,
                                             publish_levels)

SECRET = "whsec_test_0123456789abcdef"


@pytest.fixture
def levels_topic(stack, settings):
    """`<prefix>stock.levels`, this test's own (deleted after)."""
    prefix = support.new_prefix()
    topic = prefix + "stock.levels"
    support.create_topics(settings, [topic])
    yield prefix, topic
    support.delete_topics(settings, [topic])


@pytest.fixture
def env(sink_db, levels_topic, settings):
    url, engine = sink_db
    migrate.upgrade(engine)
    prefix, topic = levels_topic
    return url, engine, prefix, topic, f"test-notify-{uuid.uuid4().hex[:8]}"


def _subscribe(engine, settings, tenant, url) -> str:
    sub, _ = subscriptions.add(engine, settings.master_key(), tenant, url, secret=SECRET, allow_private=True)
    return sub.subscription_id


def test_a_change_reaches_the_receiver_signed_and_verifiable(env, settings, codec, tenant):
    url, engine, prefix, topic, group = env
    with Receiver() as rx:
        _subscribe(engine, settings, tenant, rx.url)
        with NotifierThread(notify_settings(settings, url), prefix, group) as nt:
            publish_levels(settings, codec, topic, [level(tenant, "IPH15-128-BLK", 49, 1, reason="POS_SALE"),
                                                    level(tenant, "NOLOC", 7, 1, reason=None, location=None)])
            wait_for(lambda: len(rx.ok()) == 2, 30, "two deliveries", interval=0.05)
            wait_for(lambda: all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 10,
                     "the deliveries recorded", interval=0.05)
            assert nt.metric("stockledger_webhook_deliveries_total", tenant=tenant) == 2
            assert nt.metric("stockledger_webhook_delivery_latency_seconds_count", tenant=tenant) == 2
    by_sku = {r.sku: r for r in rx.requests}
    assert len(rx.requests) == 2
    r = by_sku["IPH15-128-BLK"]
    ts = r.headers["X-ERP-Timestamp"]
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-ERP-Signature"] == sign(SECRET, r.body, ts)
    assert verify([SECRET], r.body, r.headers["X-ERP-Signature"], ts)
    assert not verify(["another secret"], r.body, r.headers["X-ERP-Signature"], ts)
    assert not verify([SECRET], r.body.replace(b"49", b"48"), r.headers["X-ERP-Signature"], ts)
    doc = r.doc
    assert doc == {"event_id": doc["event_id"], "event_type": "inventory.change", "tenant_id": tenant,
                   "timestamp": "2026-03-01T10:00:01Z",
                   "data": {"sku": "IPH15-128-BLK", "location_id": "WH-MAIN", "new_quantity": 49, "reason": "POS_SALE"}}
    assert doc["event_id"].startswith("evt_") and r.headers["X-ERP-Event-Id"] == doc["event_id"]
    assert by_sku["NOLOC"].doc["data"] == {"sku": "NOLOC", "new_quantity": 7}  # no location, reason unknown


def test_503_three_times_then_success_delivers_the_newest_level(env, settings, codec, tenant):
    url, engine, prefix, topic, group = env
    first_answer = threading.Event()
    with Receiver(respond=lambda n, body: 503 if n < 3 else 200, hold={0: first_answer}) as rx:
        _subscribe(engine, settings, tenant, rx.url)
        knobs = {"notify_retry_schedule": "500ms", "notify_timeout": "30s"}
        with NotifierThread(notify_settings(settings, url, **knobs), prefix, group):
            publish_levels(settings, codec, topic, [level(tenant, "A", 10, 1)])
            wait_for(lambda: len(rx.requests) == 1, 30, "the first try", interval=0.02)
            # while the first try waits for its 503, two newer levels arrive and the newest is pending
            newest = level(tenant, "A", 8, 3)
            publish_levels(settings, codec, topic, [level(tenant, "A", 9, 2), newest])
            wait_for(lambda: deliveries(engine, tenant)["A"]["pending_event_id"] == payload.event_id(newest), 30,
                     "the newest level pending")
            first_answer.set()
            wait_for(lambda: rx.ok(), 30, "a success")
            wait_for(lambda: deliveries(engine, tenant)["A"]["pending_offset"] is None, 10, "the success recorded")
            row = deliveries(engine, tenant)["A"]
    assert [(r.status, r.quantity) for r in rx.requests] == [(503, 10), (503, 8), (503, 8), (200, 8)]
    assert row["attempts"] == 0 and row["delivered_event_id"] == payload.event_id(newest)
    assert failures(engine, tenant) == []


def test_a_400_is_never_retried_and_is_listed_as_a_data_error(env, settings, codec, tenant):
    url, engine, prefix, topic, group = env
    with Receiver(respond=lambda n, body: 400) as rx:
        sid = _subscribe(engine, settings, tenant, rx.url)
        with NotifierThread(notify_settings(settings, url, notify_retry_schedule="200ms"), prefix, group) as nt:
            publish_levels(settings, codec, topic, [level(tenant, "A", 5, 1)])
            wait_for(lambda: len(failures(engine, tenant)) == 1, 30, "the data error row")
            publish_levels(settings, codec, topic, [level(tenant, "A", 4, 2)])
            wait_for(lambda: len(failures(engine, tenant)) == 2, 30, "the second data error row")
            # a retry would come 200 ms after a failure: give it ten times that to show up
            wait_for(lambda: nt.metric("stockledger_webhook_pending", tenant=tenant) == 0, 10, "nothing pending")
            time.sleep(2)
            assert nt.metric("stockledger_webhook_failures_total", tenant=tenant, **{"class": "client_error"}) == 2
    assert [(r.status, r.quantity) for r in rx.requests] == [(400, 5), (400, 4)]
    rows = failures(engine, tenant)
    assert [(f["kind"], f["status"], f["sku"], f["attempts"], f["subscription_id"]) for f in rows] == \
        [("data_error", 400, "A", 1, sid), ("data_error", 400, "A", 1, sid)]
    assert [json.loads(f["body"])["data"]["new_quantity"] for f in rows] == [5, 4]
    assert deliveries(engine, tenant)["A"]["pending_offset"] is None


def test_five_consecutive_failures_open_the_breaker_and_a_success_closes_it(env, settings, codec, tenant, caplog):
    url, engine, prefix, topic, group = env
    healthy = {"yes": False}
    caplog.set_level(logging.WARNING, logger="stockledger.notify")
    with Receiver(respond=lambda n, body: 200 if healthy["yes"] else 503) as rx:
        _subscribe(engine, settings, tenant, rx.url)
        knobs = {"notify_retry_schedule": "200ms", "notify_breaker_failures": 5, "notify_breaker_open": "4s"}
        with NotifierThread(notify_settings(settings, url, **knobs), prefix, group) as nt:
            publish_levels(settings, codec, topic, [level(tenant, "A", 10, 1)])
            wait_for(lambda: nt.metric("stockledger_webhook_breaker_state", endpoint=rx.url) == 2, 30, "breaker open",
                     interval=0.05)
            assert [r.status for r in rx.requests] == [503] * 5  # the fifth opened it; nothing sent since
            publish_levels(settings, codec, topic, [level(tenant, "B", 3, 1)])  # while open: not sent
            wait_for(lambda: nt.metric("stockledger_webhook_failures_total", tenant=tenant,
                                       **{"class": "circuit_open"}) >= 2, 30, "tries short-circuited", interval=0.05)
            assert len(rx.requests) == 5
            healthy["yes"] = True
            wait_for(lambda: {r.sku for r in rx.ok()} == {"A", "B"}, 30, "both delivered after the probe")
            wait_for(lambda: nt.metric("stockledger_webhook_breaker_state", endpoint=rx.url) == 0, 10, "breaker closed")
            wait_for(lambda: all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 10,
                     "nothing pending")
    statuses = [r.status for r in rx.requests]
    assert statuses[:5] == [503] * 5 and statuses[-2:] == [200, 200] and set(statuses[5:-2]) <= {503}
    assert sorted((r.sku, r.quantity) for r in rx.ok()) == [("A", 10), ("B", 3)]
    messages = [r.getMessage() for r in caplog.records]
    opened = [m for m in messages if m.startswith("breaker open for")]
    assert opened and "after 5 consecutive failures" in opened[0]
    assert any(m.startswith("breaker closed for") for m in messages)


def test_a_delivery_failing_past_the_maximum_age_is_dead_lettered(env, settings, codec, tenant, caplog):
    url, engine, prefix, topic, group = env
    caplog.set_level(logging.ERROR, logger="stockledger.notify")
    with Receiver(respond=lambda n, body: 503) as rx:
        sid = _subscribe(engine, settings, tenant, rx.url)
        knobs = {"notify_retry_schedule": "500ms", "notify_dead_letter_after": "2s"}
        with NotifierThread(notify_settings(settings, url, **knobs), prefix, group) as nt:
            publish_levels(settings, codec, topic, [level(tenant, "A", 10, 1)])
            wait_for(lambda: failures(engine, tenant), 30, "the dead letter")
            wait_for(lambda: nt.metric("stockledger_webhook_dead_letters_total", tenant=tenant) == 1, 10, "the metric")
            time.sleep(1.5)  # three retry delays: nothing more is tried
            tries = len(rx.requests)
    rows = failures(engine, tenant)
    assert [(f["kind"], f["status"], f["sku"], f["subscription_id"]) for f in rows] == [("dead_letter", 503, "A", sid)]
    assert rows[0]["attempts"] == tries >= 2 and json.loads(rows[0]["body"])["data"]["new_quantity"] == 10
    assert (rows[0]["created_at"] - rows[0]["first_failed_at"]).total_seconds() >= 2
    assert deliveries(engine, tenant)["A"]["pending_offset"] is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].getMessage().startswith(f"webhook dead-lettered: tenant {tenant}")


def test_1000_changes_of_10_skus_to_a_slow_receiver(env, settings, codec, tenant):
    url, engine, prefix, topic, group = env
    skus = [f"SKU-{i}" for i in range(10)]
    records = [level(tenant, skus[i % 10], 1000 - i, i // 10 + 1) for i in range(1000)]  # quantities fall
    last = {rec["sku"]: rec["available"] for rec in records}
    with Receiver(delay=0.2) as rx:
        _subscribe(engine, settings, tenant, rx.url)
        with NotifierThread(notify_settings(settings, url), prefix, group):
            for i in range(0, 1000, 100):  # in ten bursts, so that newer levels arrive while older ones are in flight
                publish_levels(settings, codec, topic, records[i:i + 100])
                time.sleep(0.15)
            wait_for(lambda: {s: r.quantity for r in rx.ok() for s in [r.sku]} == last and
                     all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 90,
                     "every SKU's last value delivered")
    per_sku: dict[str, list[int]] = {}
    for r in rx.requests:
        per_sku.setdefault(r.sku, []).append(r.quantity)
    assert set(per_sku) == set(skus)
    for sku, got in per_sku.items():
        assert got[-1] == last[sku]
        assert all(a > b for a, b in zip(got, got[1:])), f"{sku}: an older level after a newer one: {got}"
    assert len(rx.requests) <= 1000 and all(r.status == 200 for r in rx.requests)


def test_two_notifiers_share_the_work_and_never_send_a_level_twice(env, settings, codec, tenant):
    url, engine, prefix, topic, group = env
    skus = [f"S-{i:02d}" for i in range(20)]
    records = [level(tenant, skus[i % 20], 10_000 - i, i // 20 + 1) for i in range(600)]
    last = {rec["sku"]: rec["available"] for rec in records}
    with Receiver(delay=0.05) as rx:
        _subscribe(engine, settings, tenant, rx.url)
        s = notify_settings(settings, url)
        with NotifierThread(s, prefix, group):
            publish_levels(settings, codec, topic, records[:200])
            with NotifierThread(s, prefix, group):  # joins mid-stream: a rebalance under load
                for i in range(200, 600, 100):
                    publish_levels(settings, codec, topic, records[i:i + 100])
                    time.sleep(0.2)
                wait_for(lambda: {r.sku: r.quantity for r in rx.ok()} == last and
                         all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 60,
                         "every SKU's last value")
    ids = [r.doc["event_id"] for r in rx.requests]
    assert len(ids) == len(set(ids))  # claims are exclusive and a re-read record never becomes pending again
    for sku in skus:
        got = [r.quantity for r in rx.requests if r.sku == sku]
        assert got[-1] == last[sku] and got == sorted(got, reverse=True), (sku, got)


def test_sigkill_of_the_notifier_mid_delivery_loses_no_change(env, settings, codec, tenant):
    from stockledger.testing import WorkerProcess

    url, engine, prefix, topic, group = env
    skus = [f"K-{i:02d}" for i in range(20)]
    batches = [[level(tenant, sku, 100 * (b + 1) + i, b + 1) for i, sku in enumerate(skus)] for b in range(6)]
    last = {rec["sku"]: rec["available"] for rec in batches[-1]}
    with Receiver(delay=0.3) as rx:
        _subscribe(engine, settings, tenant, rx.url)
        from tests.connectors.notify_support import free_port

        proc = WorkerProcess(settings, f"notify-{tenant}", free_port(), command="notify", port_flag="--metrics-port",
                             ready_path="/metrics",
                             extra_args=["--database-url", url, "--topic-prefix", prefix, "--group", group],
                             env={"STOCKLEDGER_NOTIFY_RETRY_SCHEDULE": "300ms", "STOCKLEDGER_NOTIFY_TIMEOUT": "1s"})
        try:
            proc.start().wait_ready(60)
            for batch in batches[:3]:
                publish_levels(settings, codec, topic, batch)
                time.sleep(0.2)
            wait_for(lambda: len(rx.requests) >= 30, 30, "deliveries under way", interval=0.02)
            proc.kill(signal.SIGKILL)  # requests in flight, levels pending and maybe records not yet committed
            killed_at = len(rx.requests)
            for batch in batches[3:]:
                publish_levels(settings, codec, topic, batch)
            proc.start().wait_ready(60)
            wait_for(lambda: {r.sku: r.quantity for r in rx.ok()} == last and
                     all(d["pending_offset"] is None for d in deliveries(engine, tenant).values()), 60,
                     "every SKU's last value after the restart")
        finally:
            proc.kill()
    assert killed_at < len(rx.requests)
    per_sku: dict[str, list[int]] = {}
    for r in rx.ok():
        per_sku.setdefault(r.sku, []).append(r.quantity)
    assert set(per_sku) == set(skus)
    for sku, got in per_sku.items():
        assert got[-1] == last[sku]
        assert got == sorted(got), f"{sku}: an older level after a newer one: {got}"  # repeats allowed, once
    ids = [r.doc["event_id"] for r in rx.ok()]
    assert all(ids.count(i) <= 2 for i in ids)  # at least once; a repeat only for what was in flight at the kill


def test_end_to_end_an_inventory_change_reaches_the_receiver(sink_db, settings, codec, tenant, worker, publish):
    """A real inventory.changes event through the stream worker to stock.levels, then to the receiver."""
    from stockledger.testing import inventory_event

    url, engine = sink_db
    migrate.upgrade(engine)
    group = f"test-notify-{uuid.uuid4().hex[:8]}"
    # stock.levels is shared: start this group at its end, stored the way the notifier stores offsets
    start = support.end_offsets(settings, ["stock.levels"])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sink_offsets (group_id, topic, partition, next_offset) VALUES (:g, :t, :p, :o)"),
                     [{"g": group, "t": t, "p": p, "o": o} for (t, p), o in start.items()])
    with Receiver() as rx:
        _subscribe(engine, settings, tenant, rx.url)
        with NotifierThread(notify_settings(settings, url), "", group):
            publish("inventory.changes", [inventory_event(tenant, "E1", "IPH15-128-BLK", 5, new_quantity=50,
                                                          location_id="WH-MAIN", reason="GOODS_RECEIPT")])
            wait_for(lambda: rx.ok(), 90, "the delivery")
            publish("inventory.changes", [inventory_event(tenant, "E2", "IPH15-128-BLK", 6, quantity_change=-1,
                                                          location_id="WH-MAIN", reason="POS_SALE")])
            wait_for(lambda: len(rx.ok()) == 2, 90, "the second delivery")
    first, second = (r.doc for r in rx.ok())
    for doc, qty, reason in ((first, 50, "GOODS_RECEIPT"), (second, 49, "POS_SALE")):
        data = dict(doc["data"])
        assert data.pop("reason", reason) == reason  # null on stock.levels until the workers fill it
        assert data == {"sku": "IPH15-128-BLK", "location_id": "WH-MAIN", "new_quantity": qty}
        assert doc["tenant_id"] == tenant and doc["event_type"] == "inventory.change"
    assert verify([SECRET], rx.ok()[1].body, rx.ok()[1].headers["X-ERP-Signature"], rx.ok()[1].headers["X-ERP-Timestamp"])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_address_is_not_reached_at_delivery_time(env, settings, codec, tenant, host):
    """A subscription's URL now points at loopback (say its name was moved by DNS since it was added, or
    it is an IP literal): without allow_private the notifier does not connect, whatever the name resolves
    to at the time of the request; the try is a `config` failure, retried on the schedule."""
    url, engine, prefix, topic, group = env
    with Receiver() as rx:
        sid = _subscribe(engine, settings, tenant, rx.url.replace("127.0.0.1", host))
        with engine.begin() as conn:  # as if added when its name still resolved to a public address
            conn.execute(text("UPDATE webhook_subscriptions SET allow_private = false WHERE subscription_id = :s"),
                         {"s": sid})
        knobs = {"notify_retry_schedule": "300ms"}
        with NotifierThread(notify_settings(settings, url, **knobs), prefix, group) as nt:
            publish_levels(settings, codec, topic, [level(tenant, "A", 5, 1)])
            wait_for(lambda: (deliveries(engine, tenant).get("A") or {}).get("attempts", 0) >= 2, 30,
                     "two refused tries", interval=0.05)
            assert nt.metric("stockledger_webhook_failures_total", tenant=tenant, **{"class": "config"}) >= 2
            assert nt.metric("stockledger_webhook_deliveries_total", tenant=tenant) == 0
            row = deliveries(engine, tenant)["A"]
    assert rx.requests == []
    where = "127.0.0.1" if host == "127.0.0.1" else "localhost (127.0.0.1)"
    assert row["last_error"] == (f"not sent: {where} is loopback: a webhook may only go to public addresses "
                                 f"unless --allow-private-url")
    assert row["pending_offset"] is not None and row["delivered_offset"] is None
