import json
from decimal import Decimal

from streams.core.credit import (
    APPLIED,
    CREDIT_HOLD,
    CREDIT_LIMIT_EXCEEDED,
    CURRENCY_MISMATCH,
    OVERPAYMENT,
    REFUSED,
    UNKNOWN_INVOICE,
    CreditCheck,
    CreditState,
    InvoiceEntry,
    OpenInvoice,
    PaymentReceived,
    add_invoice,
    apply_credit_refund,
    apply_payment,
    check_order,
    invoice_of,
    open_invoices_of,
    set_terms,
    validate_customer_credit,
    validate_payment,
)
from streams.core.fold import DictState
from streams.core.ledger import Allocation

D = Decimal
EMPTY = CreditState("t1", "C1")


class Book:
    """A customer's credit and the state its invoices live in, as the fold keeps them."""

    def __init__(self, limit="0", *invoices, currency="KES"):
        self.store = DictState()
        self.state = set_terms(EMPTY, D(limit), False).state
        for invoice_id, issued_at, total in invoices:
            self.add(invoice_id, issued_at, total, currency)

    def keep(self, state):
        self.state = state
        self.store.put("credit", "t1:C1", state.to_dict())
        return state

    def add(self, invoice_id, issued_at, total, currency="KES"):
        update = add_invoice(self.store, self.state, invoice_id, issued_at, currency, D(total))
        self.keep(update.state)
        return update

    def pay(self, amount, invoice_id=None, currency="KES"):
        result = apply_payment(self.store, self.state, D(amount), invoice_id, currency)
        if result.status == APPLIED:
            self.keep(result.state)
        return result

    def credit(self, refund_id, invoice_id, amount):
        update = apply_credit_refund(self.store, self.state, refund_id, invoice_id, D(amount))
        self.keep(update.state)
        return update

    @property
    def open(self):
        return tuple(open_invoices_of(self.store, "t1", "C1"))

    def snapshot(self):
        return {t: dict(rows) for t, rows in self.store.tables.items()}


def test_004_credit_limit_example():
    state = Book("10000.00", ("INV-1", 1, "8000.00")).state
    check = check_order(state, D("3000.00"))
    assert check == CreditCheck(
        approved=False,
        reason=CREDIT_LIMIT_EXCEEDED,
        credit_limit=D("10000.00"),
        outstanding=D("8000.00"),
        available=D("2000.00"),
        order_amount=D("3000.00"),
        message="Insufficient credit. Available: 2000.00, Required: 3000.00",
    )
    assert check_order(state, D("2000.00")).approved  # exactly what is available


def test_no_limit_and_hold():
    state = Book("0", ("INV-1", 1, "1000000")).state
    check = check_order(state, D("5000000"))
    assert (check.approved, check.available, check.outstanding) == (True, None, D("1000000"))
    held = set_terms(state, D("0"), True).state
    check = check_order(held, D("1"))
    assert (check.approved, check.reason, check.message) == (False, CREDIT_HOLD, "Customer C1 is on credit hold")


def test_payment_moves_invoice_unpaid_partially_paid_paid():
    book = Book("0", ("INV-1", 1, "1500.00"))
    assert book.open[0].status == "UNPAID"
    first = book.pay("1000.00", "INV-1")
    assert first.status == APPLIED and first.invoice_ids == ("INV-1",)
    assert first.allocations == (Allocation("INV-1", D("1000.00"), "PARTIALLY_PAID", D("1000.00")),)
    assert book.open == (OpenInvoice("INV-1", 1, "KES", D("1500.00"), D("1000.00")),)
    assert book.open[0].status == "PARTIALLY_PAID"
    assert first.state.outstanding == D("500.00")
    second = book.pay("500.00", "INV-1")
    assert second.allocations == (Allocation("INV-1", D("500.00"), "PAID", D("1500.00")),)
    assert book.open == ()
    assert second.state.outstanding == D("0.00")
    paid = invoice_of(book.store, "t1", "INV-1")  # left the chain, its key stays
    assert (paid.status, paid.prev, paid.next, book.state.oldest, book.state.open_count) == (
        "PAID", None, None, None, 0)
    again = book.pay("1.00", "INV-1")
    assert (again.code, again.reason) == (UNKNOWN_INVOICE, "INV-1 is not an open invoice of customer C1")


def test_overpayment_is_refused_with_nothing_applied():
    book = Book("0", ("INV-1", 1, "500.00"), ("INV-2", 2, "100.00"))
    state, before = book.state, book.snapshot()
    named = book.pay("500.01", "INV-1")
    assert (named.state, named.status, named.code, named.allocations) == (state, REFUSED, OVERPAYMENT, ())
    assert named.reason == "payment of 500.01 exceeds the 500.00 due on INV-1"
    unnamed = book.pay("600.01")
    assert (unnamed.state, unnamed.status, unnamed.code) == (state, REFUSED, OVERPAYMENT)
    assert unnamed.reason == "payment of 600.01 KES exceeds the 600.00 due on customer C1's open invoices"
    assert book.snapshot() == before  # nothing written
    # refused payments are not remembered: the same payment may succeed later
    assert book.pay("600.00").status == APPLIED


def test_unknown_invoice_and_other_currency_are_refused():
    book = Book("0", ("INV-1", 1, "500.00"))
    unknown = book.pay("5", "INV-404")
    assert (unknown.state, unknown.code, unknown.reason) == (
        book.state,
        UNKNOWN_INVOICE,
        "INV-404 is not an open invoice of customer C1",
    )
    assert book.pay("5", "INV-1", "USD").code == CURRENCY_MISMATCH
    other = Book("0")  # another customer's invoice is not an open invoice of C1
    other.store = book.store
    other.state = CreditState("t1", "C2")
    assert apply_payment(book.store, other.state, D("5"), "INV-1", "KES").code == UNKNOWN_INVOICE


def test_oldest_unpaid_invoices_are_paid_first():
    book = Book("0", ("INV-B", 200, "100.00"), ("INV-C", 100, "30.00"), ("INV-A", 100, "50.00"))
    assert [i.invoice_id for i in book.open] == ["INV-A", "INV-C", "INV-B"]  # the chain is in order
    result = book.pay("120.00")
    assert result.allocations == (
        Allocation("INV-A", D("50.00"), "PAID", D("50.00")),
        Allocation("INV-C", D("30.00"), "PAID", D("30.00")),
        Allocation("INV-B", D("40.00"), "PARTIALLY_PAID", D("40.00")),
    )
    assert book.open == (OpenInvoice("INV-B", 200, "KES", D("100.00"), D("40.00")),)
    assert result.state.outstanding == D("60.00")
    assert (book.state.oldest, book.state.newest, book.state.open_count) == ("INV-B", "INV-B", 1)


def test_the_chain_stays_ordered_whatever_the_arrival_order():
    import random

    rng = random.Random(7)
    book = Book("0")
    for n in rng.sample(range(40), 40):
        book.add(f"INV-{n:02}", rng.randint(0, 5), "10.00")
    order = [(i.issued_at, i.invoice_id) for i in book.open]
    assert order == sorted(order) and book.state.open_count == 40
    for n in rng.sample(range(40), 25):  # pay off some in the middle, the ends too
        book.pay("10.00", f"INV-{n:02}")
    left = book.open
    assert [(i.issued_at, i.invoice_id) for i in left] == sorted((i.issued_at, i.invoice_id) for i in left)
    assert book.state.open_count == len(left) == 15
    assert (book.state.oldest, book.state.newest) == (left[0].invoice_id, left[-1].invoice_id)
    assert book.state.outstanding == D("150.00")


def test_same_invoice_twice_is_a_no_op():
    book = Book("0", ("INV-1", 1, "500.00"))
    state = book.state
    update = book.add("INV-1", 1, "500.00")
    assert (update.state, update.changed) == (state, False)
    # even after it was paid off and left the chain
    book.pay("500.00", "INV-1")
    paid = book.state
    assert book.add("INV-1", 1, "500.00").state is paid


def test_credit_refund_reduces_outstanding_and_excess_becomes_credit():
    book = Book("1000", ("INV-1", 1, "500.00"))
    book.pay("200.00", "INV-1")
    r1 = book.credit("R1", "INV-1", "100.00")
    assert r1.changed and r1.invoice_ids == ("INV-1",)
    assert book.open == (OpenInvoice("INV-1", 1, "KES", D("500.00"), D("200.00"), D("100.00")),)
    assert (r1.state.outstanding, r1.state.available) == (D("200.00"), D("800.00"))
    again = apply_credit_refund(book.store, r1.state, "R1", "INV-1", D("100.00"))
    assert (again.state, again.changed) == (r1.state, False)
    r2 = book.credit("R2", "INV-1", "250.00")
    assert book.open == ()
    assert (r2.state.credit_balance, r2.state.outstanding, r2.state.available) == (
        D("50.00"),
        D("-50.00"),
        D("1050.00"),
    )
    # a refund_id credited to the customer before (on another sale) credits nothing again
    assert apply_credit_refund(book.store, r2.state, "R1", "INV-9", D("5.00")).state is r2.state


def test_available_is_limit_less_outstanding_and_nothing_is_held():
    state = Book("1000", ("INV-1", 1, "400")).state
    assert (state.outstanding, state.available) == (D("400"), D("600"))
    assert check_order(state, D("600")).approved
    refused = check_order(state, D("600.01"))
    assert (refused.approved, refused.reason, refused.available) == (False, CREDIT_LIMIT_EXCEEDED, D("600"))
    assert "holds" not in state.to_dict()


def test_figures_keep_the_exponent_of_the_open_invoices_sum():
    """outstanding reads as the sum of the open invoices' remaining amounts always read: a paid-off
    invoice with a finer exponent (a payment at scale 4) no longer counts."""
    book = Book("0", ("INV-1", 1, "116.00"), ("INV-2", 2, "58.00"))
    book.pay("116.0000", "INV-1")
    assert str(book.state.outstanding) == "58.00"
    book.pay("8.0000", "INV-2")
    assert str(book.state.outstanding) == "50.0000" and str(book.state.due_in("KES")) == "50.0000"
    book.add("INV-3", 3, "10", "USD")
    assert str(book.state.outstanding) == "60.0000" and str(book.state.due_in("USD")) == "10"
    book.pay("50.00", "INV-2")
    assert str(book.state.outstanding) == "10" and book.state.due_in("KES") == 0


def test_set_terms():
    update = set_terms(EMPTY, D("5000"), True)
    assert update.changed and (update.state.credit_limit, update.state.on_hold) == (D("5000"), True)
    assert set_terms(update.state, D("5000"), True).changed is False


def test_state_is_small_and_round_trips_through_json():
    book = Book("1000", ("INV-1", 1, "500.00"), ("INV-2", 2, "10.00"))
    book.pay("100.00")
    state = book.credit("R1", "INV-9", "5.00").state
    plain = json.loads(json.dumps(state.to_dict()))
    assert plain["credit_limit"] == "1000"
    assert set(plain) == {"tenant_id", "customer_ref", "credit_limit", "on_hold", "credit_balance", "open_count",
                          "oldest", "newest", "due", "payment_terms_days", "price_list_id", "first_payment_at",
                          "last_payment_at", "lanes"}  # lanes: issue 17's express lanes (INV-2 is in lane 1)
    assert plain["lanes"] == ["INV-2"]
    assert CreditState.from_dict(plain) == state
    for value in book.store.tables["invoices"].values():
        assert json.loads(json.dumps(value)) == value
    entry = invoice_of(book.store, "t1", "INV-1")
    assert InvoiceEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    assert (entry.paid, entry.prev, entry.next) == (D("100.00"), None, "INV-2")


def test_a_credit_value_of_the_old_layout_is_refused_not_misread():
    import pytest

    with pytest.raises(ValueError, match="open_invoices"):
        CreditState.from_dict({"tenant_id": "t1", "customer_ref": "C1", "open_invoices": [], "applied": []})


def test_payment_event_validation_and_conversion():
    data = {"payment_id": "P1", "customer_ref": "C1", "amount": D("10.50"), "currency": "KES", "method": "BANK"}
    assert validate_payment(data) == []
    assert PaymentReceived.from_event(data) == PaymentReceived("P1", "C1", D("10.50"), "KES", "BANK")
    assert validate_payment({**data, "amount": D("-1"), "method": "CHEQUE", "payment_id": ""}) == [
        "payment_id is missing or empty",
        "method must be one of CASH, CARD, MOBILE, BANK, got 'CHEQUE'",
        "amount must be positive, got -1",
    ]
    assert validate_payment({**data, "currency": "JPY", "amount": D("10.5")}) == [
        "amount 10.5 has more decimals than JPY allows"
    ]


def test_customer_credit_validation():
    assert validate_customer_credit({"customer_ref": "C1", "credit_limit": D("0"), "on_hold": False}) == []
    assert validate_customer_credit({"customer_ref": "", "credit_limit": D("-5"), "on_hold": "no"}) == [
        "customer_ref is missing or empty",
        "credit_limit must not be negative, got -5",
        "on_hold must be true or false, got 'no'",
    ]
