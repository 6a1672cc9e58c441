"""SPEC 9's price-list door through a real `stockledger api` and worker: POST /api/v1/price-lists/{price_list_id}
(Bearer, Idempotency-Key) publishes the whole list as one price_list.updated, scoped to the token's tenant,
and the customer's next orders are priced by it; bad bodies are refused with problem bodies and publish
nothing. The door's own checks are validate_price_list's (the fold's), property-tested without sockets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from api import events, idempotency
from api.problems import Problem
from cli.testing import settle
from streams.core.money import is_known_currency, is_whole_minor
from streams.core.pricelists import MAX_ITEMS, validate_price_list
from tests.api.support import problem, records
from tests.streams.test_sales_pipeline import at, catalog

PL = {"currency": "USD", "valid_from": "2024-01-01T00:00:00Z",
      "items": [{"sku": "A", "unit_price": "900.00"}, {"sku": "A", "unit_price": "850.00", "min_quantity": 3}]}


def customer_on_list(tenant: str, ref: str, price_list_id: str | None) -> dict:
    return {"event_id": f"cust-{ref}", "event_type": "customer.credit", "tenant_id": tenant, "timestamp": at(1),
            "data": {"customer_ref": ref, "credit_limit": "100000", "on_hold": False, "price_list_id": price_list_id}}


@pytest.fixture
def listed_shop(worker, publish, settings, creds):
    """A (1000.00, 10 in stock), tax 16%; C1 buys from price list PL-1, C2 from none."""
    publish("catalog.updates", [catalog(creds.tenant, [("A", "1000.00", 10)])])
    publish("customers", [customer_on_list(creds.tenant, "C1", "PL-1"), customer_on_list(creds.tenant, "C2", None)])
    settle(settings)
    return creds


def order(order_id: str, qty: int, customer_ref: str) -> dict:  # no unit_price: the price rules decide
    return {"order_id": order_id, "order_date": "2024-01-20T10:15:00Z", "customer_ref": customer_ref,
            "line_items": [{"sku": "A", "quantity": qty}]}


def test_a_price_list_is_published_once_and_prices_the_customers_orders(api, listed_shop, settings):
    shop = listed_shop
    first = api.commerce(shop, "/api/v1/price-lists/PL-1", PL, "pl-1")
    event_id = idempotency.event_id(shop.tenant, "pl-1")
    assert (first.status_code, first.json()) == (202, {"event_ids": [event_id], "status": "ACCEPTED", "published": 1})
    again = api.commerce(shop, "/api/v1/price-lists/PL-1", PL, "pl-1")
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (202, first.content, "true")
    other = problem(api.commerce(shop, "/api/v1/price-lists/PL-2", PL, "pl-1"), 422)  # same key, another path
    assert other["field"] == "Idempotency-Key"
    published = records(settings, "price.lists", shop.tenant)
    assert [(r["key"], r["value"]["event_id"], r["value"]["event_type"], r["value"]["source"]) for r in published] == [
        (f"{shop.tenant}:PL-1", event_id, "price_list.updated", "api")]
    data = published[0]["value"]["data"]
    assert {k: data[k] for k in ("price_list_id", "currency", "valid_to")} == {
        "price_list_id": "PL-1", "currency": "USD", "valid_to": None}
    assert [(i["sku"], Decimal(i["unit_price"]), i["min_quantity"]) for i in data["items"]] == [
        ("A", Decimal("900.00"), 1), ("A", Decimal("850.00"), 3)]
    settle(settings)
    # C1's list: 3 units take the break at 3 (850.00), 1 unit 900.00; C2 has no list: the catalog's 1000.00
    for oid, qty, who, total in (("O-1", 3, "C1", "2958.00"), ("O-2", 1, "C1", "1044.00"),
                                 ("O-3", 1, "C2", "1160.00")):
        placed = api.commerce(shop, "/api/v1/orders/import", order(oid, qty, who), f"o-{oid}")
        assert (placed.status_code, placed.json()["total"]) == (201, total), placed.text
    invoices = {r["value"]["invoice_id"]: [(li["unit_price"], li["price_source"], li["price_list_id"])
                                           for li in r["value"]["lines"]]
                for r in records(settings, "ledger.invoices", shop.tenant)}
    assert {k: [(Decimal(p), s, i) for p, s, i in v] for k, v in invoices.items()} == {
        "INV-O-1": [(Decimal("850.00"), "PRICE_LIST", "PL-1")], "INV-O-2": [(Decimal("900.00"), "PRICE_LIST", "PL-1")],
        "INV-O-3": [(Decimal("1000.00"), "CATALOG", None)]}
    # a new version of the list (a new key) replaces it whole for later orders
    newer = api.commerce(shop, "/api/v1/price-lists/PL-1", {"currency": "USD", "items": [
        {"sku": "A", "unit_price": "700.00"}]}, "pl-1b")
    assert newer.status_code == 202, newer.text
    settle(settings)
    cheaper = api.commerce(shop, "/api/v1/orders/import", order("O-4", 3, "C1"), "o-O-4")
    assert (cheaper.status_code, cheaper.json()["total"]) == (201, "2436.00")  # 3 x 700.00 x 1.16


def test_the_price_list_door_is_scoped_to_the_tokens_tenant(api, listed_shop, api_engine, settings, tenant):
    from stockledger import tenants
    from tests.api.support import Creds

    other = Creds(tenants.add(api_engine, settings.master_key(), tenant + "-b"))
    resp = api.commerce(other, "/api/v1/price-lists/PL-1", PL, "pl-1")
    assert resp.status_code == 202, resp.text
    assert [r["key"] for r in records(settings, "price.lists", other.tenant)] == [f"{other.tenant}:PL-1"]
    assert records(settings, "price.lists", listed_shop.tenant) == []  # nothing reached the first tenant
    # the integration key of the till is not a door to price lists: the Bearer token is
    problem(api.post("/api/v1/price-lists/PL-1", PL, headers={"X-Integration-Key": listed_shop.key,
                                                              "Idempotency-Key": "k"}), 401)
    problem(api.post("/api/v1/price-lists/PL-1", PL, headers={"Authorization": "Bearer nope", "Idempotency-Key": "k"}),
            401)


@pytest.mark.parametrize("path,body,key,status,detail", [
    ("PL-1", {**PL, "currency": "usd"}, "b1", 400, "currency: expected an ISO 4217 code (three upper-case letters)"),
    ("PL-1", {"items": []}, "b2", 400, "currency: is required"),
    ("PL-1", {"currency": "USD"}, "b3", 400, "items: is required"),
    ("PL-1", {**PL, "price_list_id": "PL-9"}, "b4", 400, "unknown field: price_list_id"),
    ("PL-1", {"currency": "USD", "items": [{"sku": "A"}]}, "b5", 400, "items[0].unit_price: is required"),
    ("PL-1", {"currency": "USD", "items": [{"sku": "A", "unit_price": "-1"}]}, "b6", 400,
     "items[0].unit_price: must not be negative"),
    ("PL-1", {"currency": "USD", "items": [{"sku": "A", "unit_price": "1", "min_quantity": 0}]}, "b7", 400,
     "items[0].min_quantity: must be a whole number of at least 1"),
    ("PL-1", {"currency": "USD", "items": [{"sku": "A", "unit_price": "1"}, {"sku": "A", "unit_price": "2"}]}, "b8",
     400, "items[1]: A with min_quantity 1 appears twice"),
    ("PL-1", {**PL, "valid_to": "2023-12-31T00:00:00Z"}, "b9", 400, "valid_to: must not be before valid_from"),
    ("PL-1", {"currency": "USD", "items": [{"sku": "A", "unit_price": "1e20"}]}, "b10", 400,
     "items[0].unit_price: AMOUNT_OUT_OF_RANGE: 1e20 is too large (at most 18 digits)"),
    ("PL-1", {"currency": "USD", "items": [{"sku": "a/b", "unit_price": "1"}]}, "b11", 400, None),
    ("PL-1", {"currency": "USD", "items": "A"}, "b12", 400, "items: expected an array of objects"),
    ("PL-1", [PL], "b13", 400, "<body>: the body must be a JSON object"),
    ("PL-1", PL, None, 400, None),  # no Idempotency-Key
    ("a%25b", PL, "b14", 400, "price_list_id must not contain '%'"),  # an id that could read as another path
])
def test_the_price_list_door_refuses_bad_requests_and_publishes_nothing(api, listed_shop, settings, path, body, key,
                                                                         status, detail):
    got = problem(api.commerce(listed_shop, f"/api/v1/price-lists/{path}", body, key), status)
    if detail is not None:
        assert got["detail"] == detail
    assert records(settings, "price.lists", listed_shop.tenant) == []


# -- the door's checks against the fold's rules (no sockets) ----------------------------------------------
_money = st.one_of(st.decimals(min_value=-5, max_value=10_000, places=3).map(str), st.integers(-3, 10), st.just("x"))
_item = st.fixed_dictionaries({"sku": st.sampled_from(["A", "B", " ", ""]), "unit_price": _money},
                              optional={"min_quantity": st.one_of(st.integers(-1, 4), st.just("2"))})
_stamp = st.sampled_from(["2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", None, "not a time"])
_body = st.fixed_dictionaries({"currency": st.sampled_from(["USD", "KES", "JPY", "XXX", "usd", "US", 5]),
                               "items": st.one_of(st.lists(_item, max_size=4), st.just("x"))},
                              optional={"valid_from": _stamp, "valid_to": _stamp,
                                        "extra": st.just(1)})


@hsettings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_body)
def test_the_doors_checks_are_the_folds_rules(body: dict[str, Any]):
    """Whatever the door accepts, the fold accepts too, but for the rules only the fold's currency table
    can tell (an unlisted code, more decimals than the currency has); whatever it refuses is a 400."""
    try:
        published = events.price_list("PL-1")("t1", body, "e1", events.FIXED_AT)
    except Problem as refused:
        assert refused.status == 400
        return
    data = published[0][1].record["data"]
    currency = data["currency"]
    reasons = validate_price_list(data)
    table_only = [r for r in reasons if r == f"unknown currency {currency!r}" or "more decimals than" in r]
    assert reasons == table_only, reasons
    if is_known_currency(currency):
        assert all(is_whole_minor(i["unit_price"], currency) for i in data["items"]) == (not table_only)


def test_the_doors_item_limit_is_the_folds():
    assert events.PRICE_LIST_MAX_ITEMS == MAX_ITEMS
    too_many = {"currency": "USD", "items": [{"sku": f"S{n}", "unit_price": "1"} for n in range(MAX_ITEMS + 1)]}
    with pytest.raises(Problem) as refused:
        events.price_list("PL-1")("t1", too_many, "e1", events.FIXED_AT)
    assert (refused.value.status, refused.value.detail) == (400, f"items: a price list has at most {MAX_ITEMS} "
                                                                 f"items, got {MAX_ITEMS + 1}")
