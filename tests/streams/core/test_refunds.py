import json
from decimal import Decimal

from streams.core.ledger import JournalLine, SaleBooking, book_sale
from streams.core.pricing import PricedSale, price_lines
from streams.core.refunds import (
    DUPLICATE_REFUND,
    NO_CUSTOMER,
    OVER_REFUND,
    UNKNOWN_SALE,
    LineRefunded,
    RefundBooking,
    RefundError,
    RefundLine,
    RefundRefusal,
    RefundRequest,
    RefundState,
    book_refund,
    validate_refund,
)
from streams.core.sales import Sale, SaleLine

D = Decimal
Z = D(0)
T0 = 1_767_000_000_000


def invoice_for(lines, currency="KES", customer="C1", terms="PAID"):
    priced = price_lines(lines, currency, lambda sku: None)
    assert isinstance(priced, PricedSale)
    booking = book_sale(Sale("t1", "S1", "POS", currency, terms, tuple(lines), customer), priced, T0)
    assert isinstance(booking, SaleBooking)
    return booking.invoice


LINES = [
    SaleLine("A", 3, D("10.00"), D("0"), D("16")),  # net 30.00, tax 4.80
    SaleLine("B", 7, D("3.333"), D("5"), D("16")),  # 22.16445 -> 22.16, tax 3.5456 -> 3.55
]


def refund(refund_id, *lines, method="CASH", restock=True):
    return RefundRequest(refund_id, "S1", tuple(RefundLine(s, q) for s, q in lines), restock, method)


def test_invoice_figures_used_below():
    inv = invoice_for(LINES)
    assert [(li.net, li.tax) for li in inv.lines] == [(D("30.00"), D("4.80")), (D("22.16"), D("3.55"))]
    assert (inv.net_total, inv.tax_total, inv.total) == (D("52.16"), D("8.35"), D("60.51"))


def test_full_refund_in_three_partials_reverses_the_sale_to_the_cent():
    inv = invoice_for(LINES)
    state = RefundState()
    r1 = book_refund(inv, state, refund("R1", ("A", 1), ("B", 2)), T0 + 1)
    assert isinstance(r1, RefundBooking)
    # priced like the sale line: 2 x 3.333 x 0.95 = 6.3327 -> 6.33, tax 1.0128 -> 1.01
    assert [(c.line_no, c.sku, c.quantity, c.net, c.tax, c.total) for c in r1.credit_note.lines] == [
        (1, "A", 1, D("10.00"), D("1.60"), D("11.60")),
        (2, "B", 2, D("6.33"), D("1.01"), D("7.34")),
    ]
    r2 = book_refund(inv, r1.state, refund("R2", ("B", 2)), T0 + 2)
    assert [(c.line_no, c.quantity, c.net, c.tax) for c in r2.credit_note.lines] == [(2, 2, D("6.33"), D("1.01"))]
    r3 = book_refund(inv, r2.state, refund("R3", ("B", 3), ("A", 2)), T0 + 3)
    # the last units take exactly what is left: B tax 3.55 - 2.02 = 1.53 (priced alone it would be 1.52)
    assert [(c.line_no, c.quantity, c.net, c.tax) for c in r3.credit_note.lines] == [
        (1, 2, D("20.00"), D("3.20")),
        (2, 3, D("9.50"), D("1.53")),
    ]
    notes = [r1.credit_note, r2.credit_note, r3.credit_note]
    assert sum((n.net_total for n in notes), Z) == inv.net_total
    assert sum((n.tax_total for n in notes), Z) == inv.tax_total
    assert sum((n.total for n in notes), Z) == inv.total == D("60.51")
    for line in inv.lines:
        parts = [c for n in notes for c in n.lines if c.line_no == line.line_no]
        assert (sum((c.net for c in parts), Z), sum((c.tax for c in parts), Z)) == (line.net, line.tax)
    assert r3.state == RefundState(
        (LineRefunded(1, 3, D("30.00"), D("4.80")), LineRefunded(2, 7, D("22.16"), D("3.55"))),
        ("R1", "R2", "R3"),
    )
    # nothing left to refund
    over = book_refund(inv, r3.state, refund("R4", ("A", 1)), T0 + 4)
    assert isinstance(over, RefundError) and over.code == OVER_REFUND


def test_refund_documents_and_reversing_entry():
    inv = invoice_for(LINES)
    r1 = book_refund(inv, RefundState(), refund("R1", ("A", 1), ("B", 2)), T0 + 1)
    note = r1.credit_note
    assert (note.credit_note_id, note.invoice_id, note.sale_id, note.refund_method, note.issued_at) == (
        "CN-R1",
        "INV-S1",
        "S1",
        "CASH",
        T0 + 1,
    )
    assert (note.net_total, note.tax_total, note.total) == (D("16.33"), D("2.61"), D("18.94"))
    assert (r1.journal.entry_id, r1.journal.document_type) == ("JE-CN-R1", "credit_note")
    assert r1.journal.lines == (
        JournalLine("4010", D("16.33"), Z, "returns"),
        JournalLine("2100", D("2.61"), Z, "tax_payable"),
        JournalLine("1000", Z, D("18.94"), "cash"),
    )
    assert r1.restock == (("A", 1), ("B", 2))
    credit = book_refund(inv, RefundState(), refund("R1", ("A", 1), method="CREDIT", restock=False), T0)
    assert credit.journal.lines[-1] == JournalLine("1100", Z, D("11.60"), "receivable")
    assert credit.restock == ()
    assert RefundBooking.from_dict(json.loads(json.dumps(r1.to_dict()))) == r1


def test_over_refund_is_refused_naming_sku_and_quantities():
    inv = invoice_for(LINES)
    r1 = book_refund(inv, RefundState(), refund("R1", ("B", 2)), T0)
    result = book_refund(inv, r1.state, refund("R2", ("B", 4), ("B", 2), ("Q", 1)), T0)
    assert result == RefundError(
        OVER_REFUND,
        "sku B: refund of 6 exceeds the 5 still refundable (7 sold, 2 already refunded); "
        "sku Q: refund of 1 but sale S1 sold none",
        (
            RefundRefusal("B", 6, 5, "sku B: refund of 6 exceeds the 5 still refundable (7 sold, 2 already refunded)"),
            RefundRefusal("Q", 1, 0, "sku Q: refund of 1 but sale S1 sold none"),
        ),
    )


def test_repeated_sku_is_taken_from_its_lines_in_order():
    inv = invoice_for(
        [SaleLine("A", 2, D("10.00"), None, D("10")), SaleLine("B", 1, D("1.00")), SaleLine("A", 3, D("8.00"))]
    )
    r = book_refund(inv, RefundState(), refund("R1", ("A", 4)), T0)
    assert [(c.line_no, c.quantity, c.unit_price, c.net, c.tax) for c in r.credit_note.lines] == [
        (1, 2, D("10.00"), D("20.00"), D("2.00")),
        (3, 2, D("8.00"), D("16.00"), D("0.00")),
    ]
    assert r.restock == (("A", 4),)


def test_partial_refunds_never_overshoot_a_line():
    # 4 x 0.005 = 0.02; one unit alone rounds up to 0.01, so four singles would reach 0.04
    inv = invoice_for([SaleLine("X", 4, D("0.005"))], currency="USD")
    state, nets = RefundState(), []
    for n in range(4):
        r = book_refund(inv, state, refund(f"R{n}", ("X", 1)), T0 + n)
        state = r.state
        nets.append(r.credit_note.net_total)
    assert nets == [D("0.01"), D("0.01"), D("0.00"), D("0.00")]
    assert sum(nets, Z) == inv.net_total == D("0.02")


def test_refusals_for_unknown_sale_duplicate_refund_and_credit_without_customer():
    inv = invoice_for(LINES, customer=None)
    assert book_refund(None, RefundState(), refund("R1", ("A", 1)), T0) == RefundError(
        UNKNOWN_SALE, "sale S1 is unknown or was refused"
    )
    r1 = book_refund(inv, RefundState(), refund("R1", ("A", 1)), T0)
    again = book_refund(inv, r1.state, refund("R1", ("A", 1)), T0)
    assert isinstance(again, RefundError) and again.code == DUPLICATE_REFUND
    credit = book_refund(inv, RefundState(), refund("R2", ("A", 1), method="CREDIT"), T0)
    assert credit == RefundError(NO_CUSTOMER, "refund_method CREDIT needs a customer, and sale S1 has none")


def test_validate_refund():
    good = {"refund_id": "R1", "sale_id": "S1", "lines": [{"sku": "A", "quantity": 1}], "restock": True,
            "refund_method": "CREDIT"}
    assert validate_refund(good) == []
    assert RefundRequest.from_event(good) == RefundRequest("R1", "S1", (RefundLine("A", 1),), True, "CREDIT")
    assert validate_refund({"refund_id": "R1", "sale_id": "", "lines": [{"sku": "A", "quantity": 0}],
                            "restock": None, "refund_method": "GIFT"}) == [
        "sale_id is missing or empty",
        "line 1: quantity must be a positive integer, got 0",
        "refund_method must be one of CASH, CARD, MOBILE, BANK, CREDIT, got 'GIFT'",
        "restock must be true or false, got None",
    ]
    assert validate_refund({**good, "lines": []}) == ["lines is empty"]
