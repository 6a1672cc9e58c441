"""The line checks of a web/ERP `order.placed` (all or nothing).

The fold gathers the answers (catalog and stock per SKU) from the tenant's
state and this module gives every line's reason for the sales.outcomes
record; the fold then prices the order and, ON_ACCOUNT, checks the credit
(`credit.check_order`), all in one decision.

Choices where SPEC is silent:
- Lines are checked in order: UNKNOWN_SKU, else INACTIVE_SKU, else
  INSUFFICIENT_STOCK. Several lines of one SKU draw on one stock: `requested`
  is the SKU's total over the order, and each of its lines is refused.
- A SKU with no stock answer counts as unknown.
- With line refusals the credit is not checked (the order cannot be priced
  reliably: an unknown SKU may have no price), so only the lines are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .serde import Plain

__all__ = [
    "UNKNOWN_SKU",
    "INACTIVE_SKU",
    "INSUFFICIENT_STOCK",
    "StockAnswer",
    "LineRefusal",
    "check_lines",
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
