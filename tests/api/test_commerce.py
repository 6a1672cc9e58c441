"""Seed 003's commerce doors through a real `stockledger api` and worker: order import (mapped as
`produce` maps it) with the pipeline's decision, inventory adjust, the snapshot in JSON and CSV, and
the reads, all scoped to the bearer token's tenant."""

from __future__ import annotations

import json

import pytest

from cli.testing import settle
from tests.api.support import problem, records
from tests.streams.test_sales_pipeline import catalog, customer


@pytest.fixture
def shop(worker, publish, settings, creds):
    """A (1000.00, 10 in stock) and B (250.50, 5), tax 16%; customer C1 with a credit limit of 10000."""
    publish("catalog.updates", [catalog(creds.tenant, [("A", "1000.00", 10), ("B", "250.50", 5)])])
    publish("customers", [customer(creds.tenant, "C1", "10000")])
    settle(settings)
    return creds


def order(order_id: str, lines: list[tuple[str, int]], customer_ref: str = "C1") -> dict:
    return {"order_id": order_id, "order_date": "2024-01-20T10:15:00Z", "customer_ref": customer_ref,
            "line_items": [{"sku": sku, "quantity": qty, "unit_price": 1000.00} for sku, qty in lines]}


def test_an_order_import_is_placed_and_booked_or_refused_line_by_line(api, shop, settings):
    ok = api.commerce(shop, "/api/v1/orders/import", order("ORD-WEB-1001", [("A", 2)]), "ord-1001")
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert (body["sale_id"], body["invoice_id"], body["journal_entry_id"], body["payment_ids"], body["total"]) == \
        ("ORD-WEB-1001", "INV-ORD-WEB-1001", "JE-INV-ORD-WEB-1001", [], "2320.00")
    refused = problem(api.commerce(shop, "/api/v1/orders/import", order("ORD-WEB-1002", [("A", 1), ("B", 9)]),
                                   "ord-1002"), 422)
    assert refused["outcome"] == "REFUSED" and refused["sale_id"] == "ORD-WEB-1002"
    assert [(r["sku"], r["code"], r["requested"], r["available"]) for r in refused["reasons"]] == [
        ("B", "INSUFFICIENT_STOCK", 9, 5)]
    published = [r["value"] for r in records(settings, "sales", shop.tenant)]
    assert sorted((v["event_type"], v["data"]["sale_id"], v["data"]["channel"], v["data"]["payment_terms"],
                   v["data"]["customer_ref"], v["timestamp"]) for v in published) == [
        ("order.placed", "ORD-WEB-1001", "ERP", "ON_ACCOUNT", "C1", "2024-01-20T10:15:00Z"),
        ("order.placed", "ORD-WEB-1002", "ERP", "ON_ACCOUNT", "C1", "2024-01-20T10:15:00Z")]
    credit = api.read(shop, "/api/v1/credit/C1").json()
    assert (credit["outstanding"], credit["available"]) == ("2320.00", "7680.00")
    problem(api.commerce(shop, "/api/v1/orders/import", {"order_id": "X"}, "ord-x"), 400)


def test_an_adjustment_publishes_one_change_per_line_once(api, shop, settings):
    body = {"reference_id": "ORD-WEB-2001", "adjustments": [
        {"sku": "A", "quantity_change": -1, "warehouse_id": "WH-MAIN"},
        {"sku": "B", "quantity_change": 3, "warehouse_id": "WH-2"}]}
    first = api.commerce(shop, "/api/v1/inventory/adjust", body, "adj-2001")
    assert first.status_code == 202, first.text
    assert first.json()["published"] == 2
    again = api.commerce(shop, "/api/v1/inventory/adjust", body, "adj-2001")
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (202, first.content, "true")
    changes = [r["value"]["data"] for r in records(settings, "inventory.changes", shop.tenant)]
    assert sorted((c["sku"], c["quantity_change"], c["location_id"], c["reason"], c["reference_id"]) for c in changes) \
        == [("A", -1, "WH-MAIN", "ADJUSTMENT", "ORD-WEB-2001"), ("B", 3, "WH-2", "ADJUSTMENT", "ORD-WEB-2001")]
    settle(settings)
    assert api.read(shop, "/api/v1/stock/A").json()["on_hand"] == 9
    assert api.read(shop, "/api/v1/stock/B").json()["on_hand"] == 8
    bad = {"reference_id": "R", "adjustments": [{"sku": "A", "quantity_change": "many"}]}
    assert problem(api.commerce(shop, "/api/v1/inventory/adjust", bad, "adj-bad"), 400)["field"] == \
        "adjustments[0].quantity_change"
    assert problem(api.commerce(shop, "/api/v1/inventory/adjust", {"reference_id": "R", "adjustments": [{"sku": "A"}]},
                                "adj-bad"), 400)["field"] == "adjustments[0].quantity_change"
    assert len(records(settings, "inventory.changes", shop.tenant)) == 2


def test_the_snapshot_streams_json_or_csv_and_refuses_other_types(api, shop):
    as_json = api.read(shop, "/api/v1/inventory/snapshot")
    assert as_json.status_code == 200 and as_json.headers["Content-Type"].startswith("application/json")
    assert sorted((r["sku"], r["qty"]) for r in json.loads(as_json.content)) == [("A", 10), ("B", 5)]
    by_accept = api.read(shop, "/api/v1/inventory/snapshot", headers={"Accept": "text/csv"})
    by_query = api.read(shop, "/api/v1/inventory/snapshot", format="csv")
    for resp in (by_accept, by_query):
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
        lines = resp.text.splitlines()
        assert lines[0] == "sku,qty,on_hand,reserved,available" and sorted(lines[1:]) == ["A,10,10,0,10", "B,5,5,0,5"]
    problem(api.read(shop, "/api/v1/inventory/snapshot", headers={"Accept": "application/xml"}), 406)
    problem(api.read(shop, "/api/v1/inventory/snapshot", headers={"Accept": "application/json"}, format="csv"), 406)
    problem(api.read(shop, "/api/v1/inventory/snapshot", format="xml"), 400)


def test_reads_answer_for_the_token_tenant_only(api, shop, api_engine, settings):
    stock = api.read(shop, "/api/v1/stock/A")
    assert stock.status_code == 200 and (stock.json()["tenant_id"], stock.json()["on_hand"]) == (shop.tenant, 10)
    assert api.read(shop, "/api/v1/credit/C1").json()["credit_limit"] == "10000.00"
    problem(api.read(shop, "/api/v1/stock/NOPE"), 404)
    problem(api.read(shop, "/api/v1/sales/NOPE"), 404)
    # another tenant with the same SKU sees its own, never this one's
    from stockledger import tenants
    from tests.api.support import Creds

    other = Creds(tenants.add(api_engine, settings.master_key(), shop.tenant + "-b"))
    problem(api.read(other, "/api/v1/stock/A"), 404)
    assert api.read(other, "/api/v1/inventory/snapshot").json() == []
    # the POS key reads too; no credential or a wrong one does not
    assert api.get("/api/v1/stock/A", headers={"X-Integration-Key": shop.key}).json()["on_hand"] == 10
    problem(api.get("/api/v1/stock/A"), 401)
    problem(api.get("/api/v1/stock/A", headers={"Authorization": "Bearer nope"}), 401)
    problem(api.commerce(shop, "/api/v1/orders/import", order("O-X", [("A", 1)]), "k",
                         headers={"Authorization": f"Bearer {shop.key}"}), 401)
