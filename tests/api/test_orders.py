"""SPEC 8's doors through a real `stockledger api` and worker: POST /api/v1/orders/{order_id}/ship,
/cancel and /release (Bearer, Idempotency-Key, the pipeline's decision as the answer), with the tenant's
settings published as a tenant.configured event, and the sale view's per-line quantities."""

from __future__ import annotations

import pytest

from cli.testing import settle
from tests.api.support import problem
from tests.streams.test_sales_pipeline import at, catalog, customer


def configure(tenant: str, n: int, **data) -> dict:
    return {"event_id": f"cfg-{n}", "event_type": "tenant.configured", "tenant_id": tenant, "timestamp": at(0),
            "data": data}


@pytest.fixture
def reserve_shop(worker, publish, settings, creds):
    """RESERVE and HOLD; A (1000.00, 10 in stock), B (250.50, 5), tax 16%; C1 limit 10000, C2 limit 1000."""
    publish("tenant.settings", [configure(creds.tenant, 1, order_fulfilment="RESERVE", credit_policy="HOLD")])
    publish("catalog.updates", [catalog(creds.tenant, [("A", "1000.00", 10), ("B", "250.50", 5)])])
    publish("customers", [customer(creds.tenant, "C1", "10000"), customer(creds.tenant, "C2", "1000")])
    settle(settings)
    return creds


def order(order_id: str, lines: list[tuple[str, int]], customer_ref: str = "C1") -> dict:
    return {"order_id": order_id, "order_date": "2024-01-20T10:15:00Z", "customer_ref": customer_ref,
            "line_items": [{"sku": sku, "quantity": qty, "unit_price": 1000.00} for sku, qty in lines]}


def stock(api, creds, sku: str) -> tuple[int, int, int]:
    body = api.read(creds, f"/api/v1/stock/{sku}").json()
    return body["on_hand"], body["reserved"], body["available"]


def lines_of(api, creds, order_id: str) -> tuple[str, list[tuple[str, int, int, int, int]]]:
    view = api.read(creds, f"/api/v1/sales/{order_id}").json()["order"]
    return view["state"], [(li["sku"], li["ordered"], li["shipped"], li["cancelled"], li["open"])
                           for li in view["lines"]]


def test_ship_and_cancel_a_reserved_order_over_http(api, reserve_shop):
    shop = reserve_shop
    placed = api.commerce(shop, "/api/v1/orders/import", order("O-1", [("A", 3), ("B", 2)]), "o-1")
    assert placed.status_code == 201, placed.text
    assert stock(api, shop, "A") == (10, 3, 7)
    ship = {"shipment_id": "SH-1", "lines": [{"sku": "A", "quantity": 2}], "location_id": "WH-1"}
    shipped = api.commerce(shop, "/api/v1/orders/O-1/ship", ship, "ship-1")
    assert shipped.status_code == 201, shipped.text
    assert {k: shipped.json()[k] for k in ("shipment_id", "sale_id", "outcome", "document_ids")} == {
        "shipment_id": "SH-1", "sale_id": "O-1", "outcome": "ACCEPTED", "document_ids": []}
    again = api.commerce(shop, "/api/v1/orders/O-1/ship", ship, "ship-1")
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (201, shipped.content, "true")
    assert stock(api, shop, "A") == (8, 1, 7)
    over = problem(api.commerce(shop, "/api/v1/orders/O-1/ship",
                                {"shipment_id": "SH-2", "lines": [{"sku": "A", "quantity": 2}]}, "ship-2"), 422)
    assert (over["outcome"], [(r["code"], r["sku"], r["requested"], r["available"]) for r in over["reasons"]]) == (
        "REFUSED", [("OVER_SHIPMENT", "A", 2, 1)])
    assert lines_of(api, shop, "O-1") == ("PARTIALLY_SHIPPED", [("A", 3, 2, 0, 1), ("B", 2, 0, 0, 2)])
    cancelled = api.commerce(shop, "/api/v1/orders/O-1/cancel", {"cancellation_id": "X-1"}, "cancel-1")
    assert cancelled.status_code == 201, cancelled.text
    body = cancelled.json()
    # the import prices every line at 1000.00: 1 A + 2 B open = net 3000.00, tax 16% 480.00, total 3480.00
    assert (body["cancellation_id"], body["credit_note_id"], body["journal_entry_id"], body["total"]) == (
        "X-1", "CN-X-1", "JE-CN-X-1", "3480.00")
    assert lines_of(api, shop, "O-1") == ("SHIPPED", [("A", 3, 2, 1, 0), ("B", 2, 0, 2, 0)])
    assert (stock(api, shop, "A"), stock(api, shop, "B")) == ((8, 0, 8), (5, 0, 5))
    credit = api.read(shop, "/api/v1/credit/C1").json()
    assert credit["outstanding"] == "2320.00"  # 5800.00 invoiced - 3480.00 cancelled
    shipped_cancel = problem(api.commerce(shop, "/api/v1/orders/O-1/cancel",
                                          {"cancellation_id": "X-2", "lines": [{"sku": "A", "quantity": 1}]},
                                          "cancel-2"), 422)
    assert [r["code"] for r in shipped_cancel["reasons"]] == ["ALREADY_SHIPPED"]


def test_a_held_order_is_answered_202_and_released_over_http(api, reserve_shop):
    shop = reserve_shop
    held = api.commerce(shop, "/api/v1/orders/import", order("O-2", [("A", 1)], customer_ref="C2"), "o-2")
    assert held.status_code == 202, held.text
    assert (held.json()["outcome"], [r["code"] for r in held.json()["reasons"]]) == (
        "HELD", ["CREDIT_LIMIT_EXCEEDED"])
    assert stock(api, shop, "A") == (10, 0, 10)
    assert lines_of(api, shop, "O-2") == ("HELD", [("A", 1, 0, 0, 1)])
    released = api.commerce(shop, "/api/v1/orders/O-2/release", {"released_by": "credit-desk"}, "rel-2")
    assert released.status_code == 201, released.text
    assert (released.json()["invoice_id"], released.json()["total"]) == ("INV-O-2", "1160.00")
    assert stock(api, shop, "A") == (10, 1, 9)
    problem(api.commerce(shop, "/api/v1/orders/O-2/release", {"released_by": "credit-desk"}, "rel-2b"), 422)


def test_the_doors_refuse_bad_bodies_and_need_the_bearer_token(api, reserve_shop):
    shop = reserve_shop
    assert problem(api.commerce(shop, "/api/v1/orders/O-9/ship", {"lines": [{"sku": "A", "quantity": 1}]}, "b-1"),
                   400)["detail"] == "shipment_id: is required"
    assert problem(api.commerce(shop, "/api/v1/orders/O-9/ship",
                                {"shipment_id": "S", "lines": [{"sku": "A", "quantity": 0}]}, "b-2"),
                   400)["detail"] == "lines[0].quantity: must be a positive integer"
    assert problem(api.commerce(shop, "/api/v1/orders/O-9/cancel", {"cancellation_id": "X", "sale_id": "O-8"},
                                "b-3"), 400)["detail"] == "unknown field: sale_id"
    problem(api.commerce(shop, "/api/v1/orders/O-9/release", {"released_by": "x"}, None), 400)
    problem(api.post("/api/v1/orders/O-9/release", {"released_by": "x"}, headers={"Idempotency-Key": "k"}), 401)
    unknown = problem(api.commerce(shop, "/api/v1/orders/O-9/cancel", {"cancellation_id": "X-9"}, "b-4"), 422)
    assert [r["code"] for r in unknown["reasons"]] == ["NOT_ACCEPTED"]


SEED_004_CREDIT = {"credit_limit": "10000.00", "outstanding": "8000.00", "available": "2000.00",
                   "order_amount": "3000.00"}
SEED_004_MESSAGE = "Insufficient credit. Available: 2000.00, Required: 3000.00"


def untaxed(order_id: str, sku: str, quantity: int) -> dict:
    body = order(order_id, [(sku, quantity)])
    body["line_items"][0]["tax_percent"] = 0
    return body


def test_seed_004_credit_example_over_http_held_then_refused_after_a_configure(api, reserve_shop, publish, settings):
    """Seed 004's Example 3 (limit 10000.00, outstanding 8000.00, available 2000.00, order 3000.00), answered
    by the import door: HELD (202) under HOLD; after a tenant.configured back to REFUSE with a default currency,
    the same order under a new id is REFUSED (422) with the same figures, and an import of exactly the
    available credit is booked in the tenant's currency (the import names none)."""
    shop = reserve_shop
    ok = api.commerce(shop, "/api/v1/orders/import", untaxed("SO-2025-000", "A", 8), "so-0")
    assert (ok.status_code, ok.json()["total"], ok.json()["currency"]) == (201, "8000.00", "USD"), ok.text
    held = api.commerce(shop, "/api/v1/orders/import", untaxed("SO-2025-001", "B", 3), "so-1")
    assert held.status_code == 202, held.text
    assert (held.json()["outcome"], held.json()["credit"], held.json()["total"]) == ("HELD", SEED_004_CREDIT,
                                                                                       "3000.00")
    assert [(r["code"], r["message"]) for r in held.json()["reasons"]] == [("CREDIT_LIMIT_EXCEEDED", SEED_004_MESSAGE)]
    publish("tenant.settings", [configure(shop.tenant, 2, credit_policy="REFUSE", default_currency="KES")])
    settle(settings)
    refused = problem(api.commerce(shop, "/api/v1/orders/import", untaxed("SO-2025-002", "B", 3), "so-2"), 422)
    assert (refused["outcome"], refused["credit"]) == ("REFUSED", SEED_004_CREDIT)
    assert [(r["code"], r["message"]) for r in refused["reasons"]] == [("CREDIT_LIMIT_EXCEEDED", SEED_004_MESSAGE)]
    assert stock(api, shop, "B") == (5, 0, 5)
    exact = api.commerce(shop, "/api/v1/orders/import", untaxed("SO-2025-003", "B", 2), "so-3")  # all 2000.00 left
    assert (exact.status_code, exact.json()["total"], exact.json()["currency"]) == (201, "2000.00", "KES"), exact.text
    credit = api.read(shop, "/api/v1/credit/C1").json()
    assert (credit["credit_limit"], credit["outstanding"], credit["available"]) == ("10000.00", "10000.00", "0.00")
    assert stock(api, shop, "B") == (5, 2, 3)
