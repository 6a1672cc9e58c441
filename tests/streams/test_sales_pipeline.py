"""Sales, orders, credit, payments and refunds through a real worker: exact documents, stock and credit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cli.testing import inventory_event, settle, tenant_records
from cli.testing import stock_of as stock

T0 = "2026-04-01T09:00:00Z"


def at(minute: int) -> str:
    return f"2026-04-01T09:{minute:02d}:00Z"


def catalog(tenant: str, items: list[tuple[str, str, int]], active: bool = True, tax_rate: str | None = "16",
            group: str = "G1", minute: int = 0) -> dict:
    return {"event_id": f"cat-{group}-{minute}", "event_type": "catalog.update", "tenant_id": tenant,
            "timestamp": at(minute),
            "data": {"product_group_id": group, "group_name": group, "is_active": active, "tax_rate": tax_rate,
                     "variants": [{"sku": sku, "display_name": sku, "price": price, "stock_quantity": qty}
                                  for sku, price, qty in items]}}


def sale(tenant: str, sale_id: str, lines: list[dict], *, kind: str = "sale.completed", terms: str = "PAID",
         customer: str | None = None, payments: list | None = None, minute: int = 10, currency: str = "KES") -> dict:
    data = {"sale_id": sale_id, "channel": "POS" if kind == "sale.completed" else "WEB", "currency": currency,
            "payment_terms": terms, "line_items": lines}
    if customer:
        data["customer_ref"] = customer
    if payments is not None:
        data["payments"] = payments
    return {"event_id": f"ev-{sale_id}", "event_type": kind, "tenant_id": tenant, "timestamp": at(minute),
            "data": data}


def customer(tenant: str, ref: str, limit: str, on_hold: bool = False, n: int = 1) -> dict:
    return {"event_id": f"cust-{ref}-{n}", "event_type": "customer.credit", "tenant_id": tenant, "timestamp": at(1),
            "data": {"customer_ref": ref, "credit_limit": limit, "on_hold": on_hold}}


def payment(tenant: str, pid: str, ref: str, amount: str, invoice: str | None = None, minute: int = 30) -> dict:
    return {"event_id": f"ev-{pid}", "event_type": "payment.received", "tenant_id": tenant, "timestamp": at(minute),
            "data": {"payment_id": pid, "customer_ref": ref, "invoice_id": invoice, "amount": amount,
                     "currency": "KES", "method": "BANK"}}


def refund(tenant: str, rid: str, sale_id: str, lines: list[dict], method: str = "CASH", restock: bool = True,
           minute: int = 40) -> dict:
    return {"event_id": f"ev-{rid}", "event_type": "refund.issued", "tenant_id": tenant, "timestamp": at(minute),
            "data": {"refund_id": rid, "sale_id": sale_id, "lines": lines, "restock": restock,
                     "refund_method": method}}


def outcomes(settings, tenant: str) -> dict[str, dict]:
    return {r["value"]["id"]: r["value"] for r in tenant_records(settings, "sales.outcomes", tenant)}


def documents(settings, topic: str, tenant: str) -> dict[str, dict]:
    return {r["key"].split(":", 1)[1]: r["value"] for r in tenant_records(settings, topic, tenant)}


def journal_balances(entry: dict) -> bool:
    return sum(Decimal(li["debit"]) for li in entry["lines"]) == sum(Decimal(li["credit"]) for li in entry["lines"])


@pytest.fixture
def shop(worker, publish, settings, tenant):
    """Catalog A (1000.00, 10 in stock), B (250.50, 5), tax 16%; customers C1 (limit 10000) and C2 (no limit)."""
    publish("catalog.updates", [catalog(tenant, [("A", "1000.00", 10), ("B", "250.50", 5)])])
    publish("customers", [customer(tenant, "C1", "10000"), customer(tenant, "C2", "0")])
    settle(settings)
    return tenant


def test_pos_sale_deducts_prices_and_books(shop, worker, publish, settings):
    t = shop
    publish("sales", [sale(t, "S1", [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1,
                                                                   "discount_percent": "10"}],
                           payments=[{"method": "CARD", "amount": "2581.52"}])])
    settle(settings)
    assert stock(worker, t, "A")["on_hand"] == 8 and stock(worker, t, "B")["on_hand"] == 4
    assert stock(worker, t, "A")["reserved"] == 0
    inv = documents(settings, "ledger.invoices", t)["INV-S1"]
    # A: 2 x 1000 = 2000.00 net, 320.00 tax; B: 250.50 x 0.9 = 225.45 net, 36.07 tax (36.072 half-up)
    assert [(li["sku"], li["net"], li["tax"], li["total"]) for li in inv["lines"]] == [
        ("A", "2000.00", "320.00", "2320.00"), ("B", "225.45", "36.07", "261.52")]
    assert (inv["net_total"], inv["tax_total"], inv["total"]) == ("2225.45", "356.07", "2581.52")
    pay = documents(settings, "ledger.payments", t)["PAY-S1-1"]
    assert (pay["method"], pay["amount"], pay["allocations"][0]["status_after"]) == ("CARD", "2581.52", "PAID")
    je = documents(settings, "ledger.journal", t)["JE-INV-S1"]
    assert journal_balances(je)
    assert {(li["account"], li["debit"], li["credit"]) for li in je["lines"]} == {
        ("1010", "2581.52", "0.00"), ("4000", "0.00", "2225.45"), ("2100", "0.00", "356.07")}
    out = outcomes(settings, t)["S1"]
    assert (out["outcome"], out["document_ids"]) == ("ACCEPTED", ["INV-S1", "PAY-S1-1", "JE-INV-S1"])
    refs = documents(settings, "ledger.external_refs", t)
    assert refs["sale:S1"] == {"tenant_id": t, "kind": "sale", "external_id": "S1", "internal_id": "INV-S1"}
    body = worker.get("/sales/S1", tenant=t).json()
    assert (body["status"], body["outcome"], body["total"]) == ("ACCEPTED", "ACCEPTED", "2581.52")


def test_pos_sale_below_zero_is_kept_and_oversold(shop, worker, publish, settings):
    t = shop
    publish("sales", [sale(t, "S2", [{"sku": "B", "quantity": 7}])])
    settle(settings)
    assert stock(worker, t, "B")["on_hand"] == -2
    alerts = [r["value"] for r in tenant_records(settings, "inventory.alerts", t)]
    assert [(a["alert"], a["sku"], a["on_hand"]) for a in alerts] == [("OVERSOLD", "B", -2)]
    assert outcomes(settings, t)["S2"]["outcome"] == "ACCEPTED"


def test_credit_example_of_004_refuses_the_whole_order(shop, worker, publish, settings):
    t = shop
    # outstanding 8000: an accepted on-account order of 8 x 1000 at 0% tax
    publish("sales", [sale(t, "O1", [{"sku": "A", "quantity": 8, "tax_percent": "0"}], kind="order.placed",
                           terms="ON_ACCOUNT", customer="C1")])
    settle(settings)
    assert outcomes(settings, t)["O1"]["outcome"] == "ACCEPTED"
    publish("sales", [sale(t, "O2", [{"sku": "B", "quantity": 1, "unit_price": "3000", "tax_percent": "0"}],
                           kind="order.placed", terms="ON_ACCOUNT", customer="C1", minute=11)])
    settle(settings)
    out = outcomes(settings, t)["O2"]
    assert out["outcome"] == "REFUSED"
    assert out["credit"] == {"credit_limit": "10000.00", "outstanding": "8000.00", "available": "2000.00",
                             "order_amount": "3000.00"}
    assert out["reasons"][0]["code"] == "CREDIT_LIMIT_EXCEEDED"
    b = stock(worker, t, "B")
    assert (b["on_hand"], b["reserved"]) == (5, 0)  # nothing reserved for a refused order
    assert "INV-O2" not in documents(settings, "ledger.invoices", t)
    credit = worker.get("/credit/C1", tenant=t).json()
    assert (credit["credit_limit"], credit["outstanding"], credit["available"]) == ("10000.00", "8000.00", "2000.00")


def test_order_lines_refused_with_reasons(shop, worker, publish, settings):
    t = shop
    publish("catalog.updates", [catalog(t, [("OLD", "5.00", 3)], active=False, group="G2")])
    publish("sales", [sale(t, "O3", [{"sku": "A", "quantity": 11}, {"sku": "NOPE", "quantity": 1},
                                     {"sku": "OLD", "quantity": 1}, {"sku": "B", "quantity": 1}],
                           kind="order.placed")])
    settle(settings)
    out = outcomes(settings, t)["O3"]
    assert out["outcome"] == "REFUSED"
    assert [(r["sku"], r["code"], r["requested"], r["available"]) for r in out["reasons"]] == [
        ("A", "INSUFFICIENT_STOCK", 11, 10), ("NOPE", "UNKNOWN_SKU", None, None), ("OLD", "INACTIVE_SKU", None, None)]
    assert (stock(worker, t, "A")["reserved"], stock(worker, t, "B")["reserved"]) == (0, 0)
    assert stock(worker, t, "B")["on_hand"] == 5


def test_two_orders_race_for_the_last_unit(shop, worker, publish, settings):
    t = shop
    publish("inventory.changes", [{**inventory_event(t, "last", "A", 5, new_quantity=1), "timestamp": at(5)}])
    settle(settings)
    publish("sales", [sale(t, "R1", [{"sku": "A", "quantity": 1}], kind="order.placed", minute=12),
                      sale(t, "R2", [{"sku": "A", "quantity": 1}], kind="order.placed", minute=12)])
    settle(settings)
    results = sorted(outcomes(settings, t)[s]["outcome"] for s in ("R1", "R2"))
    assert results == ["ACCEPTED", "REFUSED"]
    a = stock(worker, t, "A")
    assert (a["on_hand"], a["reserved"]) == (0, 0)


def test_payments_partially_paid_then_paid_and_overpayment_refused(shop, worker, publish, settings):
    t = shop
    publish("sales", [sale(t, "P1", [{"sku": "A", "quantity": 1, "tax_percent": "0"}], kind="order.placed",
                           terms="ON_ACCOUNT", customer="C2")])
    settle(settings)
    publish("payments", [payment(t, "PM1", "C2", "400.00", "INV-P1", minute=31)])
    settle(settings)
    publish("payments", [payment(t, "PM2", "C2", "600.01", "INV-P1", minute=32)])  # overpays by 0.01
    settle(settings)
    publish("payments", [payment(t, "PM3", "C2", "600.00", minute=33)])  # oldest unpaid first
    settle(settings)
    pays = documents(settings, "ledger.payments", t)
    assert [(a["invoice_id"], a["amount"], a["paid_after"],
             a["status_after"]) for a in pays["PAY-PM1"]["allocations"]] \
        == [("INV-P1", "400.00", "400.00", "PARTIALLY_PAID")]
    assert [(a["status_after"], a["paid_after"]) for a in pays["PAY-PM3"]["allocations"]] == [("PAID", "1000.00")]
    assert "PAY-PM2" not in pays
    out = outcomes(settings, t)
    assert (out["PM1"]["outcome"], out["PM2"]["outcome"], out["PM3"]["outcome"]) == ("ACCEPTED", "REFUSED", "ACCEPTED")
    assert out["PM2"]["reasons"][0]["code"] == "OVERPAYMENT"
    je = documents(settings, "ledger.journal", t)["JE-PAY-PM1"]
    assert {(li["account"], li["debit"], li["credit"]) for li in je["lines"]} == {
        ("1020", "400.00", "0.00"), ("1100", "0.00", "400.00")}
    credit = worker.get("/credit/C2", tenant=t).json()
    assert (credit["outstanding"], credit["open_invoices"]) == ("0.00", [])


def test_refunds_reverse_to_the_cent_restock_and_refuse_over_refund(shop, worker, publish, settings):
    t = shop
    publish("sales", [sale(t, "F1", [{"sku": "B", "quantity": 3, "discount_percent": "7.5"}], terms="ON_ACCOUNT",
                           customer="C2")])
    settle(settings)
    publish("refunds", [refund(t, "RF1", "F1", [{"sku": "B", "quantity": 1}], method="CREDIT", minute=41)])
    settle(settings)
    publish("refunds", [refund(t, "RF2", "F1", [{"sku": "B", "quantity": 3}], minute=42)])  # only 2 left
    settle(settings)
    publish("refunds", [refund(t, "RF3", "F1", [{"sku": "B", "quantity": 2}], method="CREDIT", minute=43)])
    settle(settings)
    out = outcomes(settings, t)
    assert (out["RF1"]["outcome"], out["RF2"]["outcome"], out["RF3"]["outcome"]) == ("ACCEPTED", "REFUSED", "ACCEPTED")
    assert out["RF2"]["reasons"][0]["code"] == "OVER_REFUND"
    assert (out["RF2"]["reasons"][0]["requested"], out["RF2"]["reasons"][0]["available"]) == (3, 2)
    inv = documents(settings, "ledger.invoices", t)["INV-F1"]
    notes = documents(settings, "ledger.credit_notes", t)
    assert Decimal(notes["CN-RF1"]["total"]) + Decimal(notes["CN-RF3"]["total"]) == Decimal(inv["total"])
    assert Decimal(notes["CN-RF1"]["net_total"]) + Decimal(notes["CN-RF3"]["net_total"]) == Decimal(inv["net_total"])
    je = documents(settings, "ledger.journal", t)["JE-CN-RF1"]
    assert journal_balances(je) and any(li["account"] == "1100" and li["credit"] != "0.00" for li in je["lines"])
    assert stock(worker, t, "B")["on_hand"] == 5  # 5 - 3 sold + 1 + 2 restocked
    credit = worker.get("/credit/C2", tenant=t).json()
    assert credit["outstanding"] == "0.00"


def test_refund_of_unknown_sale_and_payment_mismatch(shop, worker, publish, settings):
    t = shop
    publish("refunds", [refund(t, "RX", "NOSALE", [{"sku": "A", "quantity": 1}])])
    publish("sales", [sale(t, "M1", [{"sku": "A", "quantity": 1}], payments=[{"method": "CASH", "amount": "1"}])])
    settle(settings)
    assert outcomes(settings, t)["RX"]["reasons"][0]["code"] == "UNKNOWN_SALE"
    a = stock(worker, t, "A")
    assert (a["on_hand"], a["reserved"]) == (10, 0)  # the mismatched sale changed nothing
    [dlq] = [r["value"] for r in tenant_records(settings, "sales.dlq", t)]
    assert dlq["error"].startswith("PAYMENT_MISMATCH") and dlq["stage"] == "rule"
    assert "INV-M1" not in documents(settings, "ledger.invoices", t)


def test_sale_idempotency(shop, worker, publish, settings):
    t = shop
    s = sale(t, "D1", [{"sku": "A", "quantity": 1}])
    publish("sales", [s, s])
    publish("sales", [{**s, "data": {**s["data"], "line_items": [{"sku": "A", "quantity": 2}]}}])
    settle(settings)
    assert stock(worker, t, "A")["on_hand"] == 9
    records = [r["value"] for r in tenant_records(settings, "sales.outcomes", t) if r["value"]["id"] == "D1"]
    assert {r["outcome"] for r in records} == {"ACCEPTED", "IDEMPOTENCY_CONFLICT"}
    assert len({r["key"] for r in tenant_records(settings, "ledger.invoices", t)}) == 1
