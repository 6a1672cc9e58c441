"""Pricing: line net and tax, rounded half-up per line to the currency's minor unit.

SPEC 2: net = round(quantity x unit_price x (1 - discount_percent/100));
tax = round(net x tax_percent/100); totals are sums of the rounded lines, so
an invoice always equals the sum of what its lines show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .documents import DocumentLine
from .money import EXACT, ZERO, is_known_currency, round_money
from .pricelists import SOURCE_CATALOG, SOURCE_LINE, SOURCE_PRICE_LIST, ListPrice
from .sales import SaleLine
from .serde import Plain

__all__ = [
    "NO_PRICE",
    "UNKNOWN_CURRENCY",
    "CatalogItem",
    "PricedLine",
    "PricedSale",
    "PricingError",
    "line_net",
    "line_tax",
    "price_line",
    "price_lines",
]

NO_PRICE = "NO_PRICE"
UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class CatalogItem(Plain):
    """What pricing and order checks need of a catalog variant."""

    sku: str
    price: Decimal
    tax_rate: Decimal | None = None  # percent, from the product group
    is_active: bool = True


PricedLine = DocumentLine  # a sale line with every default resolved and its rounded amounts


@dataclass(frozen=True, slots=True)
class PricedSale(Plain):
    """Priced lines and their sums."""

    currency: str
    lines: tuple[PricedLine, ...]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class PricingError(Plain):
    """Why a sale cannot be priced (the shell sends it to the DLQ)."""

    code: str  # NO_PRICE / UNKNOWN_CURRENCY
    reason: str
    line_no: int | None = None
    sku: str | None = None


def line_net(quantity: int, unit_price: Decimal, discount_percent: Decimal, currency: str) -> Decimal:
    """round(quantity x unit_price x (100 - discount)/100), computed exactly before the one rounding."""
    mul = EXACT.multiply
    raw = EXACT.divide(mul(mul(Decimal(quantity), unit_price), EXACT.subtract(_HUNDRED, discount_percent)), _HUNDRED)
    return round_money(raw, currency)


def line_tax(net: Decimal, tax_percent: Decimal, currency: str) -> Decimal:
    """round(net x tax_percent/100): tax on the discounted, already rounded net."""
    return round_money(EXACT.divide(EXACT.multiply(net, tax_percent), _HUNDRED), currency)


def price_line(
    line_no: int,
    sku: str,
    quantity: int,
    unit_price: Decimal,
    discount_percent: Decimal,
    tax_percent: Decimal,
    currency: str,
    price_source: str | None = None,
    price_list_id: str | None = None,
) -> PricedLine:
    """One line with resolved inputs -> its rounded net, tax and total."""
    net = line_net(quantity, unit_price, discount_percent, currency)
    tax = line_tax(net, tax_percent, currency)
    return PricedLine(line_no, sku, quantity, unit_price, discount_percent, tax_percent, net, tax, net + tax,
                      price_source, price_list_id)


def price_lines(
    lines: Iterable[SaleLine | Mapping[str, Any]],
    currency: str,
    catalog_lookup: Callable[[str], CatalogItem | None],
    default_tax: Decimal = ZERO,
    list_price: Callable[[str, int], ListPrice | None] | None = None,
) -> PricedSale | PricingError:
    """Price every line: unit_price from the line, else the customer's price list (`list_price(sku,
    quantity)`: the entry that applies, see pricelists.py), else the catalog; tax_percent from
    the line, else the product's tax_rate, else the tenant default; discount 0 if absent.
    Each priced line names its price_source (LINE / PRICE_LIST / CATALOG) and list.

    A line with no unit_price whose SKU the catalog does not know cannot be
    priced: PricingError NO_PRICE naming the sku.
    """
    if not is_known_currency(currency):
        return PricingError(UNKNOWN_CURRENCY, f"unknown currency {currency!r}")
    priced: list[PricedLine] = []
    for n, raw in enumerate(lines, 1):
        line = raw if isinstance(raw, SaleLine) else SaleLine.from_event(raw)
        item = catalog_lookup(line.sku)
        unit_price = line.unit_price
        source, list_id = SOURCE_LINE, None
        entry = None if unit_price is not None or list_price is None else list_price(line.sku, line.quantity)
        if entry is not None:
            unit_price, source, list_id = entry.unit_price, SOURCE_PRICE_LIST, entry.price_list_id
        elif unit_price is None:
            source = SOURCE_CATALOG
            if item is None:
                return PricingError(
                    NO_PRICE,
                    f"line {n}: sku {line.sku!r} has no unit_price and is not in the catalog",
                    n,
                    line.sku,
                )
            unit_price = item.price
        if line.tax_percent is not None:
            tax_percent = line.tax_percent
        elif item is not None and item.tax_rate is not None:
            tax_percent = item.tax_rate
        else:
            tax_percent = default_tax
        discount = line.discount_percent if line.discount_percent is not None else ZERO
        priced.append(price_line(n, line.sku, line.quantity, unit_price, discount, tax_percent, currency, source,
                                 list_id))
    net_total = round_money(sum((p.net for p in priced), ZERO), currency)  # exact; only fixes the exponent
    tax_total = round_money(sum((p.tax for p in priced), ZERO), currency)
    return PricedSale(currency, tuple(priced), net_total, tax_total, net_total + tax_total)
