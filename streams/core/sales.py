"""The sale event (`sale.completed` / `order.placed`) as plain data, and its validation.

Validation returns readable reasons instead of raising, so the shell can put
them on the DLQ record; the booking functions then assume valid input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .money import is_known_currency, is_whole_minor, to_decimal
from .serde import Plain

__all__ = [
    "PAID",
    "ON_ACCOUNT",
    "CHANNELS",
    "PAYMENT_METHODS",
    "SaleLine",
    "SalePayment",
    "Sale",
    "validate_sale",
]

PAID = "PAID"
ON_ACCOUNT = "ON_ACCOUNT"
PAYMENT_TERMS = frozenset({PAID, ON_ACCOUNT})
CHANNELS = frozenset({"POS", "WEB", "ERP"})
PAYMENT_METHODS = frozenset({"CASH", "CARD", "MOBILE", "BANK"})


def _opt_decimal(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


@dataclass(frozen=True, slots=True)
class SaleLine(Plain):
    """One line_items[] entry; None means "take the default" (catalog price, tax rate, no discount)."""

    sku: str
    quantity: int
    unit_price: Decimal | None = None
    discount_percent: Decimal | None = None
    tax_percent: Decimal | None = None

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> SaleLine:
        return cls(
            sku=data["sku"],
            quantity=data["quantity"],
            unit_price=_opt_decimal(data.get("unit_price")),
            discount_percent=_opt_decimal(data.get("discount_percent")),
            tax_percent=_opt_decimal(data.get("tax_percent")),
        )


@dataclass(frozen=True, slots=True)
class SalePayment(Plain):
    """One payments[] entry of a PAID sale."""

    method: str
    amount: Decimal
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Sale(Plain):
    """A validated sale event's data plus its tenant."""

    tenant_id: str
    sale_id: str
    channel: str
    currency: str
    payment_terms: str
    lines: tuple[SaleLine, ...]
    customer_ref: str | None = None
    location_id: str | None = None
    payments: tuple[SalePayment, ...] = ()

    @classmethod
    def from_event(cls, tenant_id: str, data: Mapping[str, Any]) -> Sale:
        """From the event's `data` (decoded Avro or JSON); call validate_sale first."""
        return cls(
            tenant_id=tenant_id,
            sale_id=data["sale_id"],
            channel=data["channel"],
            currency=data["currency"],
            payment_terms=data["payment_terms"],
            lines=tuple(SaleLine.from_event(li) for li in data["line_items"]),
            customer_ref=data.get("customer_ref"),
            location_id=data.get("location_id"),
            payments=tuple(
                SalePayment(p["method"], to_decimal(p["amount"]), p.get("reference"))
                for p in (data.get("payments") or ())
            ),
        )


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _decimal_or_reason(value: Any, what: str, reasons: list[str]) -> Decimal | None:
    try:
        return to_decimal(value)
    except (TypeError, ValueError):
        reasons.append(f"{what} must be a decimal number, got {value!r}")
        return None


def _check_line(n: int, line: Any, reasons: list[str]) -> None:
    if not isinstance(line, Mapping):
        reasons.append(f"line {n}: not a record")
        return
    if not _nonempty_str(line.get("sku")):
        reasons.append(f"line {n}: sku is missing or empty")
    qty = line.get("quantity")
    if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
        reasons.append(f"line {n}: quantity must be a positive integer, got {qty!r}")
    if line.get("unit_price") is not None:
        price = _decimal_or_reason(line["unit_price"], f"line {n}: unit_price", reasons)
        if price is not None and price < 0:
            reasons.append(f"line {n}: unit_price must not be negative, got {price}")
    if line.get("discount_percent") is not None:
        disc = _decimal_or_reason(line["discount_percent"], f"line {n}: discount_percent", reasons)
        if disc is not None and not (0 <= disc <= 100):
            reasons.append(f"line {n}: discount_percent must be between 0 and 100, got {disc}")
    if line.get("tax_percent") is not None:
        tax = _decimal_or_reason(line["tax_percent"], f"line {n}: tax_percent", reasons)
        if tax is not None and tax < 0:
            reasons.append(f"line {n}: tax_percent must not be negative, got {tax}")


def _check_payments(data: Mapping[str, Any], reasons: list[str]) -> None:
    payments = data.get("payments") or []
    if not payments:
        return
    if data.get("payment_terms") != PAID:
        reasons.append("payments[] is only allowed with payment_terms PAID")
    currency = data.get("currency")
    for n, p in enumerate(payments, 1):
        if not isinstance(p, Mapping):
            reasons.append(f"payment {n}: not a record")
            continue
        if p.get("method") not in PAYMENT_METHODS:
            reasons.append(f"payment {n}: method must be one of CASH, CARD, MOBILE, BANK, got {p.get('method')!r}")
        amount = _decimal_or_reason(p.get("amount"), f"payment {n}: amount", reasons)
        if amount is None:
            continue
        if amount <= 0:
            reasons.append(f"payment {n}: amount must be positive, got {amount}")
        elif is_known_currency(currency) and not is_whole_minor(amount, currency):
            reasons.append(f"payment {n}: amount {amount} has more decimals than {currency} allows")


def validate_sale(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a sale event's `data` breaks the rules; empty when valid.

    The payments-sum rule (PAYMENT_MISMATCH) needs the priced total and is
    checked when booking.
    """
    reasons: list[str] = []
    if not _nonempty_str(data.get("sale_id")):
        reasons.append("sale_id is missing or empty")
    if data.get("channel") not in CHANNELS:
        reasons.append(f"channel must be one of POS, WEB, ERP, got {data.get('channel')!r}")
    if data.get("currency") not in (None, "") and not is_known_currency(data.get("currency")):
        # none named ("" is the schema's default): the tenant's default currency (SPEC 8), set by the fold
        reasons.append(f"unknown currency {data.get('currency')!r}")
    terms = data.get("payment_terms")
    if terms not in PAYMENT_TERMS:
        reasons.append(f"payment_terms must be PAID or ON_ACCOUNT, got {terms!r}")
    elif terms == ON_ACCOUNT and not _nonempty_str(data.get("customer_ref")):
        reasons.append("customer_ref is required for an ON_ACCOUNT sale")
    lines = data.get("line_items")
    if not isinstance(lines, (list, tuple)) or not lines:
        reasons.append("line_items is empty")
    else:
        for n, line in enumerate(lines, 1):
            _check_line(n, line, reasons)
    _check_payments(data, reasons)
    return reasons


