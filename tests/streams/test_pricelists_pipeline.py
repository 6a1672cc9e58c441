"""Price lists (SPEC 9) through `stockledger produce`'s conversion and a real worker: the customer's list
prices a line by its quantity break inside its window, the catalog prices the rest, and the invoice on
ledger.invoices says which."""

from __future__ import annotations

import pytest

from cli.testing import settle
from stockledger.produce import FieldError, convert

from .test_sales_pipeline import at, catalog, documents, journal_balances, outcomes, sale


def price_list(tenant: str, list_id: str, items: list[tuple[str, str, int]], *, n: int = 1, minute: int = 2,
               valid_to: str | None = None) -> dict:
    return {"event_id": f"pl-{list_id}-{n}", "event_type": "price_list.updated", "tenant_id": tenant,
            "timestamp": at(minute),
            "data": {"price_list_id": list_id, "currency": "KES", "valid_to": valid_to,
                     "items": [{"sku": s, "unit_price": p, "min_quantity": q} for s, p, q in items]}}


def terms(tenant: str, ref: str, list_id: str) -> dict:
    return {"event_id": f"cust-{ref}-pl", "event_type": "customer.credit", "tenant_id": tenant, "timestamp": at(1),
            "data": {"customer_ref": ref, "credit_limit": "0", "on_hold": False, "price_list_id": list_id}}


def test_produce_takes_a_price_list_and_refuses_one_beyond_the_bounds(tenant):
    prepared = convert("price.lists", price_list(tenant, "PL1", [("A", "900.00", 1)]))
    assert prepared.key == f"{tenant}:PL1"
    with pytest.raises(FieldError):
        convert("price.lists", price_list(tenant, "PL1", [("A", "1" + "0" * 15, 1)]))


def test_the_customers_list_prices_the_invoice_lines(worker, publish, settings, tenant):
    t = tenant
    publish("catalog.updates", [catalog(t, [("A", "1000.00", 50), ("B", "250.50", 50)])])
    publish("customers", [terms(t, "C1", "PL1"), terms(t, "C2", "PL2")])
    publish("price.lists", [price_list(t, "PL1", [("A", "900.00", 1), ("A", "850.00", 10)]),
                            price_list(t, "PL2", [("A", "1.00", 1)], valid_to=at(5))])
    settle(settings)
    publish("sales", [sale(t, "S1", [{"sku": "A", "quantity": 2}, {"sku": "A", "quantity": 10},
                                     {"sku": "B", "quantity": 1}], customer="C1", kind="order.placed",
                           terms="ON_ACCOUNT"),
                      sale(t, "S2", [{"sku": "A", "quantity": 1}], customer="C2", minute=20)])
    settle(settings)
    assert {k: v["outcome"] for k, v in outcomes(settings, t).items()} == {"S1": "ACCEPTED", "S2": "ACCEPTED"}
    invoices = documents(settings, "ledger.invoices", t)
    assert [(li["sku"], li["unit_price"], li["price_source"], li["price_list_id"], li["total"])
            for li in invoices["INV-S1"]["lines"]] == [
        ("A", "900.00", "PRICE_LIST", "PL1", "2088.00"), ("A", "850.00", "PRICE_LIST", "PL1", "9860.00"),
        ("B", "250.50", "CATALOG", None, "290.58")]
    assert invoices["INV-S1"]["total"] == "12238.58"
    # PL2 ended at 09:05; S2 happened at 09:20: the catalog price
    assert [(li["unit_price"], li["price_source"]) for li in invoices["INV-S2"]["lines"]] == [("1000.00", "CATALOG")]
    assert all(journal_balances(e) for e in documents(settings, "ledger.journal", t).values())
