"""The sales.outcomes record: one per sale, refund and payment, typed (stockledger/schemas/sale_outcome.avsc)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .credit import CreditCheck
from .serde import Plain

__all__ = [
    "ACCEPTED",
    "REFUSED",
    "IDEMPOTENCY_CONFLICT",
    "SALE",
    "REFUND",
    "PAYMENT",
    "Reason",
    "CreditFigures",
    "Outcome",
]

ACCEPTED = "ACCEPTED"
REFUSED = "REFUSED"
IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
SALE, REFUND, PAYMENT = "SALE", "REFUND", "PAYMENT"  # Outcome.kind


@dataclass(frozen=True, slots=True)
class Reason(Plain):
    """One reasons[] entry: a refused line (sku, requested, available) or a whole-record reason."""

    code: str
    message: str
    sku: str | None = None
    requested: int | None = None
    available: int | None = None


@dataclass(frozen=True, slots=True)
class CreditFigures(Plain):
    """The credit figures of an ON_ACCOUNT order's check (as in 004's example)."""

    credit_limit: Decimal
    outstanding: Decimal
    available: Decimal | None
    order_amount: Decimal

    @classmethod
    def of(cls, check: CreditCheck) -> CreditFigures:
        return cls(check.credit_limit, check.outstanding, check.available, check.order_amount)


@dataclass(frozen=True, slots=True)
class Outcome(Plain):
    tenant_id: str
    kind: str  # SALE / REFUND / PAYMENT
    id: str  # sale_id, refund_id or payment_id
    event_id: str
    outcome: str  # ACCEPTED / REFUSED / IDEMPOTENCY_CONFLICT
    decided_at: int  # the deciding event's timestamp, epoch millis (never the wall clock)
    sale_id: str | None = None
    customer_ref: str | None = None
    reasons: tuple[Reason, ...] = ()
    credit: CreditFigures | None = None
    document_ids: tuple[str, ...] = ()
    total: Decimal | None = None
    currency: str | None = None

    def datum(self) -> dict[str, Any]:
        """The Avro datum for sales.outcomes (Decimal money, epoch-millis timestamp): `serde.to_datum`'s form,
        built directly (every sale, refund and payment sends one; tests/streams/core/test_serde_fast.py)."""
        credit = self.credit
        return {
            "tenant_id": self.tenant_id, "kind": self.kind, "id": self.id, "sale_id": self.sale_id,
            "customer_ref": self.customer_ref, "event_id": self.event_id, "outcome": self.outcome,
            "reasons": [{"sku": r.sku, "code": r.code, "message": r.message, "requested": r.requested,
                         "available": r.available} for r in self.reasons],
            "credit": None if credit is None else {
                "credit_limit": credit.credit_limit, "outstanding": credit.outstanding,
                "available": credit.available, "order_amount": credit.order_amount},
            "document_ids": list(self.document_ids), "total": self.total, "currency": self.currency,
            "decided_at": self.decided_at,
        }

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: every sale, refund and payment stores one."""
        credit = self.credit
        return {
            "tenant_id": self.tenant_id, "kind": self.kind, "id": self.id, "event_id": self.event_id,
            "outcome": self.outcome, "decided_at": self.decided_at, "sale_id": self.sale_id,
            "customer_ref": self.customer_ref,
            "reasons": [{"code": r.code, "message": r.message, "sku": r.sku, "requested": r.requested,
                         "available": r.available} for r in self.reasons],
            "credit": None if credit is None else {
                "credit_limit": format(credit.credit_limit, "f"), "outstanding": format(credit.outstanding, "f"),
                "available": None if credit.available is None else format(credit.available, "f"),
                "order_amount": format(credit.order_amount, "f")},
            "document_ids": list(self.document_ids), "total": None if self.total is None else format(self.total, "f"),
            "currency": self.currency,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        credit, total = data.get("credit"), data.get("total")
        return cls(
            data["tenant_id"], data["kind"], data["id"], data["event_id"], data["outcome"], data["decided_at"],
            data.get("sale_id"), data.get("customer_ref"),
            tuple(Reason(r["code"], r["message"], r.get("sku"), r.get("requested"), r.get("available"))
                  for r in data.get("reasons", ())),
            None if credit is None else CreditFigures(
                Decimal(credit["credit_limit"]), Decimal(credit["outstanding"]),
                None if credit.get("available") is None else Decimal(credit["available"]),
                Decimal(credit["order_amount"])),
            tuple(data.get("document_ids", ())), None if total is None else Decimal(total), data.get("currency"),
        )
