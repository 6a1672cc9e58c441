"""Stock and catalog rules through a real worker: exact stock, alerts, DLQ records and HTTP answers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cli import main as cli
from cli.testing import inventory_event as inv
from cli.testing import settle, tenant_records
from cli.testing import stock_of as stock

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "seed003"


def ts(minute: int) -> str:
    return f"2026-03-01T10:{minute:02d}:00Z"


def test_absolute_then_deltas_in_any_arrival_order(worker, publish, settings, tenant):
    publish("inventory.changes", [
        inv(tenant, "e3", "A", 3, quantity_change=-2),  # after the count: counts
        inv(tenant, "e1", "A", 1, quantity_change=5),  # before the count: inside it
        inv(tenant, "e2", "A", 2, new_quantity=10, location_id="WH-MAIN"),
        inv(tenant, "e4", "A", 4, quantity_change=7),
    ])
    settle(settings)
    body = stock(worker, tenant, "A")
    assert (body["on_hand"], body["reserved"], body["available"]) == (15, 0, 15)
    assert body["last_change"]["event_id"] == "e4"


def test_stale_absolute_is_ignored_and_alerted(worker, publish, settings, tenant):
    publish("inventory.changes", [inv(tenant, "n1", "B", 5, new_quantity=20),
                                  inv(tenant, "n2", "B", 4, new_quantity=99)])
    settle(settings)
    assert stock(worker, tenant, "B")["on_hand"] == 20
    [alert] = [r["value"] for r in tenant_records(settings, "inventory.alerts", tenant)]
    assert (alert["alert"], alert["sku"], alert["on_hand"], alert["event_id"]) == ("STALE_ABSOLUTE", "B", 20, "n2")


def test_negative_stock_is_applied_and_alerted(worker, publish, settings, tenant):
    publish("inventory.changes", [inv(tenant, "m1", "C", 1, new_quantity=2),
                                  inv(tenant, "m2", "C", 2, quantity_change=-5)])
    settle(settings)
    assert stock(worker, tenant, "C")["on_hand"] == -3
    [alert] = [r["value"] for r in tenant_records(settings, "inventory.alerts", tenant)]
    assert (alert["alert"], alert["on_hand"], alert["event_id"]) == ("NEGATIVE_STOCK", -3, "m2")


def test_duplicates_apply_once_and_conflicts_are_refused(worker, publish, settings, tenant):
    first = inv(tenant, "d1", "D", 1, quantity_change=4)
    publish("inventory.changes", [first, first, {**first, "timestamp": ts(9)}])  # a restamped retry too
    publish("inventory.changes", [inv(tenant, "d1", "D", 1, quantity_change=40)])  # same id, other content
    settle(settings)
    assert stock(worker, tenant, "D")["on_hand"] == 4
    dlq = [r["value"] for r in tenant_records(settings, "inventory.changes.dlq", tenant)]
    assert len(dlq) == 1
    assert dlq[0]["stage"] == "idempotency"
    assert dlq[0]["error"].startswith("IDEMPOTENCY_CONFLICT: event_id d1")
    levels = [r["value"] for r in tenant_records(settings, "stock.levels", tenant)]
    assert levels[-1]["on_hand"] == 4 and levels[-1]["last_event_id"] == "d1"


def test_adjust_payload_becomes_one_change_per_sku(worker, settings, tenant, tmp_path):
    path = tmp_path / "adjust.json"
    path.write_text('{"reference_id": "ADJ-1", "timestamp": "2026-03-01T10:30:00Z", "adjustments": ['
                    '{"sku": "X1", "quantity_change": -1, "warehouse_id": "WH-MAIN"},'
                    '{"sku": "X2", "quantity_change": 3, "warehouse_id": "WH-2"}]}')
    assert cli.main(["produce", "inventory.changes", str(path), "--tenant", tenant]) == 0
    settle(settings)
    x1, x2 = stock(worker, tenant, "X1"), stock(worker, tenant, "X2")
    assert (x1["on_hand"], x1["last_change"]["location_id"]) == (-1, "WH-MAIN")
    assert (x2["on_hand"], x2["last_change"]["location_id"]) == (3, "WH-2")


def test_catalog_stock_quantity_is_an_absolute_count(worker, settings, tenant):
    assert cli.main(["produce", "catalog.updates", str(SEED / "catalog_update.json"), "--tenant", tenant]) == 0
    assert cli.main(["produce", "inventory.changes", str(SEED / "inventory_change.json"), "--tenant", tenant]) == 0
    settle(settings)
    black, blue = stock(worker, tenant, "IPH15-128-BLK"), stock(worker, tenant, "IPH15-128-BLU")
    assert black["on_hand"] == 49  # the 003 scenario: 50 in the catalog, then a count of 49 five minutes later
    assert blue["on_hand"] == 42
    assert black["catalog"] == {"display_name": "iPhone 15 128GB Black", "price": "79900.00", "is_active": True,
                                "product_group_id": "PG-1001"}
    last = {r["key"]: r["value"] for r in tenant_records(settings, "stock.levels", tenant)}
    assert last[f"{tenant}:IPH15-128-BLK"]["on_hand"] == 49
    assert last[f"{tenant}:IPH15-128-BLK"]["last_event_id"] == "evt_inventory_8899"
    assert last[f"{tenant}:IPH15-128-BLU"]["on_hand"] == 42


def test_http_errors_are_json(worker, tenant):
    r = worker.get("/stock/NOPE", tenant=tenant)
    assert r.status_code == 404
    assert r.json()["error"] == f"unknown SKU 'NOPE' for tenant '{tenant}'"
    r = worker.get("/stock/NOPE")
    assert r.status_code == 400 and "tenant" in r.json()["error"]
    r = worker.get("/inventory/snapshot", tenant=tenant, format="xml")
    assert r.status_code == 400 and r.json()["error"] == "format must be json or csv, not 'xml'"


def test_snapshot_lists_every_sku_of_the_tenant(worker, publish, settings, tenant):
    publish("inventory.changes", [inv(tenant, f"s{n}", f"SNAP-{n:03d}", 1, new_quantity=n) for n in range(1, 121)])
    settle(settings)
    rows = worker.get("/inventory/snapshot", tenant=tenant).json()
    assert sorted((r["sku"], r["qty"]) for r in rows) == [(f"SNAP-{n:03d}", n) for n in range(1, 121)]
    text = worker.get("/inventory/snapshot", tenant=tenant, format="csv").text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 120
    assert {r["sku"]: int(r["on_hand"]) for r in parsed} == {f"SNAP-{n:03d}": n for n in range(1, 121)}


def test_metrics_count_events_and_dead_letters(worker, publish, settings, tenant):
    publish("inventory.changes", [inv(tenant, "mt1", "M", 1, quantity_change=1)])
    settle(settings)
    text = worker.get("/metrics").text
    processed = [line for line in text.splitlines()
                 if line.startswith('stockledger_events_processed_total{topic="inventory.changes"}')]
    assert len(processed) == 1 and float(processed[0].split()[-1]) >= 1
    assert "# TYPE stockledger_processing_latency_seconds histogram" in text
    for flow in ("admit", "fold"):  # prometheus-client histograms of each batch
        count = [line for line in text.splitlines() if line.startswith(f"stockledger_{flow}_batch_seconds_count ")]
        assert len(count) == 1 and float(count[0].split()[-1]) >= 1
    assert 'stockledger_consumer_lag{partition="0",topic="inventory.changes"}' in text  # labels sorted by name


@pytest.mark.parametrize("data,reason", [
    ({"sku": "P", "new_quantity": 1, "quantity_change": 1}, "both new_quantity and quantity_change are set"),
    ({"sku": "P"}, "neither new_quantity nor quantity_change is set"),
    ({"sku": "P", "quantity_change": 0}, "quantity_change must not be zero"),
    ({"sku": "P", "new_quantity": -4}, "new_quantity must not be negative, got -4"),
    ({"sku": "", "quantity_change": 2}, "sku is missing or empty"),
])
def test_rule_breakers_go_to_the_dlq_with_their_reason(worker, publish, settings, tenant, data, reason):
    publish("inventory.changes", [{"event_id": "bad", "event_type": "inventory.change", "tenant_id": tenant,
                                   "timestamp": ts(1), "data": data},
                                  inv(tenant, "good", "Q", 2, quantity_change=6)])
    settle(settings)
    [dlq] = tenant_records(settings, "inventory.changes.dlq", tenant)
    value = dlq["value"]
    assert value["stage"] == "rule" and reason in value["error"]
    assert value["topic"] == "inventory.changes"
    source = [r for r in tenant_records(settings, "inventory.changes", tenant) if r["value"]["event_id"] == "bad"][0]
    assert (value["partition"], value["offset"]) == (source["partition"], source["offset"])
    assert stock(worker, tenant, "Q")["on_hand"] == 6
