"""The fold: exact outputs and state for each rule, and properties over random tenant logs."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.catalog import CatalogEntry
from streams.core.fold import (
    ACCEPTED,
    FAILED,
    ORDER,
    POS,
    REFUSED,
    TABLES,
    DeadLetter,
    DictState,
    Emit,
    FoldConfig,
    SaleRecord,
    catalog_of,
    credit_of,
    fold,
    open_invoices_of,
    payment_of,
    sale_of,
    seen_of,
    serial_fold,
    stock_of,
)
from streams.core.serde import from_plain, to_plain

from .foldkit import catalog, check_outputs, count, delta, emits, payment, refund, sale, terms, topics

D = Decimal
CFG = FoldConfig()


def run(state: DictState, *inputs):
    """Fold inputs in order onto `state`; the outputs of each input, checked against their schemas."""
    per_input = []
    for event in inputs:
        out = fold(state, event, CFG)
        check_outputs(out)
        per_input.append(out)
    return per_input if len(per_input) > 1 else per_input[0]


def shop(stock_a: int = 10, stock_b: int = 5) -> DictState:
    """A tenant with A (100.00, 16% tax) and B (50.00) on sale, C inactive, customers C1 (no limit), C2 (300)."""
    state = DictState()
    run(state,
        catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": stock_a},
                      {"sku": "B", "price": "50.00", "stock_quantity": stock_b}], event_id="cat-1", tax_rate="16"),
        catalog("H", [{"sku": "C", "price": "10.00", "stock_quantity": 100}], event_id="cat-2", is_active=False),
        terms("C1", "0", event_id="cust-1"),
        terms("C2", "300", event_id="cust-2"))
    return state


def outcome_of(outputs) -> dict:
    last = outputs[-1]
    assert isinstance(last, Emit) and last.topic == "sales.outcomes"
    return last.value


# -- sales --------------------------------------------------------------------------------------------
def test_a_pos_sale_books_deducts_and_sends_its_outcome_last():
    state = shop()
    out = run(state, sale("S1", [{"sku": "A", "quantity": 2}, {"sku": "X", "quantity": 1, "unit_price": "10"}],
                          event_id="e1", location="L1"))
    refs = out[4:6]  # seed 000: each SKU the first time a booked document names it (no customer here)
    assert [(o.key, o.value) for o in refs] == [
        ("t1:item:A", {"tenant_id": "t1", "kind": "item", "external_id": "A", "internal_id": "A"}),
        ("t1:item:X", {"tenant_id": "t1", "kind": "item", "external_id": "X", "internal_id": "X"})]
    out = out[:4] + out[6:]
    assert topics(out) == ["ledger.invoices", "ledger.payments", "ledger.journal", "ledger.external_refs",
                           "stock.levels", "stock.levels", "inventory.alerts", "sales.outcomes"]
    assert [o.key for o in out] == ["t1:INV-S1", "t1:PAY-S1-1", "t1:JE-INV-S1", "t1:sale:S1", "t1:A", "t1:X", "t1:X",
                                    "t1:S1"]
    invoice = out[0].value
    assert (invoice["net_total"], invoice["tax_total"], invoice["total"]) == (D("210.00"), D("32.00"), D("242.00"))
    assert [(li["sku"], li["unit_price"], li["tax_percent"], li["total"]) for li in invoice["lines"]] == [
        ("A", D("100.00"), D("16"), D("232.00")), ("X", D("10"), D("0"), D("10.00"))]
    assert out[1].value["method"] == "CASH" and out[1].value["amount"] == D("242.00")
    assert [(li["account"], li["debit"], li["credit"]) for li in out[2].value["lines"]] == [
        ("1000", D("242.00"), 0), ("4000", 0, D("210.00")), ("2100", 0, D("32.00"))]
    assert out[3].value == {"tenant_id": "t1", "kind": "sale", "external_id": "S1", "internal_id": "INV-S1"}
    assert out[4].value == {"tenant_id": "t1", "sku": "A", "on_hand": 8, "reserved": 0, "available": 8,
                            "updated_at": 2000, "last_event_id": "e1", "location_id": "L1", "reason": "SALE"}
    assert (out[5].value["on_hand"], out[6].value["alert"]) == (-1, "OVERSOLD")
    assert out[7].value == {"tenant_id": "t1", "kind": "SALE", "id": "S1", "sale_id": "S1", "customer_ref": None,
                            "event_id": "e1", "outcome": "ACCEPTED", "reasons": [], "credit": None,
                            "document_ids": ["INV-S1", "PAY-S1-1", "JE-INV-S1"], "total": D("242.00"),
                            "currency": "KES", "decided_at": 2000}
    record = sale_of(state, "t1", "S1")
    assert (record.kind, record.status, record.event_id, record.location_id) == (POS, ACCEPTED, "e1", "L1")
    assert record.document_ids == ("INV-S1", "PAY-S1-1", "JE-INV-S1")
    assert record.invoice.total == D("242.00") and record.outcome.outcome == ACCEPTED
    assert (stock_of(state, "t1", "A").on_hand, stock_of(state, "t1", "X").on_hand) == (8, -1)
    assert seen_of(state, "t1", "e1") == record.fingerprint


def test_an_on_account_pos_sale_adds_its_invoice_to_credit():
    state = shop()
    out = run(state, sale("S1", [{"sku": "B", "quantity": 1}], event_id="e1", terms="ON_ACCOUNT", customer="C2"))
    assert topics(out) == ["ledger.invoices", "ledger.journal", "ledger.external_refs", "ledger.external_refs",
                           "ledger.external_refs", "stock.levels", "sales.outcomes"]
    assert [o.key for o in out[2:5]] == ["t1:sale:S1", "t1:customer:C2", "t1:item:B"]
    assert outcome_of(out)["credit"] is None  # a POS sale happened: its credit is not checked
    credit = credit_of(state, "t1", "C2")
    assert [(i.invoice_id, i.total) for i in open_invoices_of(state, "t1", "C2")] == [("INV-S1", D("58.00"))]
    assert (credit.open_count, credit.oldest, credit.newest) == (1, "INV-S1", "INV-S1")
    assert (credit.outstanding, credit.available) == (D("58.00"), D("242"))
    again = run(state, sale("S2", [{"sku": "B", "quantity": 1}], event_id="e2", terms="ON_ACCOUNT", customer="C2"))
    assert [o.key for o in again if o.topic == "ledger.external_refs"] == ["t1:sale:S2"]  # named once only


def test_an_order_is_refused_as_a_whole_with_every_line_reason():
    state = shop()
    before = copy.deepcopy(state.tables)
    out = run(state, sale("O1", [{"sku": "A", "quantity": 6}, {"sku": "C", "quantity": 1}, {"sku": "Z", "quantity": 1},
                                 {"sku": "A", "quantity": 5}, {"sku": "B", "quantity": 5}],
                          event_id="o1", order=True, terms="ON_ACCOUNT", customer="C1"))
    assert topics(out) == ["sales.outcomes"]
    assert outcome_of(out) == {
        "tenant_id": "t1", "kind": "SALE", "id": "O1", "sale_id": "O1", "customer_ref": "C1", "event_id": "o1",
        "outcome": "REFUSED", "credit": None, "document_ids": [], "total": None, "currency": "KES",
        "decided_at": 2000, "reasons": [
            {"sku": "A", "code": "INSUFFICIENT_STOCK", "message": "line 1: sku A: requested 11, available 10",
             "requested": 11, "available": 10},
            {"sku": "C", "code": "INACTIVE_SKU", "message": "line 2: sku C is not active", "requested": None,
             "available": None},
            {"sku": "Z", "code": "UNKNOWN_SKU", "message": "line 3: sku Z is unknown", "requested": None,
             "available": None},
            {"sku": "A", "code": "INSUFFICIENT_STOCK", "message": "line 4: sku A: requested 11, available 10",
             "requested": 11, "available": 10}]}
    record = sale_of(state, "t1", "O1")
    assert (record.kind, record.status, record.invoice, record.document_ids) == (ORDER, REFUSED, None, ())
    assert {t: rows for t, rows in state.tables.items() if t not in ("sales", "seen", "expiry")} == \
        {t: rows for t, rows in before.items() if t not in ("sales", "seen", "expiry")}


def test_an_order_over_the_credit_limit_or_on_hold_is_refused_with_the_figures():
    state = shop()
    run(state, sale("S0", [{"sku": "B", "quantity": 1}], event_id="e0", terms="ON_ACCOUNT", customer="C2"))
    before = copy.deepcopy(state.tables)
    out = run(state, sale("O1", [{"sku": "A", "quantity": 3}], event_id="o1", order=True, terms="ON_ACCOUNT",
                          customer="C2"))
    assert topics(out) == ["sales.outcomes"]
    result = outcome_of(out)
    assert result["outcome"] == "REFUSED"
    assert result["reasons"] == [{"sku": None, "code": "CREDIT_LIMIT_EXCEEDED", "requested": None, "available": None,
                                  "message": "Insufficient credit. Available: 242.00, Required: 348.00"}]
    assert result["credit"] == {"credit_limit": D("300"), "outstanding": D("58.00"), "available": D("242"),
                                "order_amount": D("348.00")}
    assert {t: r for t, r in state.tables.items() if t not in ("sales", "seen", "expiry")} == \
        {t: r for t, r in before.items() if t not in ("sales", "seen", "expiry")}
    run(state, terms("C2", "300", True, event_id="cust-3"))
    held = outcome_of(run(state, sale("O2", [{"sku": "B", "quantity": 1}], event_id="o2", order=True,
                                      terms="ON_ACCOUNT", customer="C2")))
    assert [r["code"] for r in held["reasons"]] == ["CREDIT_HOLD"] and held["credit"]["order_amount"] == D("58.00")


def test_an_accepted_on_account_order_consumes_credit_and_reports_its_check():
    state = shop()
    out = run(state, sale("O1", [{"sku": "B", "quantity": 5}], event_id="o1", order=True, terms="ON_ACCOUNT",
                          customer="C2"))
    result = outcome_of(out)
    assert result["outcome"] == "ACCEPTED" and result["total"] == D("290.00")
    assert result["credit"] == {"credit_limit": D("300"), "outstanding": D("0"), "available": D("300"),
                                "order_amount": D("290.00")}
    assert emits(out, "stock.levels")[0]["reason"] == "ORDER" and stock_of(state, "t1", "B").available == 0
    assert credit_of(state, "t1", "C2").available == D("10.00")
    second = outcome_of(run(state, sale("O2", [{"sku": "A", "quantity": 1}], event_id="o2", order=True,
                                        terms="ON_ACCOUNT", customer="C2")))
    assert second["outcome"] == "REFUSED" and second["credit"]["available"] == D("10.00")


def test_two_orders_racing_for_the_last_units_first_wins():
    state = shop(stock_a=3)
    first, second = run(state,
                        sale("O1", [{"sku": "A", "quantity": 2}], event_id="o1", order=True),
                        sale("O2", [{"sku": "A", "quantity": 2}], event_id="o2", order=True, ts=2001))
    assert outcome_of(first)["outcome"] == "ACCEPTED"
    assert outcome_of(second)["reasons"] == [{
        "sku": "A", "code": "INSUFFICIENT_STOCK", "message": "line 1: sku A: requested 2, available 1",
        "requested": 2, "available": 1}]
    assert topics(second) == ["sales.outcomes"]
    assert (stock_of(state, "t1", "A").on_hand, sale_of(state, "t1", "O2").status) == (1, REFUSED)


def test_no_price_is_dead_lettered_and_nothing_is_applied():
    state = shop()
    before = copy.deepcopy(state.tables)
    event = sale("S1", [{"sku": "A", "quantity": 1}, {"sku": "Z", "quantity": 1}], event_id="e1")
    out = run(state, event)
    assert out == [DeadLetter(event, "NO_PRICE: line 2: sku 'Z' has no unit_price and is not in the catalog",
                              "rule")]
    record = sale_of(state, "t1", "S1")
    assert (record.status, record.error, record.outcome) == (FAILED, out[0].error, None)
    assert {t: r for t, r in state.tables.items() if t not in ("sales", "seen", "expiry")} == \
        {t: r for t, r in before.items() if t not in ("sales", "seen", "expiry")}
    assert run(state, event) == []  # redelivered: recognised, not dead-lettered twice
    refused = outcome_of(run(state, refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1")))
    assert refused["reasons"][0]["code"] == "UNKNOWN_SALE"


def test_payment_mismatch_is_dead_lettered_and_nothing_is_applied():
    state = shop()
    before = copy.deepcopy(state.tables)
    event = sale("S1", [{"sku": "A", "quantity": 1}], event_id="e1",
                 payments=[{"method": "CASH", "amount": "100.00"}, {"method": "CARD", "amount": "10.00"}])
    out = run(state, event)
    assert out == [DeadLetter(event, "PAYMENT_MISMATCH: payments sum to 110.0000 KES but the invoice total is "
                                     "116.00 KES", "rule")]
    assert sale_of(state, "t1", "S1").status == FAILED
    assert {t: r for t, r in state.tables.items() if t not in ("sales", "seen", "expiry")} == \
        {t: r for t, r in before.items() if t not in ("sales", "seen", "expiry")}


# -- payments -----------------------------------------------------------------------------------------
def test_a_payment_right_after_its_on_account_sale_is_applied():
    state = shop()
    sold, paid = run(state,
                     sale("S1", [{"sku": "A", "quantity": 1}], event_id="e1", order=True, terms="ON_ACCOUNT",
                          customer="C1"),
                     payment("P1", "C1", "116.00", event_id="p1", invoice="INV-S1", ts=2001))
    assert outcome_of(sold)["outcome"] == "ACCEPTED"
    assert topics(paid) == ["ledger.payments", "ledger.journal", "sales.outcomes"]
    assert paid[0].key == "t1:PAY-P1" and paid[0].value["allocations"] == [
        {"invoice_id": "INV-S1", "amount": D("116.00"), "status_after": "PAID", "paid_after": D("116.00")}]
    assert [(li["account"], li["debit"], li["credit"]) for li in paid[1].value["lines"]] == [
        ("1020", D("116.00"), 0), ("1100", 0, D("116.00"))]
    assert paid[2].key == "t1:C1" and outcome_of(paid) == {
        "tenant_id": "t1", "kind": "PAYMENT", "id": "P1", "sale_id": None, "customer_ref": "C1", "event_id": "p1",
        "outcome": "ACCEPTED", "reasons": [], "credit": None, "document_ids": ["PAY-P1", "JE-PAY-P1"],
        "total": D("116.00"), "currency": "KES", "decided_at": 2001}
    credit = credit_of(state, "t1", "C1")
    assert (open_invoices_of(state, "t1", "C1"), credit.outstanding, credit.open_count) == ([], D(0), 0)
    paid_off = state.tables["invoices"]["t1:INV-S1"]  # left the chain, kept: a payment naming it is refused
    assert (paid_off["paid"], paid_off["prev"], paid_off["next"]) == ("116.0000", None, None)
    again = run(state, payment("P2", "C1", "1.00", event_id="p2", invoice="INV-S1", ts=2002))
    assert outcome_of(again)["reasons"] == [{"sku": None, "code": "UNKNOWN_INVOICE", "requested": None,
                                             "available": None,
                                             "message": "INV-S1 is not an open invoice of customer C1"}]
    assert payment_of(state, "t1", "P1").status == "APPLIED"


def test_payments_go_to_the_oldest_invoices_first_and_overpayment_is_refused():
    state = shop()
    run(state,
        sale("S1", [{"sku": "A", "quantity": 1}], event_id="e1", terms="ON_ACCOUNT", customer="C1", ts=2000),
        sale("S2", [{"sku": "A", "quantity": 2}], event_id="e2", terms="ON_ACCOUNT", customer="C1", ts=2500))
    paid = run(state, payment("P1", "C1", "150.00", event_id="p1"))
    assert paid[0].value["allocations"] == [
        {"invoice_id": "INV-S1", "amount": D("116.00"), "status_after": "PAID", "paid_after": D("116.00")},
        {"invoice_id": "INV-S2", "amount": D("34.00"), "status_after": "PARTIALLY_PAID", "paid_after": D("34.00")}]
    assert credit_of(state, "t1", "C1").outstanding == D("198.00")
    before = copy.deepcopy(state.tables["credit"])
    over = run(state, payment("P2", "C1", "500.00", event_id="p2"))
    assert topics(over) == ["sales.outcomes"]
    assert outcome_of(over)["outcome"] == "REFUSED" and outcome_of(over)["reasons"] == [{
        "sku": None, "code": "OVERPAYMENT", "requested": None, "available": None,
        "message": "payment of 500.0000 KES exceeds the 198.0000 due on customer C1's open invoices"}]
    assert state.tables["credit"] == before and payment_of(state, "t1", "P2").status == "REFUSED"
    unknown = run(state, payment("P3", "C1", "1.00", event_id="p3", invoice="INV-NOPE"))
    assert outcome_of(unknown)["reasons"][0]["code"] == "UNKNOWN_INVOICE"


# -- refunds ------------------------------------------------------------------------------------------
def test_a_cash_refund_with_restock():
    state = shop()
    run(state, sale("S1", [{"sku": "A", "quantity": 2}], event_id="e1", location="L1"))
    out = run(state, refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1"))
    assert topics(out) == ["ledger.credit_notes", "ledger.journal", "ledger.external_refs", "stock.levels",
                           "sales.outcomes"]
    note = out[0].value
    assert (out[0].key, note["invoice_id"], note["total"], note["refund_method"]) == (
        "t1:CN-R1", "INV-S1", D("116.00"), "CASH")
    assert [(li["account"], li["debit"], li["credit"]) for li in out[1].value["lines"]] == [
        ("4010", D("100.00"), 0), ("2100", D("16.00"), 0), ("1000", 0, D("116.00"))]
    assert out[2].value == {"tenant_id": "t1", "kind": "refund", "external_id": "R1", "internal_id": "CN-R1"}
    assert (out[3].value["on_hand"], out[3].value["reason"], out[3].value["location_id"]) == (9, "RETURN", "L1")
    assert out[4].key == "t1:S1" and outcome_of(out) == {
        "tenant_id": "t1", "kind": "REFUND", "id": "R1", "sale_id": "S1", "customer_ref": None, "event_id": "r1",
        "outcome": "ACCEPTED", "reasons": [], "credit": None, "document_ids": ["CN-R1", "JE-CN-R1"],
        "total": D("116.00"), "currency": "KES", "decided_at": 3000}
    record = sale_of(state, "t1", "S1")
    assert [(r.refund_id, r.outcome.outcome) for r in record.refund_results] == [("R1", ACCEPTED)]
    assert record.refunds.refund_ids == ("R1",)


def test_a_credit_refund_of_an_on_account_sale_lowers_outstanding():
    state = shop()
    run(state, sale("S1", [{"sku": "A", "quantity": 2}], event_id="e1", terms="ON_ACCOUNT", customer="C1"))
    out = run(state, refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", method="CREDIT",
                            restock=False))
    assert topics(out) == ["ledger.credit_notes", "ledger.journal", "ledger.external_refs", "sales.outcomes"]
    assert [(li["account"], li["credit"]) for li in out[1].value["lines"] if li["credit"]] == [("1100", D("116.00"))]
    assert outcome_of(out)["customer_ref"] == "C1"
    assert credit_of(state, "t1", "C1").outstanding == D("116.00")
    assert stock_of(state, "t1", "A").on_hand == 8  # no restock


def test_over_refund_unknown_and_refused_sales_are_refused():
    state = shop()
    run(state, sale("S1", [{"sku": "A", "quantity": 2}], event_id="e1"),
        sale("O1", [{"sku": "Z", "quantity": 1}], event_id="o1", order=True))
    before = copy.deepcopy(state.tables["stock"])
    over = run(state, refund("R1", "S1", [{"sku": "A", "quantity": 3}], event_id="r1"))
    assert topics(over) == ["sales.outcomes"]
    assert outcome_of(over)["reasons"] == [{
        "sku": "A", "code": "OVER_REFUND", "requested": 3, "available": 2,
        "message": "sku A: refund of 3 exceeds the 2 still refundable (2 sold, 0 already refunded)"}]
    assert outcome_of(over)["outcome"] == "REFUSED" and state.tables["stock"] == before
    unknown = outcome_of(run(state, refund("R2", "NOPE", [{"sku": "A", "quantity": 1}], event_id="r2")))
    assert unknown["reasons"][0]["message"] == "sale NOPE is unknown; nothing to refund"
    refused = outcome_of(run(state, refund("R3", "O1", [{"sku": "Z", "quantity": 1}], event_id="r3")))
    assert (refused["outcome"], refused["reasons"][0]["code"]) == ("REFUSED", "UNKNOWN_SALE")
    # what is left can still be refunded, and then no more
    run(state, refund("R4", "S1", [{"sku": "A", "quantity": 2}], event_id="r4"))
    again = outcome_of(run(state, refund("R5", "S1", [{"sku": "A", "quantity": 1}], event_id="r5")))
    assert again["reasons"][0]["available"] == 0


# -- duplicates and conflicts -------------------------------------------------------------------------
def test_every_duplicate_changes_nothing_and_emits_nothing():
    state = DictState()
    events = [
        catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 10}], event_id="c1"),
        count("A", 20, event_id="i1", ts=1500), delta("A", -1, event_id="i2", ts=1600),
        terms("C1", "1000", event_id="cu1"),
        sale("S1", [{"sku": "A", "quantity": 2}], event_id="e1", terms="ON_ACCOUNT", customer="C1"),
        sale("O1", [{"sku": "A", "quantity": 1}], event_id="o1", order=True),
        payment("P1", "C1", "50.00", event_id="p1"),
        refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", method="CREDIT"),
        sale("S9", [{"sku": "Q", "quantity": 1}], event_id="e9"),  # NO_PRICE
    ]
    run(state, *events)
    before = copy.deepcopy(state.tables)
    for event in events:
        assert fold(state, event, CFG) == []
    assert state.tables == before


def test_a_same_business_id_under_another_event_id():
    state = shop()
    run(state, sale("S1", [{"sku": "A", "quantity": 1}], event_id="e1", terms="ON_ACCOUNT", customer="C1"),
        payment("P1", "C1", "10.00", event_id="p1"),
        refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", restock=False))
    before = copy.deepcopy(state.tables)
    # a refund or payment sent again under a new event id with the same content is a duplicate
    assert run(state, refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1-retry", restock=False)) == []
    assert run(state, payment("P1", "C1", "10.00", event_id="p1-retry")) == []
    # with other content a conflict; a sale_id under another event id is a document that already belongs to
    # another business action (SPEC 2, "Documents are unique within a tenant"): refused. Nothing changes.
    refund_conflict = run(state, refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1-other"))
    pay_conflict = run(state, payment("P1", "C1", "11.00", event_id="p1-other"))
    sale_conflict = run(state, sale("S1", [{"sku": "A", "quantity": 1}], event_id="e1-other"))
    for out, key, outcome, why in (
            (refund_conflict, "t1:S1", "IDEMPOTENCY_CONFLICT", "refund R1 was received before with other content"),
            (pay_conflict, "t1:C1", "IDEMPOTENCY_CONFLICT", "payment P1 was received before with other content"),
            (sale_conflict, "t1:S1", "REFUSED", "sale S1 was already received as event e1")):
        assert [o.key for o in out] == [key]
        assert out[0].value["outcome"] == outcome
        code = "DUPLICATE_DOCUMENT_ID" if outcome == "REFUSED" else outcome
        assert out[0].value["reasons"] == [{"sku": None, "code": code, "message": why,
                                            "requested": None, "available": None}]
    ids = ("seen", "expiry")  # the event ids remembered
    assert {t: r for t, r in state.tables.items() if t not in ids} == {t: r for t, r in before.items() if t not in ids}


def test_an_event_id_reused_with_other_content():
    state = shop()
    run(state, count("A", 20, event_id="i1", ts=1500),
        sale("S1", [{"sku": "A", "quantity": 1}], event_id="e1"))
    before = copy.deepcopy(state.tables)
    inventory = count("A", 21, event_id="i1", ts=1500)
    out = run(state, inventory)
    assert out == [DeadLetter(inventory, "IDEMPOTENCY_CONFLICT: event_id i1 was used before with different "
                                         "content; refused", "idempotency")]
    customer = terms("C1", "5", event_id="cust-1")
    assert run(state, customer)[0].stage == "idempotency"
    cat = catalog("G", [{"sku": "A", "price": "1.00"}], event_id="cat-1")
    assert run(state, cat)[0].error.startswith("IDEMPOTENCY_CONFLICT: event_id cat-1")
    conflict = run(state, sale("S2", [{"sku": "A", "quantity": 1}], event_id="e1"))
    assert [(o.topic, o.key, o.value["outcome"]) for o in conflict] == [
        ("sales.outcomes", "t1:S2", "IDEMPOTENCY_CONFLICT")]
    assert conflict[0].value["reasons"][0]["message"] == "event_id e1 was used before with different content"
    assert run(state, payment("P9", "C1", "1.00", event_id="i1"))[0].value["outcome"] == "IDEMPOTENCY_CONFLICT"
    assert state.tables == before


# -- stock ----------------------------------------------------------------------------------------------
def test_stale_counts_late_deltas_and_the_reason_of_each_level():
    state = DictState()
    out = run(state, count("A", 10, event_id="i1", ts=2000, reason="GOODS_RECEIPT", location="W1"),
              count("A", 5, event_id="i2", ts=1000),
              delta("A", 3, event_id="i3", ts=1500),
              delta("A", -2, event_id="i4", ts=2500),
              count("A", 7, event_id="i5", ts=3000),
              catalog("G", [{"sku": "A", "price": "1.00", "stock_quantity": 4}], event_id="c1", ts=4000))
    assert [(v["on_hand"], v["reason"], v["location_id"]) for v in emits(out[0], "stock.levels")] == [
        (10, "GOODS_RECEIPT", "W1")]
    assert topics(out[1]) == ["inventory.alerts"] and out[1][0].value == {
        "tenant_id": "t1", "sku": "A", "alert": "STALE_ABSOLUTE", "on_hand": 10, "event_id": "i2",
        "message": "sku A: count 5 at 1000 is older than the count 10 at 2000; ignored", "raised_at": 1000}
    assert out[2] == []  # a delta inside the later count changes nothing
    assert [(v["on_hand"], v["reason"]) for v in emits(out[3], "stock.levels")] == [(8, "ADJUSTMENT")]
    assert [(v["on_hand"], v["reason"]) for v in emits(out[4], "stock.levels")] == [(7, "COUNT")]
    assert [(v["on_hand"], v["reason"]) for v in emits(out[5], "stock.levels")] == [(4, "CATALOG")]
    assert stock_of(state, "t1", "A").reason == "CATALOG"


def test_negative_stock_raises_an_alert():
    out = run(DictState(), delta("A", -3, event_id="i1"))
    assert topics(out) == ["stock.levels", "inventory.alerts"] and out[1].value["alert"] == "NEGATIVE_STOCK"


def test_an_older_catalog_update_does_not_win_but_its_count_is_checked():
    state = DictState()
    _, late = run(state, catalog("G", [{"sku": "A", "price": "2.00", "stock_quantity": 5}], event_id="c2", ts=2000),
                  catalog("G", [{"sku": "A", "price": "1.00", "stock_quantity": 9}], event_id="c1", ts=1000))
    entry = catalog_of(state, "t1", "A")
    assert (entry.price, entry.event_id, entry.updated_at) == (D("2.00"), "c2", 2000)
    assert [o.value["alert"] for o in late] == ["STALE_ABSOLUTE"]


# -- state ------------------------------------------------------------------------------------------------
def test_state_is_json_plain_and_records_round_trip():
    state = shop()
    run(state, sale("S1", [{"sku": "A", "quantity": 2}], event_id="e1", terms="ON_ACCOUNT", customer="C1"),
        refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", method="CREDIT"),
        refund("R2", "S1", [{"sku": "A", "quantity": 9}], event_id="r2"),
        payment("P1", "C1", "10.00", event_id="p1"))
    assert set(state.tables) == set(TABLES)
    for table in state.tables.values():
        for value in table.values():
            assert json.loads(json.dumps(value)) == value
    record = sale_of(state, "t1", "S1")
    assert [r.outcome.outcome for r in record.refund_results] == ["ACCEPTED", "REFUSED"]
    assert SaleRecord.from_dict(record.to_dict()) == record == from_plain(SaleRecord, to_plain(record))
    assert record.to_dict() == to_plain(record)
    entry = catalog_of(state, "t1", "A")
    assert CatalogEntry.from_dict(entry.to_dict()) == entry and entry.to_dict()["price"] == "100.0000"


class RecordingState(DictState):
    __slots__ = ("puts",)

    def __init__(self):
        super().__init__()
        self.puts: list = []

    def put(self, table, key, value):
        if table != "expiry":  # the tenant's queue of event ids to forget, written by every applied event
            self.puts.append((table, key))  # (tests/streams/core/test_horizons.py); here: the event's own keys
        super().put(table, key, value)


def test_a_duplicate_writes_again_what_its_event_wrote():
    state = RecordingState()
    run(state, catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 10}], event_id="c1"),
        terms("C1", "0", event_id="cu1"))
    event = sale("S1", [{"sku": "A", "quantity": 2}], event_id="e1", terms="ON_ACCOUNT", customer="C1")
    state.puts.clear()
    run(state, event)
    first = set(state.puts)
    before = copy.deepcopy(state.tables)
    state.puts.clear()
    assert fold(state, event, CFG) == []
    assert set(state.puts) == first and state.tables == before
    state.puts.clear()
    assert fold(state, event, FoldConfig(rewrite_duplicates=False)) == [] and state.puts == []


def test_a_duplicate_writes_again_the_express_neighbours_of_its_invoice():
    """An on-account invoice linked in express lanes (issue 17, credit.py) wrote its neighbours in each lane:
    INV-S14 (level 3) stamped between S7 and S8 is linked after S6 and before S11 in lane 1 (both level 1)."""
    state = RecordingState()
    run(state, catalog("G", [{"sku": "A", "price": "10.00", "stock_quantity": 100}], event_id="c1"),
        terms("C1", "0", event_id="cu1"))
    for n in range(1, 14):
        run(state, sale(f"S{n}", [{"sku": "A", "quantity": 1}], event_id=f"e{n}", ts=1_000 + 10 * n,
                        terms="ON_ACCOUNT", customer="C1"))
    event = sale("S14", [{"sku": "A", "quantity": 1}], event_id="e14", ts=1_075, terms="ON_ACCOUNT", customer="C1")
    state.puts.clear()
    run(state, event)
    first = set(state.puts)
    assert {k for t, k in first if t == "invoices"} == {"t1:INV-S14", "t1:INV-S7", "t1:INV-S8", "t1:INV-S6",
                                                         "t1:INV-S11"}
    before = copy.deepcopy(state.tables)
    state.puts.clear()
    assert fold(state, event, CFG) == []
    again = set(state.puts)  # and the refs of its customer and item, unchanged (the first sale wrote them)
    assert first <= again and again - first == {("refs", "t1:customer:C1"), ("refs", "t1:item:A")}
    assert state.tables == before


def test_the_default_tax_applies_without_a_product_rate():
    state = DictState()
    out = fold(state, sale("S1", [{"sku": "X", "quantity": 1, "unit_price": "100"}], event_id="e1"),
               FoldConfig(default_tax_percent=D("16")))
    assert emits(out, "ledger.invoices")[0]["tax_total"] == D("16.00")


# -- properties over random tenant logs ----------------------------------------------------------------
SKUS = ("A", "B", "C", "X")  # X is not in the catalog, C may be inactive
SALE_SKUS = ("A", "B", "A", "B", "C", "X")
CUSTOMERS = ("C1", "C2")


@st.composite
def tenant_logs(draw, max_size: int = 25, unchanged: bool = False):
    """A random tenant log: catalog, counts, deltas, terms, sales, orders, refunds, payments, and event ids
    reused with other content. `unchanged`: only events whose behaviour issue 16 left as it was (no sale_id
    reused, CREDIT refunds only of on-account sales, a refund_id only on one sale), for the legacy fold."""
    n = draw(st.integers(1, max_size))
    events = [catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 5},
                            {"sku": "B", "price": "33.33", "stock_quantity": 2}], event_id="cat-0", tax_rate="16",
                      ts=0),
              catalog("H", [{"sku": "C", "price": "7.50"}], event_id="cat-1", ts=0, is_active=draw(st.booleans())),
              terms("C2", "150", event_id="cust-0", ts=0)]
    sale_ids: list[str] = []
    sold: dict[str, tuple[list[str], str | None]] = {}  # sale_id -> (skus, customer)
    refund_of: dict[str, str] = {}  # refund_id -> the sale it was first used on
    on_account_sales: dict[str, bool] = {}
    for i in range(n):
        kind = draw(st.sampled_from(["count", "delta", "terms", "pos", "order", "refund", "pay", "reuse"]))
        ts = draw(st.integers(1, 50)) * 100
        eid = f"e{i}"
        if kind == "reuse" and len(events) > 2:
            eid = events[draw(st.integers(2, len(events) - 1))].record["event_id"]
            kind = draw(st.sampled_from(["count", "delta", "pos", "pay"]))
        sku = draw(st.sampled_from(SKUS))
        customer = draw(st.sampled_from(CUSTOMERS))
        if kind == "count":
            events.append(count(sku, draw(st.integers(0, 20)), event_id=eid, ts=ts))
        elif kind == "delta":
            events.append(delta(sku, draw(st.integers(-5, 5).filter(bool)), event_id=eid, ts=ts,
                                reason=draw(st.sampled_from([None, "GOODS_RECEIPT"]))))
        elif kind == "terms":
            events.append(terms(customer, draw(st.sampled_from(["0", "150", "1000"])), draw(st.booleans()),
                                event_id=eid, ts=ts))
        elif kind in ("pos", "order"):
            sale_id = f"S{i}" if unchanged or not sale_ids or draw(st.integers(0, 9)) else draw(
                st.sampled_from(sale_ids))
            lines = [{"sku": draw(st.sampled_from(SALE_SKUS)), "quantity": draw(st.integers(1, 4)),
                      "unit_price": draw(st.sampled_from([None, "10.00", "0.99"])),
                      "discount_percent": draw(st.sampled_from([None, "12.5"]))}
                     for _ in range(draw(st.integers(1, 3)))]
            on_account = draw(st.booleans())
            pays = None
            if not on_account and draw(st.integers(0, 4)) == 0:
                pays = [{"method": "CARD", "amount": draw(st.sampled_from(["1.00", "116.00"]))}]
            events.append(sale(sale_id, lines, event_id=eid, ts=ts, order=kind == "order",
                               terms="ON_ACCOUNT" if on_account else "PAID",
                               customer=customer if on_account or draw(st.booleans()) else None, payments=pays))
            sale_ids.append(sale_id)
            on_account_sales.setdefault(sale_id, on_account)
            sold.setdefault(sale_id, ([line["sku"] for line in lines], events[-1].record["data"]["customer_ref"]))
        elif kind == "refund":
            target = draw(st.sampled_from(sale_ids[-3:])) if sale_ids else "S-none"
            skus = sold.get(target, (list(SKUS), None))[0]
            rid = f"R{draw(st.integers(0, n))}"
            method = draw(st.sampled_from(["CASH", "CREDIT"]))
            if unchanged:
                rid = refund_of.setdefault(rid, target) == target and rid or f"R-{i}"
                method = method if on_account_sales.get(target) else "CASH"
            events.append(refund(rid, target,
                                 [{"sku": draw(st.sampled_from(skus)), "quantity": draw(st.integers(1, 2))}],
                                 event_id=eid, ts=ts, restock=draw(st.booleans()), method=method))
        else:
            invoice = None
            if sale_ids and draw(st.booleans()):
                target = draw(st.sampled_from(sale_ids))
                invoice, customer = f"INV-{target}", sold[target][1] or customer
            events.append(payment(f"P{draw(st.integers(0, n))}", customer,
                                  draw(st.sampled_from(["1.00", "2.50", "10.00", "5000.00"])), event_id=eid, ts=ts,
                                  invoice=invoice))
    return events


@settings(max_examples=60, deadline=None)
@given(tenant_logs())
def test_every_output_fits_its_schema_and_every_journal_entry_balances(events):
    _, outputs = serial_fold(events)
    check_outputs(outputs)
    for entry in emits(outputs, "ledger.journal"):
        assert sum(li["debit"] for li in entry["lines"]) == sum(li["credit"] for li in entry["lines"])
        assert all((li["debit"] == 0) != (li["credit"] == 0) for li in entry["lines"])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_duplicates_anywhere_later_change_neither_state_nor_outputs(data):
    events = data.draw(tenant_logs())
    once_state, once = serial_fold(events)
    # copies of any events, each inserted somewhere after its original
    log: list[tuple[int, bool]] = [(i, False) for i in range(len(events))]
    for i in data.draw(st.lists(st.integers(0, len(events) - 1), max_size=len(events))):
        at = data.draw(st.integers(log.index((i, False)) + 1, len(log)))
        log.insert(at, (i, True))
    state = DictState()
    originals, copies = [], []
    for i, is_copy in log:
        out = fold(state, events[i], CFG)
        (copies if is_copy else originals).extend(out)
    assert state == once_state
    assert originals == once
    # replaying the whole log onto the final state changes nothing either
    for event in events:
        copies.extend(fold(state, event, CFG))
    assert state == once_state
    for out in copies:  # a copy is silent, unless its original was itself a refused conflict
        if isinstance(out, DeadLetter):
            assert out.stage == "idempotency"
        else:
            assert out.value["outcome"] == "IDEMPOTENCY_CONFLICT"


@settings(max_examples=40, deadline=None)
@given(tenant_logs())
def test_the_serial_fold_is_deterministic(events):
    first_state, first = serial_fold(events)
    second_state, second = serial_fold(events)
    assert first_state == second_state and first == second
    assert json.dumps(first_state.tables, sort_keys=True) == json.dumps(second_state.tables, sort_keys=True)


@settings(max_examples=40, deadline=None)
@given(tenant_logs())
def test_nothing_is_ever_reserved_and_sales_are_never_pending(events):
    state, _ = serial_fold(events)
    assert all(row["reserved"] == 0 for row in state.tables["stock"].values())
    assert {row["status"] for row in state.tables["sales"].values()} <= {ACCEPTED, REFUSED, FAILED}


def test_an_event_writes_each_key_once_and_all_or_nothing(monkeypatch):
    state = RecordingState()
    run(state, catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 10}], event_id="c1"),
        sale("S1", [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}], event_id="e1", terms="ON_ACCOUNT",
             customer="C1"))
    state.puts.clear()
    run(state, refund("R1", "S1", [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}], event_id="r1",
                      method="CREDIT"))
    assert sorted(state.puts) == [("credit", "t1:C1"), ("documents", "t1:CN-R1"), ("invoices", "t1:INV-S1"),
                                  ("invoices", "t1:refund:C1:R1"), ("sales", "t1:S1"), ("seen", "t1:r1"),
                                  ("stock", "t1:A")]

    import streams.core.fold as fold_module

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    before = copy.deepcopy(state.tables)
    monkeypatch.setattr(fold_module, "add_invoice", broken)  # fails after the stock was deducted
    try:
        fold(state, sale("S2", [{"sku": "A", "quantity": 1}], event_id="e2", terms="ON_ACCOUNT", customer="C1"), CFG)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the fold should have raised")
    assert state.tables == before


def test_every_input_event_type_has_a_validator_and_the_core_stays_pure():
    import ast
    import pathlib

    from stockledger.topics import INPUTS
    from streams.core import fold as fold_module

    assert {t for spec in INPUTS for t in spec.event_types} == set(fold_module.VALIDATORS)
    assert fold_module.VALIDATORS["catalog.update"]({"product_group_id": "G", "variants": []}) == [
        "a product group needs at least one variant"]
    stdlib = {"__future__", "bisect", "itertools", "collections", "contextlib", "dataclasses", "datetime", "decimal",
              "enum",
              "functools", "hashlib", "json", "types", "typing"}
    for path in pathlib.Path(fold_module.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert {a.name.split(".")[0] for a in node.names} <= stdlib, path
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                # the one import outside itself: SPEC 2's bounds, pure and in the contract (ARCHITECTURE.md)
                assert node.module.split(".")[0] in stdlib or node.module == "stockledger.bounds", (path, node.module)


def test_a_duplicate_payment_or_refund_writes_again_the_invoice_keys_it_wrote():
    state = RecordingState()
    run(state, catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 50}], event_id="c1"),
        *[sale(f"S{n}", [{"sku": "A", "quantity": 1}], event_id=f"e{n}", ts=2000 + n, terms="ON_ACCOUNT",
               customer="C1") for n in range(5)])
    events = [payment("P1", "C1", "150.00", event_id="p1"),  # pays INV-S0 off, INV-S1 in part
              payment("P2", "C1", "100.00", event_id="p2", invoice="INV-S3"),  # off, from the chain's middle
              refund("R1", "S2", [{"sku": "A", "quantity": 1}], event_id="r1", method="CREDIT", restock=False),
              sale("S5", [{"sku": "A", "quantity": 1}], event_id="e5", ts=2003, terms="ON_ACCOUNT",
                   customer="C1")]  # linked in between INV-S1 and INV-S4
    for event in events:
        state.puts.clear()
        out = run(state, event)
        first = set(state.puts)
        assert any(table == "invoices" for table, _ in first), (event.record["event_id"], out)
        before = copy.deepcopy(state.tables)
        state.puts.clear()
        assert fold(state, event, CFG) == []
        again = set(state.puts)  # (a refund without restock rewrites its stock keys too, as it always did)
        assert {p for p in again if p[0] == "invoices"} == {p for p in first if p[0] == "invoices"}
        assert again >= first and state.tables == before, event.record["event_id"]
    assert [i.invoice_id for i in open_invoices_of(state, "t1", "C1")] == ["INV-S1", "INV-S5", "INV-S4"]
