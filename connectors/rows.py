"""Ledger records (decoded Avro) -> table rows. Pure: no Kafka, no SQL, so it is tested on its own.

A record that decodes but cannot be mapped (a field missing, money that is not Decimal) raises
`RecordError`; the sink sends it to the DLQ at stage `validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stockledger.db import tables as t

LEDGER_TOPICS = ("ledger.invoices", "ledger.credit_notes", "ledger.payments", "ledger.journal", "ledger.external_refs",
                 "ledger.shipments")
# Parents before children, so foreign keys hold inside a batch.
TABLE_ORDER = tuple(table.name for table in t.BOOKS)


class RecordError(ValueError):
    """A decoded record the books cannot take as it is."""


def contract_topic(topic: str) -> str:
    """The contract topic a (possibly prefixed, e.g. `test-1234.ledger.invoices`) topic stands for."""
    for name in LEDGER_TOPICS:
        if topic == name or topic.endswith("." + name):
            return name
    raise ValueError(f"{topic!r} is not a ledger topic ({', '.join(LEDGER_TOPICS)}, optionally prefixed)")


@dataclass(slots=True)
class RecordRows:
    """The rows one record becomes, per table name, and the invoices whose paid state it may change."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invoice_keys: list[tuple[str, str]] = field(default_factory=list)

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)


def _money(value: Any, name: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise RecordError(f"{name}: money must be a decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise RecordError(f"{name}: {value} is not a finite amount")
    return value


def _time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    raise RecordError(f"{name}: expected a timestamp, got {type(value).__name__}")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise RecordError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _document_lines(out: RecordRows, table: str, id_name: str, tenant: str, doc_id: str, lines: list) -> None:
    for i, line in enumerate(lines):
        where = f"lines[{i}]"
        out.add(table, {
            "tenant_id": tenant, id_name: doc_id, "line_no": line["line_no"],
            "sku": _text(line["sku"], f"{where}.sku"), "quantity": line["quantity"],
            "unit_price": _money(line["unit_price"], f"{where}.unit_price"),
            "discount_percent": _money(line["discount_percent"], f"{where}.discount_percent"),
            "tax_percent": _money(line["tax_percent"], f"{where}.tax_percent"),
            "net": _money(line["net"], f"{where}.net"), "tax": _money(line["tax"], f"{where}.tax"),
            "total": _money(line["total"], f"{where}.total"),
            # SPEC 9; absent from records written before price lists (older schema versions)
            "price_source": _optional_text(line.get("price_source"), f"{where}.price_source"),
            "price_list_id": _optional_text(line.get("price_list_id"), f"{where}.price_list_id"),
        })


def _invoice(r: dict, out: RecordRows) -> None:
    tenant, doc = _text(r["tenant_id"], "tenant_id"), _text(r["invoice_id"], "invoice_id")
    out.add("invoices", {
        "tenant_id": tenant, "invoice_id": doc, "sale_id": _text(r["sale_id"], "sale_id"),
        "customer_ref": _optional_text(r.get("customer_ref"), "customer_ref"),
        "channel": r["channel"], "currency": r["currency"], "payment_terms": r["payment_terms"],
        "issued_at": _time(r["issued_at"], "issued_at"),
        "net_total": _money(r["net_total"], "net_total"), "tax_total": _money(r["tax_total"], "tax_total"),
        "total": _money(r["total"], "total"),
        "due_date": None if r.get("due_date") is None else _time(r["due_date"], "due_date").date(),
    })
    _document_lines(out, "invoice_lines", "invoice_id", tenant, doc, r["lines"])
    out.invoice_keys.append((tenant, doc))  # payments may have arrived first


def _credit_note(r: dict, out: RecordRows) -> None:
    tenant, doc = _text(r["tenant_id"], "tenant_id"), _text(r["credit_note_id"], "credit_note_id")
    out.add("credit_notes", {
        "tenant_id": tenant, "credit_note_id": doc, "refund_id": r["refund_id"], "sale_id": r["sale_id"],
        "invoice_id": r["invoice_id"], "currency": r["currency"], "refund_method": r["refund_method"],
        "restock": bool(r["restock"]), "issued_at": _time(r["issued_at"], "issued_at"),
        "net_total": _money(r["net_total"], "net_total"), "tax_total": _money(r["tax_total"], "tax_total"),
        "total": _money(r["total"], "total"),
    })
    _document_lines(out, "credit_note_lines", "credit_note_id", tenant, doc, r["lines"])
    out.invoice_keys.append((tenant, _text(r["invoice_id"], "invoice_id")))  # a CREDIT note settles its invoice


def _payment(r: dict, out: RecordRows) -> None:
    tenant, doc = _text(r["tenant_id"], "tenant_id"), _text(r["payment_id"], "payment_id")
    out.add("payments", {
        "tenant_id": tenant, "payment_id": doc, "customer_ref": r.get("customer_ref"), "sale_id": r.get("sale_id"),
        "method": r["method"], "amount": _money(r["amount"], "amount"), "currency": r["currency"],
        "reference": r.get("reference"), "received_at": _time(r["received_at"], "received_at"),
    })
    for i, a in enumerate(r.get("allocations") or []):
        invoice = _text(a["invoice_id"], f"allocations[{i}].invoice_id")
        out.add("payment_allocations", {
            "tenant_id": tenant, "payment_id": doc, "invoice_id": invoice,
            "amount": _money(a["amount"], f"allocations[{i}].amount"),
            "paid_after": _money(a["paid_after"], f"allocations[{i}].paid_after"),
            "status_after": a["status_after"],
        })
        out.invoice_keys.append((tenant, invoice))


def _journal(r: dict, out: RecordRows) -> None:
    tenant, entry = _text(r["tenant_id"], "tenant_id"), _text(r["entry_id"], "entry_id")
    out.add("journal_entries", {
        "tenant_id": tenant, "entry_id": entry, "document_id": r["document_id"],
        "document_type": r["document_type"], "currency": r["currency"],
        "posted_at": _time(r["posted_at"], "posted_at"), "description": r.get("description"),
    })
    for n, line in enumerate(r["lines"], start=1):
        out.add("journal_lines", {
            "tenant_id": tenant, "entry_id": entry, "line_no": n, "account": _text(line["account"], "account"),
            "debit": _money(line["debit"], f"lines[{n - 1}].debit"),
            "credit": _money(line["credit"], f"lines[{n - 1}].credit"), "role": line.get("role"),
        })


def _external_ref(r: dict, out: RecordRows) -> None:
    out.add("external_refs", {
        "tenant_id": _text(r["tenant_id"], "tenant_id"), "kind": _text(r["kind"], "kind"),
        "external_id": _text(r["external_id"], "external_id"), "internal_id": _text(r["internal_id"], "internal_id"),
    })


def _shipment(r: dict, out: RecordRows) -> None:
    tenant, doc = _text(r["tenant_id"], "tenant_id"), _text(r["shipment_id"], "shipment_id")
    out.add("shipments", {
        "tenant_id": tenant, "shipment_id": doc,
        "source_shipment_id": _text(r["source_shipment_id"], "source_shipment_id"),
        "sale_id": _text(r["sale_id"], "sale_id"), "invoice_id": _optional_text(r.get("invoice_id"), "invoice_id"),
        "location_id": _optional_text(r.get("location_id"), "location_id"),
        "shipped_at": _time(r["shipped_at"], "shipped_at"),
    })
    for i, line in enumerate(r["lines"]):
        out.add("shipment_lines", {
            "tenant_id": tenant, "shipment_id": doc, "line_no": line["line_no"],
            "sku": _text(line["sku"], f"lines[{i}].sku"), "quantity": line["quantity"],
        })


MAPPERS: dict[str, Callable[[dict, RecordRows], None]] = {
    "ledger.invoices": _invoice,
    "ledger.credit_notes": _credit_note,
    "ledger.payments": _payment,
    "ledger.journal": _journal,
    "ledger.external_refs": _external_ref,
    "ledger.shipments": _shipment,
}


def to_rows(contract: str, record: Any) -> RecordRows:
    """The rows of one decoded record of a contract ledger topic; RecordError if it does not fit."""
    if not isinstance(record, dict):
        raise RecordError(f"expected a record, got {type(record).__name__}")
    out = RecordRows()
    try:
        MAPPERS[contract](record, out)
    except KeyError as exc:
        raise RecordError(f"field {exc.args[0]!r} missing: not a {contract} record") from None
    except (TypeError, AttributeError) as exc:
        raise RecordError(f"not a {contract} record: {exc}") from None
    return out
