"""`stockledger tenant configure`: the flags become one tenant.configured, keyed by the tenant (SPEC 8)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from cli.main import main
from stockledger.produce import convert


def test_configure_dry_run_prints_the_event_with_only_the_given_settings(capsys):
    code = main(["tenant", "configure", "T1", "--order-fulfilment", "RESERVE", "--credit-policy", "HOLD",
                 "--default-currency", "KES", "--default-tax-percent", "16", "--account", "bank=1030",
                 "--event-id", "cfg-1", "--dry-run"])
    assert code == 0
    event = json.loads(capsys.readouterr().out)
    assert event.pop("timestamp") > 0
    assert event == {"event_id": "cfg-1", "event_type": "tenant.configured", "tenant_id": "T1", "source": "cli",
                     "data": {"order_fulfilment": "RESERVE", "credit_policy": "HOLD", "default_currency": "KES",
                              "default_tax_percent": "16", "accounts": {"bank": "1030"}}}
    prepared = convert("tenant.settings", {**event, "timestamp": 1_000})
    assert prepared.key == "T1"
    assert prepared.record["data"]["default_tax_percent"] == Decimal("16")
    assert prepared.record["data"]["late_count_horizon_days"] is None


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give at least one setting"),
    (["--default-currency", "kes"], "default_currency must be an ISO 4217 code"),
    (["--default-tax-percent", "101"], "default_tax_percent must be from 0 to 100"),
    (["--account", "vault=9"], "unknown account roles ['vault']"),
])
def test_configure_refuses_bad_settings_and_publishes_nothing(capsys, argv, message):
    assert main(["tenant", "configure", "T1", *argv, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("event_type", "data"), [
    ("order.shipped", {"sale_id": "O-1", "shipment_id": "SH-1", "lines": [{"sku": "A", "quantity": 2}]}),
    ("order.cancelled", {"sale_id": "O-1", "cancellation_id": "X-1", "reason": "changed mind"}),
    ("order.released", {"sale_id": "O-1", "released_by": "credit-desk"}),
])
def test_produce_takes_the_lifecycle_events_json_on_sales(event_type, data):
    """`stockledger produce sales FILE` converts each new event's JSON with the sales schema, keyed by sale."""
    prepared = convert("sales", {"event_id": "e-1", "event_type": event_type, "tenant_id": "T1",
                                 "timestamp": "2026-12-04T10:00:00Z", "data": data})
    assert prepared.key == "T1:O-1"
    assert {k: v for k, v in prepared.record["data"].items() if k in data} == data
