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


def test_document_lines_carry_their_price_source_and_older_records_none():
    out = to_rows("ledger.invoices", support.invoice("t1", 7, lines=3))
    assert [(r["line_no"], r["price_source"], r["price_list_id"]) for r in out.rows["invoice_lines"]] == [
        (1, "PRICE_LIST", "PL-2"), (2, "CATALOG", None), (3, "LINE", None)]
    old = support.invoice("t1", 8, lines=1)
    for line in old["lines"]:  # a record of the schema before price lists: no such fields at all
        del line["price_source"], line["price_list_id"]
    note = to_rows("ledger.credit_notes", support.credit_note("t1", "R1", old))
    assert [(r["price_source"], r["price_list_id"]) for r in note.rows["credit_note_lines"]] == [(None, None)]
    bad = support.invoice("t1", 7, lines=1)
    bad["lines"][0]["price_source"] = ""
    with pytest.raises(RecordError, match=r"lines\[0\].price_source: expected a non-empty string"):
        to_rows("ledger.invoices", bad)


def test_a_shipment_becomes_its_delivery_note_and_lines():
    inv = support.invoice("t1", 3)
    out = to_rows("ledger.shipments", support.shipment("t1", "SH1", inv))
    [header] = out.rows["shipments"]
    assert header == {"tenant_id": "t1", "shipment_id": "SHIP-SH1", "source_shipment_id": "SH1", "sale_id": "S3",
                      "invoice_id": "INV-S3", "location_id": "WH-1", "shipped_at": inv["issued_at"] + support.timedelta(
                          days=1)}
    assert out.rows["shipment_lines"] == [{"tenant_id": "t1", "shipment_id": "SHIP-SH1", "line_no": 1,
                                           "sku": inv["lines"][0]["sku"], "quantity": inv["lines"][0]["quantity"]}]
    assert out.invoice_keys == []  # a shipment settles nothing
    with pytest.raises(RecordError, match="field 'lines' missing"):
        to_rows("ledger.shipments", {k: v for k, v in support.shipment("t1", "SH1", inv).items() if k != "lines"})
