"""Web orders paid by the treasury: a guest order is payment due, a payment settles it, a failure is recorded."""

from __future__ import annotations

from decimal import Decimal

from stockledger.mapping import order_customer, order_import
from streams.core.fold import (
    ACCEPTED,
    REFUSED,
    VALIDATORS,
    DictState,
    FoldConfig,
    fold,
    open_invoices_of,
    payment_failures_of,
)
from streams.core.treasury import MAX_FAILURES, PaymentFailure

from .foldkit import catalog, check_outputs, emits, event, payment, sale, topics

D = Decimal
CFG = FoldConfig()


def run(state: DictState, ev):
    out = fold(state, ev, CFG)
    check_outputs(out)
    return out


def failed(payment_id: str, customer: str, invoice: str, why: str, *, event_id: str, ts: int = 4_000):
    return event("payment.failed", {"payment_id": payment_id, "customer_ref": customer, "invoice_id": invoice,
                                    "amount": "116.00", "currency": "KES", "method": "MOBILE",
                                    "failure_reason": why}, event_id=event_id, ts=ts)


def test_an_imported_order_without_customer_or_terms_is_payment_due_of_a_one_time_customer():
    assert order_customer({"order_id": "W1"}) == ("GUEST-W1", "ON_ACCOUNT")
    assert order_customer({"order_id": "W1", "customer_ref": "C1"}) == ("C1", "ON_ACCOUNT")
    assert order_customer({"order_id": "W1", "payment_terms": "PAID"}) == (None, "PAID")  # the producer says so
    data = order_import({"order_id": "W1", "line_items": [{"sku": "A", "quantity": 1}]}, "t1", "KES")["data"]
    assert (data["customer_ref"], data["payment_terms"]) == ("GUEST-W1", "ON_ACCOUNT")


def web_order(state: DictState):
    run(state, catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 5}], event_id="cat", tax_rate="16"))
    return run(state, sale("W1", [{"sku": "A", "quantity": 1}], event_id="w1", order=True, terms="ON_ACCOUNT",
                           customer="GUEST-W1"))


def test_a_guest_order_is_an_open_invoice_no_cash_and_the_treasury_payment_settles_it():
    state = DictState()
    out = web_order(state)
    assert topics(out) == ["ledger.invoices", "ledger.journal", "ledger.external_refs", "ledger.external_refs",
                           "ledger.external_refs", "stock.levels", "sales.outcomes"]  # no ledger.payments: nobody paid
    assert [(r["kind"], r["external_id"]) for r in emits(out, "ledger.external_refs")] == [
        ("sale", "W1"), ("customer", "GUEST-W1"), ("item", "A")]
    (entry,) = emits(out, "ledger.journal")
    assert [(li["account"], li["debit"], li["credit"]) for li in entry["lines"]] == [
        ("1100", D("116.00"), 0), ("4000", 0, D("100.00")), ("2100", 0, D("16.00"))]
    assert [(i.invoice_id, i.remaining) for i in open_invoices_of(state, "t1", "GUEST-W1")] == [("INV-W1", D("116.00"))]
    paid = run(state, payment("P1", "GUEST-W1", "116.00", event_id="p1", invoice="INV-W1", method="MOBILE"))
    (je,) = emits(paid, "ledger.journal")
    assert [(li["account"], li["debit"], li["credit"]) for li in je["lines"]] == [
        ("1010", D("116.00"), 0), ("1100", 0, D("116.00"))]
    assert emits(paid, "sales.outcomes")[0]["outcome"] == ACCEPTED
    assert open_invoices_of(state, "t1", "GUEST-W1") == []
    assert D(state.tables["invoices"]["t1:INV-W1"]["paid"]) == D("116.00")


def test_a_failed_payment_is_recorded_on_its_sale_and_books_nothing():
    state = DictState()
    web_order(state)
    out = run(state, failed("P1", "GUEST-W1", "INV-W1", "insufficient funds", event_id="f1"))
    assert topics(out) == ["sales.outcomes"]
    assert out[0].key == "t1:W1"
    outcome = out[0].value
    assert (outcome["kind"], outcome["id"], outcome["sale_id"], outcome["outcome"], outcome["customer_ref"],
            outcome["total"]) == ("PAYMENT", "P1", "W1", REFUSED, "GUEST-W1", D("116.00"))
    assert outcome["reasons"] == [{"code": "PAYMENT_FAILED", "message": "insufficient funds", "sku": None,
                                   "requested": None, "available": None}]
    assert payment_failures_of(state, "t1", "W1") == [
        PaymentFailure("P1", "f1", 4_000, "insufficient funds", D("116.0000"), "KES")]
    assert [(i.invoice_id, i.remaining) for i in open_invoices_of(state, "t1", "GUEST-W1")] == [("INV-W1", D("116.00"))]
    assert run(state, failed("P1", "GUEST-W1", "INV-W1", "insufficient funds", event_id="f1")) == []  # a repeat
    conflict = run(state, failed("P1", "GUEST-W1", "INV-W1", "card expired", event_id="f1"))
    assert emits(conflict, "sales.outcomes")[0]["outcome"] == "IDEMPOTENCY_CONFLICT"
    for n in range(MAX_FAILURES + 3):  # bounded: the newest MAX_FAILURES are kept
        run(state, failed(f"P{n + 2}", "GUEST-W1", "INV-W1", f"try {n}", event_id=f"f{n + 2}", ts=5_000 + n))
    kept = payment_failures_of(state, "t1", "W1")
    assert len(kept) == MAX_FAILURES and kept[-1].reason == f"try {MAX_FAILURES + 2}" and kept[0].reason == "try 3"


def test_a_failure_naming_an_unknown_sale_is_refused_and_kept_nowhere():
    state = DictState()
    out = run(state, failed("P1", "C1", "INV-NOPE", "declined", event_id="f1"))
    assert [(r["code"]) for r in emits(out, "sales.outcomes")[0]["reasons"]] == ["UNKNOWN_SALE"]
    assert state.tables["payment_failures"] == {}


def test_validation_of_a_payment_failure():
    ok = {"payment_id": "P1", "customer_ref": "C1", "invoice_id": "INV-W1", "amount": D(0), "currency": "KES",
          "method": "MOBILE", "failure_reason": "declined"}
    assert VALIDATORS["payment.failed"](ok) == []
    assert VALIDATORS["payment.failed"]({**ok, "invoice_id": "W1", "failure_reason": " "}) == [
        "invoice_id must name the sale's invoice (INV-<sale_id>), got 'W1'",
        "failure_reason (the provider's reason) is missing or empty"]
