"""The credit view's receivables (SPEC 9): overdue amount, days past due of the oldest overdue invoice, store
credit, terms, first and last payment, each open invoice's due date. Pure: the view of a folded state."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.core.fold import DictState, credit_of, fold, open_invoices_of
from streams.web import credit_view
from tests.streams.core.foldkit import catalog, payment, refund, sale, terms
from tests.streams.core.test_fold import CFG


def at(month: int, day: int, hour: int = 10) -> int:
    return int(datetime(2026, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def test_overdue_days_past_due_store_credit_and_payments():
    state = DictState()
    for event in (catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 100}], event_id="cat", ts=at(1, 1)),
                  terms("C1", "1000", event_id="c1", ts=at(1, 1), days=10),
                  sale("S1", [{"sku": "A", "quantity": 1}], event_id="s1", ts=at(1, 5), terms="ON_ACCOUNT",
                       customer="C1"),  # due 01-15
                  terms("C1", "1000", event_id="c1-30", ts=at(1, 6), days=30),
                  sale("S2", [{"sku": "A", "quantity": 2}], event_id="s2", ts=at(1, 10), terms="ON_ACCOUNT",
                       customer="C1"),  # due 02-09
                  sale("S3", [{"sku": "A", "quantity": 1}], event_id="s3", ts=at(1, 11), customer="C1"),
                  refund("R3", "S3", [{"sku": "A", "quantity": 1}], event_id="r3", ts=at(1, 12), method="CREDIT"),
                  payment("P1", "C1", "40.00", event_id="p1", ts=at(1, 20), invoice="INV-S1"),
                  payment("P2", "C1", "10.00", event_id="p2", ts=at(2, 1), invoice="INV-S2")):
        fold(state, event, CFG)

    def view(month: int, day: int) -> dict:
        return credit_view(credit_of(state, "t1", "C1"), open_invoices_of(state, "t1", "C1"), at(month, day, 23))

    on_due_day = view(1, 15)
    assert {k: on_due_day[k] for k in ("outstanding", "available", "credit_balance", "payment_terms_days",
                                       "overdue", "days_past_due", "first_payment_at", "last_payment_at")} == {
        "outstanding": "150.00", "available": "850.00", "credit_balance": "100.00", "payment_terms_days": 30,
        "overdue": "0.00", "days_past_due": 0, "first_payment_at": "2026-01-20T10:00:00Z",
        "last_payment_at": "2026-02-01T10:00:00Z"}
    assert [(i["invoice_id"], i["remaining"], i["status"], i["due_date"]) for i in on_due_day["open_invoices"]] == [
        ("INV-S1", "60.00", "PARTIALLY_PAID", "2026-01-15"), ("INV-S2", "190.00", "PARTIALLY_PAID", "2026-02-09")]
    assert (view(1, 16)["overdue"], view(1, 16)["days_past_due"]) == ("60.00", 1)
    assert (view(2, 9)["overdue"], view(2, 9)["days_past_due"]) == ("60.00", 25)
    assert (view(2, 10)["overdue"], view(2, 10)["days_past_due"]) == ("250.00", 26)  # the oldest: S1's
