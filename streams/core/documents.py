"""Ledger documents: invoices, credit notes, payments (field names as in stockledger/schemas/*.avsc).

Ids are deterministic from the input so a replay produces the same documents
and a producer can name one without asking: INV-<sale_id>, CN-<refund_id>,
PAY-<payment_id>, a PAID sale's payments PAY-<sale_id>-<n>, JE-<document id>.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .serde import Plain

__all__ = [
    "UNPAID",
    "PARTIALLY_PAID",
    "PAID_STATUS",
    "CREDITED",
    "DocumentLine",
    "InvoiceLine",
    "Invoice",
    "CreditNoteLine",
    "CreditNote",
    "Allocation",
    "Payment",
    "invoice_id_for",
    "credit_note_id_for",
    "payment_id_for",
    "sale_payment_id_for",
    "entry_id_for",
]

UNPAID = "UNPAID"
PARTIALLY_PAID = "PARTIALLY_PAID"
PAID_STATUS = "PAID"
CREDITED = "CREDITED"  # settled by credit notes alone


def invoice_id_for(sale_id: str) -> str:
    return f"INV-{sale_id}"


def credit_note_id_for(refund_id: str) -> str:
    return f"CN-{refund_id}"


def payment_id_for(payment_id: str) -> str:
    """A payment.received's document id."""
    return f"PAY-{payment_id}"


def sale_payment_id_for(sale_id: str, n: int) -> str:
    """The n-th (from 1) payment of a PAID sale."""
    return f"PAY-{sale_id}-{n}"


def entry_id_for(document_id: str) -> str:
    """The journal entry of a document."""
    return f"JE-{document_id}"


@dataclass(frozen=True, slots=True)
class DocumentLine(Plain):
    """A priced line, one shape wherever it appears: a sale line once priced, an invoice line, and a
    credit note line (whose `line_no` is the invoice line it reverses, unique within the note)."""

    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    discount_percent: Decimal
    tax_percent: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal
    price_source: str | None = None  # SPEC 9: LINE / PRICE_LIST / CATALOG (streams/core/pricelists.py)
    price_list_id: str | None = None  # the list that priced it (PRICE_LIST)


InvoiceLine = DocumentLine  # the names the schemas use (InvoiceLine, CreditNoteLine)
CreditNoteLine = DocumentLine


@dataclass(frozen=True, slots=True)
class Invoice(Plain):
    tenant_id: str
    invoice_id: str
    sale_id: str
    customer_ref: str | None
    channel: str
    currency: str
    payment_terms: str  # PAID / ON_ACCOUNT
    issued_at: int
    lines: tuple[InvoiceLine, ...]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    due_date: int | None = None  # ON_ACCOUNT: epoch millis of the due day's midnight UTC (issue day + terms)


@dataclass(frozen=True, slots=True)
class CreditNote(Plain):
    tenant_id: str
    credit_note_id: str
    refund_id: str
    sale_id: str
    invoice_id: str
    currency: str
    refund_method: str  # CASH / CARD / MOBILE / BANK / CREDIT
    restock: bool
    issued_at: int
    lines: tuple[CreditNoteLine, ...]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class Allocation(Plain):
    """The part of a payment applied to one invoice, and that invoice's state after it."""

    invoice_id: str
    amount: Decimal
    status_after: str  # PARTIALLY_PAID / PAID
    paid_after: Decimal  # everything paid on the invoice so far, this allocation included


@dataclass(frozen=True, slots=True)
class Payment(Plain):
    tenant_id: str
    payment_id: str
    customer_ref: str | None
    sale_id: str | None  # set for a PAID sale's payments
    method: str  # CASH / CARD / MOBILE / BANK
    amount: Decimal
    currency: str
    reference: str | None
    received_at: int
    allocations: tuple[Allocation, ...] = ()
