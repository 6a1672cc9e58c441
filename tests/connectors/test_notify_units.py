"""The pure parts of the webhooks: breaker, payload and event ids, quantiles, durations, subscription input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connectors.notify import payload
from connectors.notify.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from connectors.notify.metrics import quantile
from connectors.notify.subscriptions import SubscriptionError, check_url, parse_events
from stockledger.config import Settings, parse_duration, parse_durations
from stockledger.security import verify


def test_breaker_opens_after_n_consecutive_failures_half_opens_and_closes_on_success():
    b = Breaker(5, 60.0)
    for i in range(4):
        assert b.allow(i) and not b.failure(i)
    b.success()  # resets the count
    for i in range(4):
        assert not b.failure(10 + i)
    assert b.failure(14) and b.state == OPEN
    assert not b.allow(14) and not b.allow(73.9)
    assert b.allow(74.0) and b.state == HALF_OPEN  # the probe
    assert not b.allow(74.1)  # only one
    assert b.failure(75) and b.state == OPEN  # a failed probe opens it again
    assert b.allow(135) and b.success() == HALF_OPEN and b.state == CLOSED and b.allow(135)


def _level(**over):
    base = {"tenant_id": "acme", "sku": "IPH15-128-BLK", "on_hand": 50, "reserved": 1, "available": 49,
            "updated_at": datetime(2024, 1, 20, 10, 5, tzinfo=UTC), "last_event_id": "e1",
            "location_id": "WH-MAIN", "reason": "POS_SALE"}
    return {**base, **over}


def test_the_body_is_seed_003s_inventory_change_with_a_deterministic_event_id():
    eid, body = payload.body(_level())
    assert json.loads(body) == {"event_id": eid, "event_type": "inventory.change", "tenant_id": "acme",
                                "timestamp": "2024-01-20T10:05:00Z",
                                "data": {"sku": "IPH15-128-BLK", "location_id": "WH-MAIN", "new_quantity": 49,
                                         "reason": "POS_SALE"}}
    assert payload.body(_level()) == (eid, body)  # the same level published twice: same id and bytes
    assert payload.event_id(_level(on_hand=51, available=50)) != eid
    assert payload.event_id(_level(reserved=2, available=48)) != eid
    assert payload.event_id(_level(last_event_id="e2")) != eid
    assert payload.event_id(_level(tenant_id="other")) != eid
    assert json.loads(payload.body(_level(reason=None, location_id=None))[1])["data"] == {
        "sku": "IPH15-128-BLK", "new_quantity": 49}
    h = payload.headers("s3cret-s3cret-s3cret", body.encode(), eid, now=1_700_000_000)
    assert h["X-ERP-Timestamp"] == "1700000000"
    assert verify(["s3cret-s3cret-s3cret"], body.encode(), h["X-ERP-Signature"], h["X-ERP-Timestamp"])
    assert payload.iso_utc(datetime(2024, 1, 20, 10, 5, 0, 250_000, tzinfo=UTC)) == "2024-01-20T10:05:00.250Z"


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile():
    buckets = [(0.1, 50.0), (0.25, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.1 + 0.15 * 0.5)
    assert quantile(0.99, buckets) == pytest.approx(0.25 + 0.75 * 0.9)
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)]) == 0.1  # beyond the last bound


def test_durations_and_the_default_schedule():
    assert parse_durations("1m,5m,15m,1h,6h") == (60, 300, 900, 3600, 21600)
    assert Settings().notify_retry_delays == (60, 300, 900, 3600, 21600)
    assert Settings().notify_dead_letter_after_s == 86400 and Settings().notify_timeout_s == 5
    assert Settings().notify_breaker_failures == 5 and Settings().notify_breaker_open_s == 60
    assert parse_duration("250ms") == 0.25 and parse_duration("1.5s") == 1.5 and parse_duration("2") == 2
    for bad in ("", "5 minutes", "-1s", "1w"):
        with pytest.raises(ValueError):
            parse_durations(bad) if bad == "" else parse_duration(bad)


def test_subscription_input():
    assert parse_events(None) == ("inventory.change",)
    assert parse_events("inventory.change,catalog.update,inventory.change") == ("inventory.change", "catalog.update")
    with pytest.raises(SubscriptionError):
        parse_events("stock.moved")
    assert check_url("https://shop.example/hooks") == "https://shop.example/hooks"
    for bad in ("ftp://x/y", "shop.example/hooks", "http://"):
        with pytest.raises(SubscriptionError):
            check_url(bad)


def test_the_secret_resolver_signs_with_the_tenants_newest_secret(monkeypatch):
    from connectors.notify import subscriptions
    from stockledger.security import seal

    key = bytes(32)
    resolver = subscriptions.SecretResolver(None, key, ttl=60)  # type: ignore[arg-type]
    sealed = seal(key, "acme", "own-secret-0123456789")
    assert resolver.secret("wh_1", "acme", sealed, False, 0) == "own-secret-0123456789"
    monkeypatch.setattr(subscriptions, "TENANT_SECRETS", lambda engine, master, tenant: [])
    with pytest.raises(LookupError):
        resolver.secret("wh_2", "acme", None, True, 0)  # a tenant with no webhook secret in the registry
    asked = []
    monkeypatch.setattr(subscriptions, "TENANT_SECRETS", lambda engine, master, tenant: asked.append(tenant) or
                        ["newest", "previous"])
    assert resolver.secret("wh_2", "acme", None, True, 0) == "newest"
    assert resolver.secret("wh_2", "acme", None, True, 59) == "newest" and asked == ["acme"]  # cached
    assert resolver.secret("wh_2", "acme", None, True, 61) == "newest" and asked == ["acme", "acme"]  # asked again
