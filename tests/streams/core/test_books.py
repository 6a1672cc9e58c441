"""Issue 16: books that reconcile to the cent at their edges (SPEC 2 as amended 2026-12-04, SPEC 9 receivables).

Exact figures for every scenario of the issue's "What we saw", then a property over random tenant logs:
after every prefix, the journal's accounts equal the subledgers (bookskit.differences).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.credit import invoice_of
from streams.core.fold import DictState, Emit, credit_of, document_of, fold, open_invoices_of, sale_of

from .bookskit import balances, differences
from .foldkit import catalog, check_outputs, emits, payment, refund, sale, terms
from .test_fold import CFG

D = Decimal
DAY = 86_400_000


def at(day: int, hour: int = 10) -> int:
    return int(datetime(2026, 1, day, hour, tzinfo=UTC).timestamp() * 1000)


def midnight(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


class Books:
    """A tenant folded event by event, keeping every output."""

    def __init__(self) -> None:
        self.state = DictState()
        self.outputs: list = []

    def __call__(self, *events):
        last = []
        for event in events:
            last = fold(self.state, event, CFG)
            check_outputs(last)
            self.outputs += last
        return last

    def outcome(self, *events) -> dict:
        out = self(*events)
        assert isinstance(out[-1], Emit) and out[-1].topic == "sales.outcomes"
        return out[-1].value

    def gl(self) -> dict[str, Decimal]:
        return {a: b for (_, _, a), b in sorted(balances(self.outputs).items()) if b != 0}


def reasons(outcome: dict) -> list[tuple[str, str]]:
    return [(r["code"], r["message"]) for r in outcome["reasons"]]


def the_issue() -> Books:
    """The issue's tenant: C1 (limit 10,000, 30 days), S1 PAID 100.00 CASH, S2 ON_ACCOUNT 100.00."""
    books = Books()
    books(catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 100},
                        {"sku": "B", "price": "50.00", "stock_quantity": 100}], event_id="cat", ts=at(1)),
          terms("C1", "10000", event_id="c1", ts=at(1), days=30))
    s1 = books.outcome(sale("S1", [{"sku": "A", "quantity": 1}], event_id="s1", ts=at(10), customer="C1"))
    s2 = books.outcome(sale("S2", [{"sku": "A", "quantity": 1}], event_id="s2", ts=at(10, 11), order=True,
                            terms="ON_ACCOUNT", customer="C1"))
    assert (s1["outcome"], s1["document_ids"]) == ("ACCEPTED", ["INV-S1", "PAY-S1-1", "JE-INV-S1"])
    assert (s2["outcome"], s2["document_ids"]) == ("ACCEPTED", ["INV-S2", "JE-INV-S2"])
    return books


def test_a_credit_refund_of_a_paid_sale_is_store_credit_the_customer_holds():
    books = the_issue()
    r1 = books.outcome(refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", ts=at(11), method="CREDIT",
                              restock=False))
    assert (r1["outcome"], r1["document_ids"], r1["total"]) == ("ACCEPTED", ["CN-R1", "JE-CN-R1"], D("100.00"))
    [entry] = [e for e in emits(books.outputs, "ledger.journal") if e["entry_id"] == "JE-CN-R1"]
    assert [(x["account"], x["debit"], x["credit"]) for x in entry["lines"]] == [
        ("4010", D("100.00"), D(0)), ("1100", D(0), D("100.00"))]
    c1 = credit_of(books.state, "t1", "C1")
    assert (c1.credit_balance, c1.outstanding, c1.available) == (D("100.00"), D("0.00"), D("10000.00"))
    assert [(i.invoice_id, i.remaining, i.status) for i in open_invoices_of(books.state, "t1", "C1")] == [
        ("INV-S2", D("100.00"), "UNPAID")]
    assert books.gl() == {"1000": D("100.00"), "4000": D("-200.00"), "4010": D("100.00")}  # 1100: 100 - 100
    assert differences(books.state, books.outputs) == []

    # later payments and ON_ACCOUNT invoices see it: a payment of 40.00 leaves the customer 40.00 in credit
    p2 = books.outcome(payment("P2", "C1", "40.00", event_id="p2", ts=at(12), invoice="INV-S2"))
    assert (p2["outcome"], p2["document_ids"]) == ("ACCEPTED", ["PAY-P2", "JE-PAY-P2"])
    c1 = credit_of(books.state, "t1", "C1")
    assert (c1.outstanding, c1.available) == (D("-40.00"), D("10040.00"))
    order = books.outcome(sale("S6", [{"sku": "B", "quantity": 1}], event_id="s6", ts=at(13), order=True,
                               terms="ON_ACCOUNT", customer="C1"))
    assert order["credit"] == {"credit_limit": D("10000.0000"), "outstanding": D("-40.0000"),
                               "available": D("10040.0000"), "order_amount": D("50.0000")}
    assert books.gl() == {"1000": D("100.00"), "1020": D("40.00"), "1100": D("10.00"), "4000": D("-250.00"),
                          "4010": D("100.00")}
    assert credit_of(books.state, "t1", "C1").outstanding == D("10.00")
    assert differences(books.state, books.outputs) == []


def test_a_credit_refund_of_a_sale_without_a_customer_is_refused():
    books = the_issue()
    books(sale("S5", [{"sku": "A", "quantity": 1}], event_id="s5", ts=at(10)))
    before = books.gl()
    r5 = books.outcome(refund("R5", "S5", [{"sku": "A", "quantity": 1}], event_id="r5", ts=at(11), method="CREDIT"))
    assert (r5["outcome"], reasons(r5)) == ("REFUSED", [
        ("NO_CUSTOMER", "refund_method CREDIT needs a customer, and sale S5 has none")])
    assert books.gl() == before and document_of(books.state, "t1", "CN-R5") is None
    # the refund by CASH goes through (under its own refund_id: R5 was decided)
    again = books.outcome(refund("R5b", "S5", [{"sku": "A", "quantity": 1}], event_id="r5-cash", ts=at(11),
                                 method="CASH", restock=False))
    assert again["outcome"] == "ACCEPTED"
    assert differences(books.state, books.outputs) == []


def test_a_refund_id_used_on_another_sale_is_refused_and_changes_nothing():
    books = the_issue()
    books(refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", ts=at(11), method="CREDIT",
                 restock=False))
    # the event id is remembered (seen, its expiry queue) with its REFUSED record (sales): nothing else moves
    state = {t: dict(rows) for t, rows in books.state.tables.items() if t not in ("seen", "expiry", "sales")}
    out = books(refund("R1", "S2", [{"sku": "A", "quantity": 1}], event_id="r1-s2", ts=at(11, 12),
                       method="CREDIT"))
    assert [o.topic for o in out] == ["sales.outcomes"]  # no credit note, no journal entry, no stock
    assert (out[0].value["outcome"], reasons(out[0].value)) == ("REFUSED", [
        ("DUPLICATE_DOCUMENT_ID", "CN-R1 is already the document of refund R1 of sale S1 (event r1)")])
    assert {t: dict(rows) for t, rows in books.state.tables.items() if t not in ("seen", "expiry", "sales")} == state
    s2 = sale_of(books.state, "t1", "S2")
    assert s2.refunds.refunded == () and s2.refund_results[-1].outcome.outcome == "REFUSED"
    assert credit_of(books.state, "t1", "C1").outstanding == D("0.00")
    assert len(emits(books.outputs, "ledger.credit_notes")) == 1
    assert differences(books.state, books.outputs) == []


def test_a_payment_id_that_is_a_paid_sales_payment_is_refused():
    books = the_issue()
    out = books(payment("S1-1", "C1", "40.00", event_id="p-s1-1", ts=at(12)))
    assert [o.topic for o in out] == ["sales.outcomes"]
    assert (out[0].value["outcome"], reasons(out[0].value)) == ("REFUSED", [
        ("DUPLICATE_DOCUMENT_ID", "PAY-S1-1 is already the document of sale S1 (event s1)")])
    assert credit_of(books.state, "t1", "C1").outstanding == D("100.00")
    assert [p["payment_id"] for p in emits(books.outputs, "ledger.payments")] == ["PAY-S1-1"]
    # and the other way round: a PAID sale whose payment ids are taken by a payment.received
    books(payment("S7-1", "C1", "10.00", event_id="p-s7-1", ts=at(12)))
    s7 = books.outcome(sale("S7", [{"sku": "B", "quantity": 1}], event_id="s7", ts=at(13), customer="C1"))
    assert (s7["outcome"], reasons(s7)) == ("REFUSED", [
        ("DUPLICATE_DOCUMENT_ID", "PAY-S7-1 is already the document of payment S7-1 (event p-s7-1)")])
    assert books.gl() == {"1000": D("100.00"), "1020": D("10.00"), "1100": D("90.00"), "4000": D("-200.00")}
    # a sale_id under another event id: refused, the first sale stands
    again = books.outcome(sale("S2", [{"sku": "B", "quantity": 5}], event_id="s2-again", ts=at(13)))
    assert (again["outcome"], reasons(again)) == ("REFUSED", [
        ("DUPLICATE_DOCUMENT_ID", "sale S2 was already received as event s2")])
    assert sale_of(books.state, "t1", "S2").event_id == "s2"
    assert differences(books.state, books.outputs) == []


def test_an_invoice_covered_by_credit_notes_alone_is_credited():
    books = the_issue()
    books(sale("S3", [{"sku": "B", "quantity": 1}], event_id="s3", ts=at(12), order=True, terms="ON_ACCOUNT",
               customer="C1"))
    assert invoice_of(books.state, "t1", "INV-S3").status == "UNPAID"
    r3 = books.outcome(refund("R3", "S3", [{"sku": "B", "quantity": 1}], event_id="r3", ts=at(13), method="CREDIT"))
    assert r3["outcome"] == "ACCEPTED"
    inv = invoice_of(books.state, "t1", "INV-S3")
    assert (inv.total, inv.paid, inv.credited, inv.status, inv.is_open) == (
        D("50.00"), D(0), D("50.00"), "CREDITED", False)
    assert [i.invoice_id for i in open_invoices_of(books.state, "t1", "C1")] == ["INV-S2"]
    assert credit_of(books.state, "t1", "C1").outstanding == D("100.00")
    # paid in part, then credited: PAID (a payment settled part of it)
    books(sale("S8", [{"sku": "B", "quantity": 2}], event_id="s8", ts=at(14), order=True, terms="ON_ACCOUNT",
               customer="C1"),
          payment("P8", "C1", "30.00", event_id="p8", ts=at(14, 12), invoice="INV-S8"))
    assert invoice_of(books.state, "t1", "INV-S8").status == "PARTIALLY_PAID"
    books(refund("R8", "S8", [{"sku": "B", "quantity": 2}], event_id="r8", ts=at(15), method="CREDIT"))
    inv = invoice_of(books.state, "t1", "INV-S8")
    assert (inv.paid, inv.credited, inv.status) == (D("30.00"), D("70.00"), "PAID")
    c1 = credit_of(books.state, "t1", "C1")
    assert (c1.credit_balance, c1.outstanding) == (D("30.00"), D("70.00"))  # 100 owed on S2, 30 in credit
    assert differences(books.state, books.outputs) == []


def test_a_zero_total_document_is_booked_without_a_journal_entry():
    books = the_issue()
    out = books(sale("S4", [{"sku": "A", "quantity": 1, "discount_percent": "100"}], event_id="s4", ts=at(12),
                     order=True, customer="C1"))
    assert [o.topic for o in out] == ["ledger.invoices", "ledger.external_refs", "stock.levels", "sales.outcomes"]
    assert out[0].value["total"] == D("0.00") and out[-1].value["document_ids"] == ["INV-S4"]
    out = books(sale("S9", [{"sku": "A", "quantity": 1, "unit_price": "0"}], event_id="s9", ts=at(12),
                     order=True, terms="ON_ACCOUNT", customer="C1"))
    assert [o.topic for o in out] == ["ledger.invoices", "ledger.external_refs", "stock.levels", "sales.outcomes"]
    r9 = books.outcome(refund("R9", "S9", [{"sku": "A", "quantity": 1}], event_id="r9", ts=at(13),
                              method="CREDIT"))
    assert (r9["outcome"], r9["document_ids"]) == ("ACCEPTED", ["CN-R9"])
    assert not [e for e in emits(books.outputs, "ledger.journal") if e["document_id"] in ("INV-S4", "INV-S9",
                                                                                           "CN-R9")]
    assert differences(books.state, books.outputs) == []


def test_the_issues_tenant_end_to_end():
    """Every event of the issue in order: the books the issue expected, to the cent."""
    books = the_issue()
    books(refund("R1", "S1", [{"sku": "A", "quantity": 1}], event_id="r1", ts=at(11), method="CREDIT",
                 restock=False),
          refund("R1", "S2", [{"sku": "A", "quantity": 1}], event_id="r1-s2", ts=at(11, 12), method="CREDIT"),
          payment("S1-1", "C1", "10.00", event_id="p-s1-1", ts=at(12)),
          sale("S3", [{"sku": "B", "quantity": 1}], event_id="s3", ts=at(12), order=True, terms="ON_ACCOUNT",
               customer="C1"),
          refund("R3", "S3", [{"sku": "B", "quantity": 1}], event_id="r3", ts=at(13), method="CREDIT"),
          sale("S4", [{"sku": "A", "quantity": 1, "discount_percent": "100"}], event_id="s4", ts=at(13),
               order=True, customer="C1"))
    assert books.gl() == {"1000": D("100.00"), "4000": D("-250.00"), "4010": D("150.00")}  # 1100 ends at 0.00
    c1 = credit_of(books.state, "t1", "C1")
    assert (c1.outstanding, c1.credit_balance, c1.available) == (D("0.00"), D("100.00"), D("10000.00"))
    assert [(e.topic, e.key) for e in books.outputs if e.topic in ("ledger.credit_notes", "ledger.payments")] == [
        ("ledger.payments", "t1:PAY-S1-1"), ("ledger.credit_notes", "t1:CN-R1"), ("ledger.credit_notes", "t1:CN-R3")]
    assert invoice_of(books.state, "t1", "INV-S3").status == "CREDITED"
    assert differences(books.state, books.outputs) == []


# -- receivables (SPEC 9) ------------------------------------------------------------------------------
def test_on_account_invoices_are_due_after_the_customers_terms():
    books = the_issue()
    [inv] = [i for i in emits(books.outputs, "ledger.invoices") if i["invoice_id"] == "INV-S2"]
    assert inv["due_date"] == midnight(2026, 2, 9)  # issued 2026-01-10 11:00 UTC + 30 days
    assert [i["due_date"] for i in emits(books.outputs, "ledger.invoices") if i["invoice_id"] == "INV-S1"] == [None]
    assert invoice_of(books.state, "t1", "INV-S2").due_at == midnight(2026, 2, 9)
    # new terms apply to invoices issued after them
    books(terms("C1", "10000", event_id="c1-net0", ts=at(20), days=0, price_list="PL-1"))
    c1 = credit_of(books.state, "t1", "C1")
    assert (c1.payment_terms_days, c1.price_list_id) == (0, "PL-1")
    books(sale("S10", [{"sku": "B", "quantity": 1}], event_id="s10", ts=at(21, 23), order=True, terms="ON_ACCOUNT",
               customer="C1"))
    assert invoice_of(books.state, "t1", "INV-S10").due_at == midnight(2026, 1, 21)
    assert invoice_of(books.state, "t1", "INV-S2").due_at == midnight(2026, 2, 9)


def test_the_customer_keeps_its_first_and_last_payment_times():
    books = the_issue()
    assert credit_of(books.state, "t1", "C1").first_payment_at is None
    books(payment("P1", "C1", "10.00", event_id="p1", ts=at(15)),
          payment("P0", "C1", "10.00", event_id="p0", ts=at(12)),  # arrives late: the first payment
          payment("P9", "C1", "1000.00", event_id="p9", ts=at(20)))  # refused (overpayment): not a payment
    c1 = credit_of(books.state, "t1", "C1")
    assert (c1.first_payment_at, c1.last_payment_at) == (at(12), at(15))


# -- the property ----------------------------------------------------------------------------------------
METHODS = ("CASH", "CARD", "MOBILE", "BANK")


@st.composite
def tenant_logs(draw, max_size: int = 30):
    """Random tenant logs around the edges the issue found: CREDIT refunds of PAID and on-account sales, with
    and without customers, refund ids reused on other sales, payment ids that are a PAID sale's payment ids,
    zero-total lines, partial and named payments, every method."""
    events = [catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 50},
                            {"sku": "B", "price": "33.33", "stock_quantity": 50}], event_id="cat", tax_rate="16",
                      ts=0),
              terms("C1", "0", event_id="c1", ts=0, days=draw(st.sampled_from([0, 30]))),
              terms("C2", "500", event_id="c2", ts=0)]
    sales: list[tuple[str, str | None, int]] = []  # sale_id, customer, payments
    refund_ids: list[str] = []
    for i in range(draw(st.integers(1, max_size))):
        ts = 1_000 + i * 100
        eid = f"e{i}"
        kind = draw(st.sampled_from(["sale", "sale", "refund", "refund", "pay", "terms", "again"]))
        customer = draw(st.sampled_from(["C1", "C2", None]))
        if kind == "again" and len(events) > 3:
            events.append(events[draw(st.integers(3, len(events) - 1))])  # a redelivery
        elif kind == "sale":
            sale_id = f"S{i}" if not sales or draw(st.integers(0, 5)) else draw(st.sampled_from(sales))[0]
            lines = [{"sku": draw(st.sampled_from(["A", "B"])), "quantity": draw(st.integers(1, 3)),
                      "unit_price": draw(st.sampled_from([None, "0", "10.00", "0.99"])),
                      "discount_percent": draw(st.sampled_from([None, "12.5", "100"]))}
                     for _ in range(draw(st.integers(1, 2)))]
            on_account = customer is not None and draw(st.booleans())
            pays = None
            if not on_account and draw(st.booleans()):  # paid by methods: priced so that the payments add up
                q = draw(st.integers(1, 3))
                lines = [{"sku": draw(st.sampled_from(["A", "B"])), "quantity": q, "unit_price": "10.00",
                          "tax_percent": "0"}]
                first = draw(st.sampled_from(METHODS))
                pays = [{"method": first, "amount": f"{10 * q}.00"}] if draw(st.booleans()) else [
                    {"method": first, "amount": f"{10 * q - 1}.00"},
                    {"method": draw(st.sampled_from(METHODS)), "amount": "1.00"}]
            events.append(sale(sale_id, lines, event_id=eid, ts=ts, order=draw(st.booleans()),
                               terms="ON_ACCOUNT" if on_account else "PAID", customer=customer, payments=pays))
            sales.append((sale_id, customer, len(pays or [1])))
        elif kind == "refund":
            target = draw(st.sampled_from(sales))[0] if sales else "S-none"
            rid = draw(st.sampled_from(refund_ids)) if refund_ids and draw(st.booleans()) else f"R{i}"
            refund_ids.append(rid)
            events.append(refund(rid, target, [{"sku": draw(st.sampled_from(["A", "B"])),
                                                "quantity": draw(st.integers(1, 2))}], event_id=eid, ts=ts,
                                 restock=draw(st.booleans()), method=draw(st.sampled_from(METHODS + ("CREDIT",) * 3))))
        elif kind == "pay":
            pid = f"P{i}"
            invoice = None
            if sales and draw(st.booleans()):
                sale_id, owner, n = draw(st.sampled_from(sales))
                if draw(st.booleans()):
                    pid = f"{sale_id}-{draw(st.integers(1, n))}"  # a PAID sale's payment id
                else:
                    invoice, customer = f"INV-{sale_id}", owner or "C1"
            amount = draw(st.sampled_from(["0.01", "1.00", "1.00", "10.00", "116.00"]))
            events.append(payment(pid, customer or "C1", amount,
                                  event_id=eid, ts=ts, invoice=invoice, method=draw(st.sampled_from(METHODS))))
        else:
            events.append(terms(draw(st.sampled_from(["C1", "C2"])), draw(st.sampled_from(["0", "100", "1000"])),
                                event_id=eid, ts=ts, days=draw(st.sampled_from([None, 0, 14]))))
    return events


@settings(max_examples=300, deadline=None)
@given(tenant_logs())
def test_after_every_event_the_ledger_equals_the_subledgers(events):
    state, outputs = DictState(), []
    for n, event in enumerate(events):
        out = fold(state, event, CFG)
        check_outputs(out)
        outputs += out
        assert differences(state, outputs) == [], (n, event.record["event_type"], event.record["data"])
    for raw in state.tables["invoices"].values():
        if "invoice_id" in raw and "customer_ref" in raw and "due_at" in raw:
            assert raw["due_at"] % DAY == 0  # every on-account invoice has a due date, a midnight


def test_payment_terms_and_price_list_are_validated():
    from streams.core.credit import validate_customer_credit

    good = {"customer_ref": "C1", "credit_limit": "100", "on_hold": False}
    assert validate_customer_credit(good) == []
    assert validate_customer_credit({**good, "payment_terms_days": 36_500, "price_list_id": "PL-1"}) == []
    for days in (-1, 36_501, True, "30", 2.5):
        assert validate_customer_credit({**good, "payment_terms_days": days}) == [
            f"payment_terms_days must be a whole number of days from 0 to 36500, got {days!r}"]
    assert validate_customer_credit({**good, "price_list_id": " "}) == ["price_list_id, when given, must not be empty"]
