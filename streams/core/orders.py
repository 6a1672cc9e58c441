"""The all-or-nothing decision for a web/ERP `order.placed`.

The shell gathers the answers (catalog and stock per SKU, a credit check for
ON_ACCOUNT orders) and this module says accepted or refused, with every
reason, line by line, for the sales.outcomes record.

Choices where SPEC is silent:
- Lines are checked in order: UNKNOWN_SKU, else INACTIVE_SKU, else
  INSUFFICIENT_STOCK. Several lines of one SKU draw on one stock: `requested`
  is the SKU's total over the order, and each of its lines is refused.
- A SKU with no stock answer counts as unknown.
- With line refusals, an ON_ACCOUNT order may come without a credit check
  (the saga may stop early); when one is given, its refusal is reported too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from .credit import CreditCheck
from .sales import ON_ACCOUNT
from .serde import Plain

__all__ = [
    "UNKNOWN_SKU",
    "INACTIVE_SKU",
    "INSUFFICIENT_STOCK",
    "StockAnswer",
    "LineRefusal",
    "CreditRefusal",
    "OrderDecision",
    "check_lines",
    "decide_order",
]

UNKNOWN_SKU = "UNKNOWN_SKU"
INACTIVE_SKU = "INACTIVE_SKU"
INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"


class OrderLine(Protocol):
    """Anything with a sku and a quantity: SaleLine, PricedLine."""

    @property
    def sku(self) -> str: ...

    @property
    def quantity(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StockAnswer(Plain):
    """What the catalog and the SKU's stock say about one SKU."""

    sku: str
    known: bool
    active: bool
    available: int


@dataclass(frozen=True, slots=True)
class LineRefusal(Plain):
    """Why one order line cannot be served (fields map onto sales.outcomes reasons[])."""

    line_no: int
    sku: str
    code: str  # UNKNOWN_SKU / INACTIVE_SKU / INSUFFICIENT_STOCK
    message: str
    requested: int | None = None
    available: int | None = None


@dataclass(frozen=True, slots=True)
class CreditRefusal(Plain):
    """Why the customer's credit refuses the order, with 004's figures."""

    code: str  # CREDIT_HOLD / CREDIT_LIMIT_EXCEEDED
    message: str
    credit_limit: Decimal
    outstanding: Decimal
    available: Decimal | None
    order_amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderDecision(Plain):
    accepted: bool
    lines: tuple[LineRefusal, ...] = ()
    credit: CreditRefusal | None = None


def check_lines(lines: Sequence[OrderLine], stock: Mapping[str, StockAnswer]) -> tuple[LineRefusal, ...]:
    """Per-line refusals for unknown, inactive or short SKUs (line_no from 1)."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    refusals = []
    for n, line in enumerate(lines, 1):
        answer = stock.get(line.sku)
        if answer is None or not answer.known:
            refusals.append(LineRefusal(n, line.sku, UNKNOWN_SKU, f"line {n}: sku {line.sku} is unknown"))
        elif not answer.active:
            refusals.append(LineRefusal(n, line.sku, INACTIVE_SKU, f"line {n}: sku {line.sku} is not active"))
        elif wanted[line.sku] > answer.available:
            requested = wanted[line.sku]
            message = f"line {n}: sku {line.sku}: requested {requested}, available {answer.available}"
            refusals.append(LineRefusal(n, line.sku, INSUFFICIENT_STOCK, message, requested, answer.available))
    return tuple(refusals)


def _credit_refusal(check: CreditCheck) -> CreditRefusal | None:
    if check.approved:
        return None
    return CreditRefusal(
        check.reason or "CREDIT_REFUSED",
        check.message,
        check.credit_limit,
        check.outstanding,
        check.available,
        check.order_amount,
    )


def decide_order(
    lines: Sequence[OrderLine],
    payment_terms: str,
    stock: Mapping[str, StockAnswer],
    credit: CreditCheck | None = None,
) -> OrderDecision:
    """Accepted only if every line can be served and, ON_ACCOUNT, credit approves.

    PAID orders never look at credit. An ON_ACCOUNT order whose lines all pass
    must come with a credit check (ValueError otherwise: a shell bug).
    """
    refusals = check_lines(lines, stock)
    credit_refusal = None
    if payment_terms == ON_ACCOUNT:
        if credit is None:
            if not refusals:
                raise ValueError("an ON_ACCOUNT order needs a credit check")
        else:
            credit_refusal = _credit_refusal(credit)
    accepted = not refusals and credit_refusal is None
    return OrderDecision(accepted, refusals, credit_refusal)
