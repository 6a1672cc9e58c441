"""Customer credit: limit, on-hold flag, open ON_ACCOUNT invoices, payments against them.

SPEC 2: outstanding = the unpaid amount of the customer's ON_ACCOUNT invoices;
available = credit_limit - outstanding; a limit of 0 means no limit.

Choices where SPEC is silent:
- Unlimited credit has `available = None` (JSON null), never a sentinel number.
- A CREDIT refund reduces its invoice's remaining amount; any excess (the
  invoice was already paid, or is unknown here) becomes `credit_balance`, a
  credit the customer holds, which lowers outstanding (it can go below 0).
  It must never be refused: the credit note is already booked elsewhere.
- Nothing is held for an order: the fold checks an order's credit and adds
  its invoice in one decision, so two orders cannot both spend the same credit.
- A payment applies only to invoices in its own currency. A customer is
  assumed to trade in one currency: outstanding sums invoices as they are.
- Fully paid invoices leave `open_invoices`; ids of applied invoices,
  payments and refunds stay in `applied`, so every operation
  applied twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from .documents import PAID_STATUS, PARTIALLY_PAID, UNPAID, Allocation
from .money import ZERO, is_known_currency, is_whole_minor, to_decimal
from .serde import Plain

__all__ = [
    "CREDIT_HOLD",
    "CREDIT_LIMIT_EXCEEDED",
    "APPLIED",
    "DUPLICATE",
    "REFUSED",
    "OVERPAYMENT",
    "UNKNOWN_INVOICE",
    "CURRENCY_MISMATCH",
    "INVALID_AMOUNT",
    "OpenInvoice",
    "CreditState",
    "CreditCheck",
    "CreditUpdate",
    "PaymentResult",
    "PaymentReceived",
    "check_order",
    "add_invoice",
    "apply_payment",
    "apply_credit_refund",
    "set_terms",
    "validate_payment",
    "validate_customer_credit",
]

CREDIT_HOLD = "CREDIT_HOLD"
CREDIT_LIMIT_EXCEEDED = "CREDIT_LIMIT_EXCEEDED"

APPLIED = "APPLIED"
DUPLICATE = "DUPLICATE"
REFUSED = "REFUSED"

OVERPAYMENT = "OVERPAYMENT"
UNKNOWN_INVOICE = "UNKNOWN_INVOICE"
CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
INVALID_AMOUNT = "INVALID_AMOUNT"

_METHODS = frozenset({"CASH", "CARD", "MOBILE", "BANK"})


@dataclass(frozen=True, slots=True)
class OpenInvoice(Plain):
    """An ON_ACCOUNT invoice with something still due."""

    invoice_id: str
    issued_at: int
    currency: str
    total: Decimal
    paid: Decimal = ZERO
    credited: Decimal = ZERO  # reduced by CREDIT refunds

    @property
    def remaining(self) -> Decimal:
        return self.total - self.paid - self.credited

    @property
    def status(self) -> str:
        if self.remaining == 0:
            return PAID_STATUS
        return PARTIALLY_PAID if self.paid or self.credited else UNPAID


@dataclass(frozen=True, slots=True)
class CreditState(Plain):
    """Credit of one customer; `CreditState(tenant_id, customer_ref)` is the empty state."""

    tenant_id: str
    customer_ref: str
    credit_limit: Decimal = ZERO  # 0 = no limit
    on_hold: bool = False
    open_invoices: tuple[OpenInvoice, ...] = ()
    credit_balance: Decimal = ZERO  # customer's unallocated credit from CREDIT refunds
    applied: tuple[str, ...] = ()  # "invoice:<id>", "payment:<id>", "refund:<id>"

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: a customer may hold many open invoices."""
        return {
            "tenant_id": self.tenant_id, "customer_ref": self.customer_ref,
            "credit_limit": format(self.credit_limit, "f"), "on_hold": self.on_hold,
            "open_invoices": [{"invoice_id": i.invoice_id, "issued_at": i.issued_at, "currency": i.currency,
                               "total": format(i.total, "f"), "paid": format(i.paid, "f"),
                               "credited": format(i.credited, "f")} for i in self.open_invoices],
            "credit_balance": format(self.credit_balance, "f"), "applied": list(self.applied),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CreditState":
        return cls(
            data["tenant_id"], data["customer_ref"], Decimal(data.get("credit_limit", "0")),
            data.get("on_hold", False),
            tuple(OpenInvoice(i["invoice_id"], i["issued_at"], i["currency"], Decimal(i["total"]),
                              Decimal(i.get("paid", "0")), Decimal(i.get("credited", "0")))
                  for i in data.get("open_invoices", ())),
            Decimal(data.get("credit_balance", "0")), tuple(data.get("applied", ())),
        )

    @property
    def outstanding(self) -> Decimal:
        """Unpaid amount of the open invoices, less any credit the customer holds."""
        return sum((i.remaining for i in self.open_invoices), ZERO) - self.credit_balance

    @property
    def unlimited(self) -> bool:
        return self.credit_limit == 0

    @property
    def available(self) -> Decimal | None:
        """credit_limit - outstanding; None when there is no limit."""
        if self.unlimited:
            return None
        return self.credit_limit - self.outstanding


@dataclass(frozen=True, slots=True)
class CreditCheck(Plain):
    """The answer to "may this customer take an order of this amount on account?" (as in 004)."""

    approved: bool
    reason: str | None  # CREDIT_HOLD / CREDIT_LIMIT_EXCEEDED; None when approved
    credit_limit: Decimal
    outstanding: Decimal
    available: Decimal | None
    order_amount: Decimal
    message: str = ""


@dataclass(frozen=True, slots=True)
class CreditUpdate:
    """New state; `changed` False when the operation was a repeat or changed nothing."""

    state: CreditState
    changed: bool


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """APPLIED with allocations, DUPLICATE (already applied: no-op), or REFUSED with a reason."""

    state: CreditState
    status: str
    allocations: tuple[Allocation, ...] = ()
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentReceived(Plain):
    """A payment.received event's data."""

    payment_id: str
    customer_ref: str
    amount: Decimal
    currency: str
    method: str
    invoice_id: str | None = None
    reference: str | None = None

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> PaymentReceived:
        """From the event's `data`; call validate_payment first."""
        return cls(
            payment_id=data["payment_id"],
            customer_ref=data["customer_ref"],
            amount=to_decimal(data["amount"]),
            currency=data["currency"],
            method=data["method"],
            invoice_id=data.get("invoice_id"),
            reference=data.get("reference"),
        )


def _figures(state: CreditState, amount: Decimal, approved: bool, reason: str | None, message: str) -> CreditCheck:
    return CreditCheck(approved, reason, state.credit_limit, state.outstanding, state.available, amount, message)


def check_order(state: CreditState, order_amount: Decimal) -> CreditCheck:
    """Refused when on hold (CREDIT_HOLD) or when the order exceeds available credit
    (CREDIT_LIMIT_EXCEEDED); an order using exactly what is available is approved."""
    if state.on_hold:
        return _figures(state, order_amount, False, CREDIT_HOLD, f"Customer {state.customer_ref} is on credit hold")
    available = state.available
    if available is not None and order_amount > available:
        message = f"Insufficient credit. Available: {available}, Required: {order_amount}"
        return _figures(state, order_amount, False, CREDIT_LIMIT_EXCEEDED, message)
    return _figures(state, order_amount, True, None, "")


def _remember(state: CreditState, *marks: str) -> tuple[str, ...]:
    return state.applied + marks


def add_invoice(
    state: CreditState,
    invoice_id: str,
    issued_at: int,
    currency: str,
    total: Decimal,
) -> CreditUpdate:
    """An ON_ACCOUNT invoice becomes outstanding (a fact: never refused)."""
    mark = f"invoice:{invoice_id}"
    if mark in state.applied:
        return CreditUpdate(state, False)
    if total < 0:
        raise ValueError(f"invoice total cannot be negative: {total}")
    invoices = state.open_invoices
    if total > 0:
        invoices = invoices + (OpenInvoice(invoice_id, issued_at, currency, total),)
    return CreditUpdate(replace(state, open_invoices=invoices, applied=_remember(state, mark)), True)


def _refuse(state: CreditState, code: str, reason: str) -> PaymentResult:
    return PaymentResult(state, REFUSED, (), code, reason)


def apply_payment(
    state: CreditState, payment_id: str, amount: Decimal, invoice_id: str | None, currency: str
) -> PaymentResult:
    """Apply a payment to `invoice_id`, else to the oldest unpaid invoices first (issued_at,
    then id). Paying more than is due (on that invoice, or in total) is refused and nothing
    is applied; so is an unknown invoice or another currency."""
    mark = f"payment:{payment_id}"
    if mark in state.applied:
        return PaymentResult(state, DUPLICATE)
    if amount <= 0:
        return _refuse(state, INVALID_AMOUNT, f"payment amount must be positive, got {amount}")
    if invoice_id is not None:
        target = next((i for i in state.open_invoices if i.invoice_id == invoice_id), None)
        if target is None:
            return _refuse(
                state, UNKNOWN_INVOICE, f"{invoice_id} is not an open invoice of customer {state.customer_ref}"
            )
        if target.currency != currency:
            return _refuse(
                state, CURRENCY_MISMATCH, f"payment in {currency} for {invoice_id} in {target.currency}"
            )
        if amount > target.remaining:
            return _refuse(
                state, OVERPAYMENT, f"payment of {amount} exceeds the {target.remaining} due on {invoice_id}"
            )
        candidates = [target]
    else:
        candidates = sorted(
            (i for i in state.open_invoices if i.currency == currency and i.remaining > 0),
            key=lambda i: (i.issued_at, i.invoice_id),
        )
        due = sum((i.remaining for i in candidates), ZERO)
        if amount > due:
            return _refuse(
                state,
                OVERPAYMENT,
                f"payment of {amount} {currency} exceeds the {due} due on customer {state.customer_ref}'s open invoices",
            )
    left = amount
    updated: dict[str, OpenInvoice] = {}
    allocations: list[Allocation] = []
    for inv in candidates:
        if left == 0:
            break
        take = min(left, inv.remaining)
        new = replace(inv, paid=inv.paid + take)
        updated[inv.invoice_id] = new
        allocations.append(Allocation(inv.invoice_id, take, new.status, new.paid))
        left -= take
    invoices = tuple(
        updated.get(i.invoice_id, i) for i in state.open_invoices if updated.get(i.invoice_id, i).remaining > 0
    )
    new_state = replace(state, open_invoices=invoices, applied=_remember(state, mark))
    return PaymentResult(new_state, APPLIED, tuple(allocations))


def apply_credit_refund(state: CreditState, refund_id: str, invoice_id: str, amount: Decimal) -> CreditUpdate:
    """A CREDIT refund lowers what is due on `invoice_id`; any excess becomes credit_balance."""
    mark = f"refund:{refund_id}"
    if mark in state.applied:
        return CreditUpdate(state, False)
    if amount < 0:
        raise ValueError(f"refund amount cannot be negative: {amount}")
    invoices: list[OpenInvoice] = []
    excess = amount
    for inv in state.open_invoices:
        if inv.invoice_id == invoice_id:
            take = min(excess, inv.remaining)
            inv = replace(inv, credited=inv.credited + take)
            excess -= take
        if inv.remaining > 0:
            invoices.append(inv)
    new = replace(
        state,
        open_invoices=tuple(invoices),
        credit_balance=state.credit_balance + excess,
        applied=_remember(state, mark),
    )
    return CreditUpdate(new, amount != 0)


def set_terms(state: CreditState, credit_limit: Decimal, on_hold: bool) -> CreditUpdate:
    """customer.credit: set the limit (0 = no limit) and the hold flag."""
    if credit_limit < 0:
        raise ValueError(f"credit_limit cannot be negative: {credit_limit}")
    if credit_limit == state.credit_limit and on_hold == state.on_hold:
        return CreditUpdate(state, False)
    return CreditUpdate(replace(state, credit_limit=credit_limit, on_hold=on_hold), True)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _amount(value: Any, what: str, reasons: list[str]) -> Decimal | None:
    try:
        return to_decimal(value)
    except (TypeError, ValueError):
        reasons.append(f"{what} must be a decimal number, got {value!r}")
        return None


def validate_payment(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a payment.received `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    for name in ("payment_id", "customer_ref"):
        if not _nonempty_str(data.get(name)):
            reasons.append(f"{name} is missing or empty")
    if data.get("invoice_id") is not None and not _nonempty_str(data.get("invoice_id")):
        reasons.append("invoice_id, when given, must not be empty")
    currency = data.get("currency")
    if not is_known_currency(currency):
        reasons.append(f"unknown currency {currency!r}")
    if data.get("method") not in _METHODS:
        reasons.append(f"method must be one of CASH, CARD, MOBILE, BANK, got {data.get('method')!r}")
    amount = _amount(data.get("amount"), "amount", reasons)
    if amount is not None:
        if amount <= 0:
            reasons.append(f"amount must be positive, got {amount}")
        elif is_known_currency(currency) and not is_whole_minor(amount, currency):
            reasons.append(f"amount {amount} has more decimals than {currency} allows")
    return reasons


def validate_customer_credit(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a customer.credit `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    if not _nonempty_str(data.get("customer_ref")):
        reasons.append("customer_ref is missing or empty")
    limit = _amount(data.get("credit_limit"), "credit_limit", reasons)
    if limit is not None and limit < 0:
        reasons.append(f"credit_limit must not be negative, got {limit}")
    if not isinstance(data.get("on_hold"), bool):
        reasons.append(f"on_hold must be true or false, got {data.get('on_hold')!r}")
    return reasons
