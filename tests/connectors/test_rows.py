"""Ledger records -> rows, without services: exact rows, and records that do not fit are refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.rows import RecordError, contract_topic, to_rows
from tests.connectors import support

D = Decimal


def test_invoice_becomes_header_and_lines_and_marks_its_paid_state_for_update():
    inv = support.invoice("t1", 7, lines=2)
    out = to_rows("ledger.invoices", inv)
    [header] = out.rows["invoices"]
    assert header["invoice_id"] == "INV-S7" and header["total"] == inv["total"]
    assert "paid_amount" not in header  # set from allocations only
    assert [(r["line_no"], r["net"], r["tax"]) for r in out.rows["invoice_lines"]] == \
        [(x["line_no"], x["net"], x["tax"]) for x in inv["lines"]]
    assert out.invoice_keys == [("t1", "INV-S7")]


def test_journal_lines_are_numbered_in_record_order():
    entry = support.invoice_entry(support.invoice("t1", 1))
    out = to_rows("ledger.journal", entry)
    assert [(r["line_no"], r["account"]) for r in out.rows["journal_lines"]] == [(1, "1100"), (2, "4000"), (3, "2100")]


def test_payment_allocations_name_the_invoices_they_pay():
    inv = support.invoice("t1", 3)
    pay = support.payment("t1", "P1", inv, D("10.00"), D("10.00"))
    out = to_rows("ledger.payments", pay)
    [alloc] = out.rows["payment_allocations"]
    assert (alloc["payment_id"], alloc["invoice_id"], alloc["paid_after"], alloc["status_after"]) == \
        ("PAY-P1", "INV-S3", D("10.00"), "PARTIALLY_PAID")
    assert out.invoice_keys == [("t1", "INV-S3")]


@pytest.mark.parametrize("change,reason", [
    (lambda r: r.pop("total"), "field 'total' missing"),
    (lambda r: r.update(total=12.5), "money must be a decimal"),
    (lambda r: r.update(total=D("NaN")), "not a finite amount"),
    (lambda r: r.update(invoice_id=""), "invoice_id: expected a non-empty string"),
])
def test_a_record_that_does_not_fit_is_refused_with_the_reason(change, reason):
    inv = support.invoice("t1", 1)
    change(inv)
    with pytest.raises(RecordError, match=reason):
        to_rows("ledger.invoices", inv)


def test_a_record_of_another_topic_is_refused():
    with pytest.raises(RecordError, match="not a ledger.invoices record"):
        to_rows("ledger.invoices", support.external_ref("t1", "sale", "S1", "INV-S1"))


def test_prefixed_topics_stand_for_their_contract_topic():
    assert contract_topic("ledger.journal") == "ledger.journal"
    assert contract_topic("test-abc.ledger.journal") == "ledger.journal"
    with pytest.raises(ValueError):
        contract_topic("sales")
