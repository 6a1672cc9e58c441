import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import credit
from streams.core.fold import DictState
from streams.core.journal import ACCOUNT_NAMES, make_entry
from streams.core.ledger import (
    DEFAULT_ACCOUNTS,
    PAYMENT_MISMATCH,
    Accounts,
    Allocation,
    JournalEntry,
    JournalLine,
    LedgerError,
    Payment,
    SaleBooking,
    UnbalancedEntry,
    assert_balanced,
    book_payment,
    book_sale,
)
from streams.core.money import MINOR_UNITS, round_money
from streams.core.pricing import CatalogItem, PricedSale, price_lines
from streams.core.refunds import RefundBooking, RefundLine, RefundRequest, RefundState, book_refund
from streams.core.sales import Sale, SaleLine, SalePayment

D = Decimal
Z = D(0)
T0 = 1_767_000_000_000


def priced_usd():
    # net 53.97, tax 8.64, total 62.61 (see test_pricing)
    result = price_lines([SaleLine("X", 3, D("19.99"), D("10"), D("16"))], "USD", lambda sku: None)
    assert isinstance(result, PricedSale)
    return result


def sale(terms="PAID", payments=(), customer="C1"):
    return Sale("t1", "S1", "POS", "USD", terms, (SaleLine("X", 3, D("19.99"), D("10"), D("16")),), customer, None,
                payments)


def test_paid_sale_without_payments_is_one_cash_payment():
    booking = book_sale(sale(), priced_usd(), T0)
    assert isinstance(booking, SaleBooking)
    assert booking.invoice.invoice_id == "INV-S1"
    assert (booking.invoice.net_total, booking.invoice.tax_total, booking.invoice.total) == (
        D("53.97"),
        D("8.64"),
        D("62.61"),
    )
    assert booking.payments == (
        Payment(
            "t1",
            "PAY-S1-1",
            "C1",
            "S1",
            "CASH",
            D("62.61"),
            "USD",
            None,
            T0,
            (Allocation("INV-S1", D("62.61"), "PAID", D("62.61")),),
        ),
    )
    je = booking.journal
    assert (je.entry_id, je.document_id, je.document_type, je.currency, je.posted_at) == (
        "JE-INV-S1",
        "INV-S1",
        "invoice",
        "USD",
        T0,
    )
    assert je.lines == (
        JournalLine("1000", D("62.61"), Z, "cash"),
        JournalLine("4000", Z, D("53.97"), "revenue"),
        JournalLine("2100", Z, D("8.64"), "tax_payable"),
    )


def test_paid_sale_with_split_payments_merges_per_account():
    payments = (
        SalePayment("CARD", D("30.00"), "r1"),
        SalePayment("BANK", D("20.00")),
        SalePayment("MOBILE", D("12.61")),
    )
    booking = book_sale(sale(payments=payments), priced_usd(), T0)
    assert isinstance(booking, SaleBooking)
    assert [p.payment_id for p in booking.payments] == ["PAY-S1-1", "PAY-S1-2", "PAY-S1-3"]
    assert [p.allocations[0] for p in booking.payments] == [
        Allocation("INV-S1", D("30.00"), "PARTIALLY_PAID", D("30.00")),
        Allocation("INV-S1", D("20.00"), "PARTIALLY_PAID", D("50.00")),
        Allocation("INV-S1", D("12.61"), "PAID", D("62.61")),
    ]
    assert booking.journal.lines == (
        JournalLine("1010", D("42.61"), Z, "clearing"),
        JournalLine("1020", D("20.00"), Z, "bank"),
        JournalLine("4000", Z, D("53.97"), "revenue"),
        JournalLine("2100", Z, D("8.64"), "tax_payable"),
    )


def test_payments_not_summing_to_the_total_are_refused():
    result = book_sale(sale(payments=(SalePayment("CASH", D("62.60")),)), priced_usd(), T0)
    assert result == LedgerError(PAYMENT_MISMATCH, "payments sum to 62.60 USD but the invoice total is 62.61 USD")


def test_on_account_sale_debits_receivable():
    booking = book_sale(sale("ON_ACCOUNT"), priced_usd(), T0)
    assert isinstance(booking, SaleBooking)
    assert booking.payments == ()
    assert booking.journal.lines == (
        JournalLine("1100", D("62.61"), Z, "receivable"),
        JournalLine("4000", Z, D("53.97"), "revenue"),
        JournalLine("2100", Z, D("8.64"), "tax_payable"),
    )


def test_payment_received_debits_cash_credits_receivable():
    received = credit.PaymentReceived("P9", "C1", D("40.00"), "USD", "MOBILE", "INV-S1", "M-PESA 123")
    alloc = (Allocation("INV-S1", D("40.00"), "PARTIALLY_PAID", D("40.00")),)
    booking = book_payment("t1", received, alloc, T0 + 5)
    assert booking.payment.payment_id == "PAY-P9"
    assert booking.payment.allocations == alloc
    assert (booking.journal.entry_id, booking.journal.document_type) == ("JE-PAY-P9", "payment")
    assert booking.journal.lines == (JournalLine("1010", D("40.00"), Z, "clearing"),
                                     JournalLine("1100", Z, D("40.00"), "receivable"))


def test_tenant_chart_override():
    accounts = Accounts.with_overrides({"cash": "1001", "revenue": "4100"})
    booking = book_sale(sale(), priced_usd(), T0, accounts)
    assert [line.account for line in booking.journal.lines] == ["1001", "4100", "2100"]
    with pytest.raises(ValueError):
        Accounts.with_overrides({"petty_cash": "1005"})
    assert ACCOUNT_NAMES[DEFAULT_ACCOUNTS.returns] == "Sales returns"


def test_make_entry_merges_nets_and_drops_zero_lines():
    entry = make_entry(
        "t1",
        "DOC",
        "invoice",
        "USD",
        T0,
        [("1000", D("5"), Z), ("1000", D("3"), Z), ("4000", Z, D("8")), ("2100", Z, Z), ("1010", D("1"), D("1"))],
    )
    assert entry.lines == (JournalLine("1000", D("8"), Z), JournalLine("4000", Z, D("8")))
    with pytest.raises(UnbalancedEntry):
        make_entry("t1", "DOC", "invoice", "USD", T0, [("1000", D("8.00"), Z), ("4000", Z, D("7.99"))])


def test_assert_balanced_rejects_two_sided_lines():
    entry = JournalEntry("t1", "JE-X", "X", "invoice", "USD", T0, (JournalLine("1000", D("1"), D("1")),))
    with pytest.raises(UnbalancedEntry):
        assert_balanced(entry)


def test_booking_round_trips_through_json():
    booking = book_sale(sale(payments=(SalePayment("CARD", D("62.61")),)), priced_usd(), T0)
    plain = json.loads(json.dumps(booking.to_dict()))
    assert plain["journal"]["lines"][0] == {"account": "1010", "debit": "62.61", "credit": "0",
                                                "role": "clearing"}
    assert SaleBooking.from_dict(plain) == booking


# --- property: every journal entry balances ------------------------------------

CURRENCIES = ["KES", "INR", "USD", "EUR", "JPY", "UGX", "BHD"]
SKUS = ["A", "B", "C"]
CATALOG = {
    "A": CatalogItem("A", D("12.3456"), D("16")),
    "B": CatalogItem("B", D("0.0050"), None),
    "C": CatalogItem("C", D("999.99"), D("7.5")),
}

_lines = st.lists(
    st.builds(
        SaleLine,
        sku=st.sampled_from(SKUS),
        quantity=st.integers(1, 500),
        unit_price=st.one_of(st.none(), st.decimals(0, D("99999.9999"), places=4)),
        discount_percent=st.one_of(st.none(), st.decimals(0, 100, places=2)),
        tax_percent=st.one_of(st.none(), st.decimals(0, 40, places=3)),
    ),
    min_size=1,
    max_size=5,
)


def _split(data, total, currency, max_parts):
    """Cut `total` into 1..max_parts amounts in whole minor units (some may be zero)."""
    unit = D(1).scaleb(-MINOR_UNITS[currency])
    units = int(total / unit)
    cuts = sorted(data.draw(st.lists(st.integers(0, units), max_size=max_parts - 1)))
    bounds = [0, *cuts, units]
    return [(bounds[i + 1] - bounds[i]) * unit for i in range(len(bounds) - 1)]


def _check(entry):
    assert_balanced(entry)
    assert entry.total_debit == entry.total_credit
    assert all(isinstance(v, Decimal) for line in entry.lines for v in (line.debit, line.credit))


@settings(max_examples=200, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    lines=_lines,
    terms=st.sampled_from(["PAID", "ON_ACCOUNT"]),
    default_tax=st.decimals(0, 25, places=1),
    data=st.data(),
)
def test_every_journal_entry_balances(currency, lines, terms, default_tax, data):
    priced = price_lines(lines, currency, CATALOG.get, default_tax)
    assert isinstance(priced, PricedSale)
    assert priced.total == priced.net_total + priced.tax_total
    assert priced.total == round_money(priced.total, currency)

    payments = ()
    if terms == "PAID" and data.draw(st.booleans()):
        methods = st.sampled_from(["CASH", "CARD", "MOBILE", "BANK"])
        payments = tuple(SalePayment(data.draw(methods), a) for a in _split(data, priced.total, currency, 4))
    the_sale = Sale("t1", "S1", "WEB", currency, terms, tuple(lines), "C1", None, payments)
    booking = book_sale(the_sale, priced, T0)
    assert isinstance(booking, SaleBooking)
    _check(booking.journal)
    assert booking.journal.total_debit == priced.total

    if terms == "ON_ACCOUNT":
        book = DictState()
        state = credit.add_invoice(book, credit.CreditState("t1", "C1"), "INV-S1", T0, currency, priced.total).state
        for n, amount in enumerate(_split(data, priced.total, currency, 3)):
            if amount == 0:
                continue
            result = credit.apply_payment(book, state, amount, None, currency)
            assert result.status == credit.APPLIED
            state = result.state
            method = data.draw(st.sampled_from(["CASH", "CARD", "MOBILE", "BANK"]))
            received = credit.PaymentReceived(f"P{n}", "C1", amount, currency, method)
            pay = book_payment("t1", received, result.allocations, T0 + n)
            _check(pay.journal)
            assert pay.journal.total_debit == amount
        assert state.outstanding == 0

    # refund everything in up to three refunds per SKU, in random slices
    sold = {}
    for line in lines:
        sold[line.sku] = sold.get(line.sku, 0) + line.quantity
    refunds = {}
    for sku, qty in sold.items():
        cuts = sorted(data.draw(st.lists(st.integers(1, qty), max_size=2)))
        bounds = [0, *cuts, qty]
        for i in range(len(bounds) - 1):
            if bounds[i + 1] > bounds[i]:
                refunds.setdefault(i, []).append(RefundLine(sku, bounds[i + 1] - bounds[i]))
    rstate = RefundState()
    notes = []
    for i in sorted(refunds):
        method = data.draw(st.sampled_from(["CASH", "CARD", "MOBILE", "BANK", "CREDIT"]))
        request = RefundRequest(f"R{i}", "S1", tuple(refunds[i]), True, method)
        result = book_refund(booking.invoice, rstate, request, T0 + 100 + i)
        assert isinstance(result, RefundBooking), result
        _check(result.journal)
        assert result.journal.total_debit == result.credit_note.total
        assert all(c.net >= 0 and c.tax >= 0 for c in result.credit_note.lines)
        rstate = result.state
        notes.append(result.credit_note)
    # together the refunds reverse the sale to the cent, line by line
    assert sum((n.net_total for n in notes), Z) == priced.net_total
    assert sum((n.tax_total for n in notes), Z) == priced.tax_total
    for line in booking.invoice.lines:
        mine = [c for n in notes for c in n.lines if c.line_no == line.line_no]
        assert sum(c.quantity for c in mine) == line.quantity
        assert sum((c.net for c in mine), Z) == line.net
        assert sum((c.tax for c in mine), Z) == line.tax
