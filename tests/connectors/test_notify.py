"""Outbound webhooks against the real stack and a real receiver on loopback (issue 12): signed and
verifiable, retried with the newest level, 400 never retried, the breaker, dead letters, a slow
receiver under 1,000 changes, and a notifier killed mid-delivery."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from sqlalchemy import text

from connectors import migrate
from connectors.notify import subscriptions
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
    sub, _ = subscriptions.add(engine, settings.master_key(), tenant, url, secret=SECRET)
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
    with Receiver(respond=lambda n, body: 503 if n < 3 else 200) as rx:
        _subscribe(engine, settings, tenant, rx.url)
        with NotifierThread(notify_settings(settings, url, notify_retry_schedule="1s,1s,2s"), prefix, group):
            publish_levels(settings, codec, topic, [level(tenant, "A", 10, 1)])
            wait_for(lambda: len(rx.requests) >= 1, 30, "the first try", interval=0.02)
            publish_levels(settings, codec, topic, [level(tenant, "A", 9, 2), level(tenant, "A", 8, 3)])
            wait_for(lambda: rx.ok(), 30, "a success")
            wait_for(lambda: deliveries(engine, tenant)["A"]["pending_offset"] is None, 10, "the success recorded")
            row = deliveries(engine, tenant)["A"]
    assert [r.status for r in rx.requests] == [503, 503, 503, 200]
    assert rx.requests[0].quantity == 10
    assert rx.requests[-1].quantity == 8  # the newest level, once
    quantities = [r.quantity for r in rx.requests]
    assert quantities == sorted(quantities, reverse=True)  # never an older level after a newer one
    assert row["attempts"] == 0 and row["delivered_event_id"] == rx.requests[-1].doc["event_id"]
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
            import time
            time.sleep(2)
            assert nt.metric("stockledger_webhook_failures_total", tenant=tenant, **{"class": "client_error"}) == 2
    assert [(r.status, r.quantity) for r in rx.requests] == [(400, 5), (400, 4)]
    rows = failures(engine, tenant)
    assert [(f["kind"], f["status"], f["sku"], f["attempts"], f["subscription_id"]) for f in rows] == \
        [("data_error", 400, "A", 1, sid), ("data_error", 400, "A", 1, sid)]
    assert [json.loads(f["body"])["data"]["new_quantity"] for f in rows] == [5, 4]
    assert deliveries(engine, tenant)["A"]["pending_offset"] is None
