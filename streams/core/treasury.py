"""Payments that failed at the provider (seed 001's treasury.payment.failed), recorded on their sale.

A `payment.failed` (topic payments, key customer_ref) names the sale's invoice (invoice_id
INV-<sale_id>, required) and the provider's reason (failure_reason). Nothing is booked: the
invoice stays open (a web order without payment is on account, payment due). The fold keeps the
sale's last MAX_FAILURES failures in `payment_failures` `<tenant>:<sale_id>` (one bounded value
per sale) and sends a PAYMENT outcome REFUSED with reason PAYMENT_FAILED on sales.outcomes,
keyed by the sale. A failure naming an unknown sale is refused (UNKNOWN_SALE) and kept nowhere.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .serde import Plain

__all__ = [
    "PAYMENT_FAILED",
    "MAX_FAILURES",
    "MAX_REASON",
    "PaymentFailure",
    "failures_key",
    "sale_id_of_invoice",
    "record_failure",
    "validate_payment_failed",
]

PAYMENT_FAILED = "PAYMENT_FAILED"
MAX_FAILURES = 20  # the newest failures kept per sale
MAX_REASON = 500  # characters of the provider's reason kept


@dataclass(frozen=True, slots=True)
class PaymentFailure(Plain):
    payment_id: str
    event_id: str
    at: int  # the event's timestamp, epoch millis
    reason: str
    amount: Decimal
    currency: str


def failures_key(tenant: str, sale_id: str) -> str:
    return f"{tenant}:{sale_id}"


def sale_id_of_invoice(invoice_id: str) -> str | None:
    """INV-<sale_id> -> sale_id; None for anything else."""
    return invoice_id[4:] if invoice_id.startswith("INV-") and len(invoice_id) > 4 else None


def record_failure(current: list[dict] | None, failure: PaymentFailure) -> list[dict]:
    """The sale's failures with `failure` added, the newest MAX_FAILURES kept (oldest first)."""
    return [*(current or [])[-(MAX_FAILURES - 1):], failure.to_dict()]


def validate_payment_failed(data: Mapping[str, Any], validate_payment: Any) -> list[str]:
    """A payment.failed: a payment.received's fields, plus invoice_id and failure_reason required."""
    reasons = [r for r in validate_payment(data) if not r.startswith("amount must be positive")]
    invoice = data.get("invoice_id")
    if not isinstance(invoice, str) or sale_id_of_invoice(invoice) is None:
        reasons.append(f"invoice_id must name the sale's invoice (INV-<sale_id>), got {invoice!r}")
    why = data.get("failure_reason")
    if not isinstance(why, str) or not why.strip():
        reasons.append("failure_reason (the provider's reason) is missing or empty")
    return reasons
