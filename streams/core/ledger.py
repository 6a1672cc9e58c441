"""Booking: a priced sale or an applied payment -> its documents and journal entry.

The document and journal types live in `documents` and `journal`; they are
re-exported here so the ledger reads as one API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .credit import PaymentReceived
from .documents import (
    PAID_STATUS,
    PARTIALLY_PAID,
    Allocation,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    Payment,
    invoice_id_for,
    payment_id_for,
    sale_payment_id_for,
)
from .journal import (
    DEFAULT_ACCOUNTS,
    Accounts,
    JournalEntry,
    JournalLine,
    UnbalancedEntry,
    assert_balanced,
    post_payment,
    post_sale,
)
from .money import ZERO
from .pricing import PricedSale
from .sales import ON_ACCOUNT, Sale, SalePayment
from .serde import Plain

__all__ = [
    "PAYMENT_MISMATCH",
    "Accounts",
    "DEFAULT_ACCOUNTS",
    "Allocation",
    "CreditNote",
    "CreditNoteLine",
    "Invoice",
    "InvoiceLine",
    "JournalEntry",
    "JournalLine",
    "Payment",
    "UnbalancedEntry",
    "assert_balanced",
    "LedgerError",
    "SaleBooking",
    "PaymentBooking",
    "make_invoice",
    "book_sale",
    "book_payment",
]

PAYMENT_MISMATCH = "PAYMENT_MISMATCH"


@dataclass(frozen=True, slots=True)
class LedgerError(Plain):
    """A sale that breaks a booking rule (the shell sends it to the DLQ; nothing is applied)."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class SaleBooking(Plain):
    invoice: Invoice
    payments: tuple[Payment, ...]  # PAY-<sale_id>-<n> of a PAID sale; empty on account
    journal: JournalEntry


@dataclass(frozen=True, slots=True)
class PaymentBooking(Plain):
    payment: Payment
    journal: JournalEntry


def make_invoice(sale: Sale, priced: PricedSale, issued_at: int, due_date: int | None = None) -> Invoice:
    """The invoice INV-<sale_id> carrying the priced lines (and, on account, its due date)."""
    if priced.currency != sale.currency:
        raise ValueError(f"priced in {priced.currency}, sale in {sale.currency}")
    lines = tuple(priced.lines)  # a priced line is an invoice line
    return Invoice(
        tenant_id=sale.tenant_id,
        invoice_id=invoice_id_for(sale.sale_id),
        sale_id=sale.sale_id,
        customer_ref=sale.customer_ref,
        channel=sale.channel,
        currency=sale.currency,
        payment_terms=sale.payment_terms,
        issued_at=issued_at,
        lines=lines,
        net_total=priced.net_total,
        tax_total=priced.tax_total,
        total=priced.total,
        due_date=due_date,
    )


def _sale_payments(sale: Sale, invoice: Invoice) -> tuple[Payment, ...] | LedgerError:
    """PAID sale: the given payments (which must sum to the total exactly), else one CASH payment.

    A PAID sale totalling zero with no payments[] gets no payment: no money moved.
    """
    given: Sequence[SalePayment] = sale.payments
    if not given:
        given = (SalePayment("CASH", invoice.total),) if invoice.total != 0 else ()
    paid = sum((p.amount for p in given), ZERO)
    if paid != invoice.total:
        return LedgerError(
            PAYMENT_MISMATCH,
            f"payments sum to {paid} {sale.currency} but the invoice total is {invoice.total} {sale.currency}",
        )
    payments: list[Payment] = []
    running = ZERO
    for n, p in enumerate(given, 1):
        running += p.amount
        status = PAID_STATUS if running == invoice.total else PARTIALLY_PAID
        payments.append(
            Payment(
                tenant_id=sale.tenant_id,
                payment_id=sale_payment_id_for(sale.sale_id, n),
                customer_ref=sale.customer_ref,
                sale_id=sale.sale_id,
                method=p.method,
                amount=p.amount,
                currency=sale.currency,
                reference=p.reference,
                received_at=invoice.issued_at,
                allocations=(Allocation(invoice.invoice_id, p.amount, status, running),),
            )
        )
    return tuple(payments)


def book_sale(
    sale: Sale, priced: PricedSale, posted_at: int, accounts: Accounts = DEFAULT_ACCOUNTS,
    due_date: int | None = None,
) -> SaleBooking | LedgerError:
    """Invoice, payments (PAID) and the balanced journal entry JE-INV-<sale_id> of a sale.

    The payments of a PAID sale are posted inside the invoice's entry (Dr
    cash/clearing/bank, Cr revenue and tax) and get no entry of their own.
    A sale of total zero gets an entry without lines: the fold books no entry for it.
    """
    invoice = make_invoice(sale, priced, posted_at, due_date)
    if sale.payment_terms == ON_ACCOUNT:
        payments: tuple[Payment, ...] = ()
    else:
        result = _sale_payments(sale, invoice)
        if isinstance(result, LedgerError):
            return result
        payments = result
    return SaleBooking(invoice, payments, post_sale(invoice, payments, accounts))


def book_payment(
    tenant_id: str,
    received: PaymentReceived,
    allocations: Sequence[Allocation],
    received_at: int,
    accounts: Accounts = DEFAULT_ACCOUNTS,
) -> PaymentBooking:
    """The payment document PAY-<payment_id> with its allocations (from credit.apply_payment)
    and its entry: Dr cash/clearing/bank, Cr receivable."""
    payment = Payment(
        tenant_id=tenant_id,
        payment_id=payment_id_for(received.payment_id),
        customer_ref=received.customer_ref,
        sale_id=None,
        method=received.method,
        amount=received.amount,
        currency=received.currency,
        reference=received.reference,
        received_at=received_at,
        allocations=tuple(allocations),
    )
    return PaymentBooking(payment, post_payment(payment, accounts))
