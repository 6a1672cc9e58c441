import json
from decimal import Decimal

from streams.core.credit import (
    APPLIED,
    CREDIT_HOLD,
    CREDIT_LIMIT_EXCEEDED,
    CURRENCY_MISMATCH,
    DUPLICATE,
    OVERPAYMENT,
    REFUSED,
    UNKNOWN_INVOICE,
    CreditCheck,
    CreditState,
    OpenInvoice,
    PaymentReceived,
    add_invoice,
    apply_credit_refund,
    apply_payment,
    check_order,
    set_terms,
    validate_customer_credit,
    validate_payment,
)
from streams.core.ledger import Allocation

D = Decimal
EMPTY = CreditState("t1", "C1")


def with_invoices(limit="0", *invoices):
    state = set_terms(EMPTY, D(limit), False).state
    for invoice_id, issued_at, total in invoices:
        state = add_invoice(state, invoice_id, issued_at, "KES", D(total)).state
    return state


def test_004_credit_limit_example():
    state = with_invoices("10000.00", ("INV-1", 1, "8000.00"))
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
    state = with_invoices("0", ("INV-1", 1, "1000000"))
    check = check_order(state, D("5000000"))
    assert (check.approved, check.available, check.outstanding) == (True, None, D("1000000"))
    held = set_terms(state, D("0"), True).state
    check = check_order(held, D("1"))
    assert (check.approved, check.reason, check.message) == (False, CREDIT_HOLD, "Customer C1 is on credit hold")


def test_payment_moves_invoice_unpaid_partially_paid_paid():
    state = with_invoices("0", ("INV-1", 1, "1500.00"))
    assert state.open_invoices[0].status == "UNPAID"
    first = apply_payment(state, "P1", D("1000.00"), "INV-1", "KES")
    assert first.status == APPLIED
    assert first.allocations == (Allocation("INV-1", D("1000.00"), "PARTIALLY_PAID", D("1000.00")),)
    assert first.state.open_invoices == (OpenInvoice("INV-1", 1, "KES", D("1500.00"), D("1000.00")),)
    assert first.state.open_invoices[0].status == "PARTIALLY_PAID"
    assert first.state.outstanding == D("500.00")
    second = apply_payment(first.state, "P2", D("500.00"), "INV-1", "KES")
    assert second.allocations == (Allocation("INV-1", D("500.00"), "PAID", D("1500.00")),)
    assert second.state.open_invoices == ()
    assert second.state.outstanding == D("0.00")


def test_overpayment_is_refused_with_nothing_applied():
    state = with_invoices("0", ("INV-1", 1, "500.00"), ("INV-2", 2, "100.00"))
    named = apply_payment(state, "P1", D("500.01"), "INV-1", "KES")
    assert (named.state, named.status, named.code, named.allocations) == (state, REFUSED, OVERPAYMENT, ())
    assert named.reason == "payment of 500.01 exceeds the 500.00 due on INV-1"
    unnamed = apply_payment(state, "P1", D("600.01"), None, "KES")
    assert (unnamed.state, unnamed.status, unnamed.code) == (state, REFUSED, OVERPAYMENT)
    assert unnamed.reason == "payment of 600.01 KES exceeds the 600.00 due on customer C1's open invoices"
    # refused payments are not remembered: the same payment may succeed later
    assert apply_payment(state, "P1", D("600.00"), None, "KES").status == APPLIED


def test_unknown_invoice_and_other_currency_are_refused():
    state = with_invoices("0", ("INV-1", 1, "500.00"))
    unknown = apply_payment(state, "P1", D("5"), "INV-404", "KES")
    assert (unknown.state, unknown.code, unknown.reason) == (
        state,
        UNKNOWN_INVOICE,
        "INV-404 is not an open invoice of customer C1",
    )
    assert apply_payment(state, "P1", D("5"), "INV-1", "USD").code == CURRENCY_MISMATCH


def test_oldest_unpaid_invoices_are_paid_first():
    state = with_invoices("0", ("INV-B", 200, "100.00"), ("INV-C", 100, "30.00"), ("INV-A", 100, "50.00"))
    result = apply_payment(state, "P1", D("120.00"), None, "KES")
    assert result.allocations == (
        Allocation("INV-A", D("50.00"), "PAID", D("50.00")),
        Allocation("INV-C", D("30.00"), "PAID", D("30.00")),
        Allocation("INV-B", D("40.00"), "PARTIALLY_PAID", D("40.00")),
    )
    assert result.state.open_invoices == (OpenInvoice("INV-B", 200, "KES", D("100.00"), D("40.00")),)
    assert result.state.outstanding == D("60.00")


def test_same_payment_twice_is_a_no_op():
    state = with_invoices("0", ("INV-1", 1, "500.00"))
    once = apply_payment(state, "P1", D("200.00"), None, "KES")
    twice = apply_payment(once.state, "P1", D("200.00"), None, "KES")
    assert (twice.status, twice.state, twice.allocations) == (DUPLICATE, once.state, ())
    assert twice.state.outstanding == D("300.00")


def test_same_invoice_twice_is_a_no_op():
    state = with_invoices("0", ("INV-1", 1, "500.00"))
    update = add_invoice(state, "INV-1", 1, "KES", D("500.00"))
    assert (update.state, update.changed) == (state, False)
    # even after it was paid off and left the open list
    paid = apply_payment(state, "P1", D("500.00"), "INV-1", "KES").state
    assert add_invoice(paid, "INV-1", 1, "KES", D("500.00")).state is paid


def test_credit_refund_reduces_outstanding_and_excess_becomes_credit():
    state = with_invoices("1000", ("INV-1", 1, "500.00"))
    state = apply_payment(state, "P1", D("200.00"), "INV-1", "KES").state
    r1 = apply_credit_refund(state, "R1", "INV-1", D("100.00"))
    assert r1.changed
    assert r1.state.open_invoices == (OpenInvoice("INV-1", 1, "KES", D("500.00"), D("200.00"), D("100.00")),)
    assert (r1.state.outstanding, r1.state.available) == (D("200.00"), D("800.00"))
    again = apply_credit_refund(r1.state, "R1", "INV-1", D("100.00"))
    assert (again.state, again.changed) == (r1.state, False)
    r2 = apply_credit_refund(r1.state, "R2", "INV-1", D("250.00"))
    assert r2.state.open_invoices == ()
    assert (r2.state.credit_balance, r2.state.outstanding, r2.state.available) == (
        D("50.00"),
        D("-50.00"),
        D("1050.00"),
    )


def test_available_is_limit_less_outstanding_and_nothing_is_held():
    state = with_invoices("1000", ("INV-1", 1, "400"))
    assert (state.outstanding, state.available) == (D("400"), D("600"))
    assert check_order(state, D("600")).approved
    refused = check_order(state, D("600.01"))
    assert (refused.approved, refused.reason, refused.available) == (False, CREDIT_LIMIT_EXCEEDED, D("600"))
    assert "holds" not in state.to_dict()


def test_set_terms():
    update = set_terms(EMPTY, D("5000"), True)
    assert update.changed and (update.state.credit_limit, update.state.on_hold) == (D("5000"), True)
    assert set_terms(update.state, D("5000"), True).changed is False


def test_state_round_trips_through_json():
    state = with_invoices("1000", ("INV-1", 1, "500.00"), ("INV-2", 2, "10.00"))
    state = apply_payment(state, "P1", D("100.00"), None, "KES").state
    state = apply_credit_refund(state, "R1", "INV-9", D("5.00")).state
    plain = json.loads(json.dumps(state.to_dict()))
    assert plain["credit_limit"] == "1000"
    assert CreditState.from_dict(plain) == state


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
