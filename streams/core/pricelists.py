"""Price lists (SPEC 9): the customer's list, quantity breaks, validity windows, discount limits.

A `price_list.updated` event carries a whole list (price_list_id, currency, valid_from?, valid_to?,
items[] {sku, unit_price, min_quantity}); the fold keeps the newest version per list, one bounded
value (at most MAX_ITEMS items, checked at admission). A line without unit_price is priced, in this
order, by:
1. the customer's price list (customer.credit's price_list_id), when that list exists, is in the
   sale's currency and is valid at the sale event's timestamp (valid_from <= ts <= valid_to, both
   ends included, a missing end open): its entry for the SKU with the largest min_quantity not above
   the line's quantity;
2. else the catalog price.
A line that carries its own unit_price keeps it (the producer's price is a fact: LINE).

Discounts: with a maximum (a tenant setting, FoldConfig.max_discount_percent), a line whose
discount_percent is above it is DISCOUNT_NOT_ALLOWED: an order is refused, a POS sale (a fact) is
booked with the reason on its ACCEPTED outcome as a warning.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .money import is_known_currency, is_whole_minor, to_decimal
from .serde import Plain

__all__ = [
    "DISCOUNT_NOT_ALLOWED",
    "MAX_ITEMS",
    "SOURCE_LINE",
    "SOURCE_PRICE_LIST",
    "SOURCE_CATALOG",
    "PriceListItem",
    "PriceList",
    "ListPrice",
    "DiscountBreach",
    "discount_breaches",
    "price_list_key",
    "validate_price_list",
]

DISCOUNT_NOT_ALLOWED = "DISCOUNT_NOT_ALLOWED"
MAX_ITEMS = 10_000  # entries per list: keeps one list one bounded state value
SOURCE_LINE, SOURCE_PRICE_LIST, SOURCE_CATALOG = "LINE", "PRICE_LIST", "CATALOG"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLI = timedelta(milliseconds=1)


def millis(value: datetime | int | None) -> int | None:
    """A decoded Avro timestamp (datetime, or epoch millis) -> epoch millis."""
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MILLI


def price_list_key(tenant: str, price_list_id: str) -> str:
    """The list's key in the fold's `prices` table."""
    return f"{tenant}:{price_list_id}"


@dataclass(frozen=True, slots=True)
class PriceListItem(Plain):
    sku: str
    unit_price: Decimal
    min_quantity: int = 1


@dataclass(frozen=True, slots=True)
class ListPrice(Plain):
    """The entry that priced a line."""

    price_list_id: str
    unit_price: Decimal
    min_quantity: int


@dataclass(frozen=True, slots=True)
class PriceList(Plain):
    """The newest version of a list (the `prices` table)."""

    tenant_id: str
    price_list_id: str
    currency: str
    items: tuple[PriceListItem, ...]
    updated_at: int  # the event's timestamp, epoch millis: an older update arriving late does not win
    event_id: str
    valid_from: int | None = None
    valid_to: int | None = None

    @classmethod
    def from_event(cls, tenant: str, data: Mapping[str, Any], ts: int, event_id: str) -> PriceList:
        items = tuple(PriceListItem(i["sku"], to_decimal(i["unit_price"]), int(i.get("min_quantity") or 1))
                      for i in data.get("items") or ())
        return cls(tenant, data["price_list_id"], data["currency"], items, ts, event_id,
                   millis(data.get("valid_from")), millis(data.get("valid_to")))

    def valid_at(self, ts: int) -> bool:
        """valid_from <= ts <= valid_to (both ends included; a missing end is open)."""
        return (self.valid_from is None or self.valid_from <= ts) and (self.valid_to is None or ts <= self.valid_to)

    def price_for(self, sku: str, quantity: int, currency: str, ts: int) -> ListPrice | None:
        """The entry for `sku` with the largest min_quantity <= quantity, if this list applies to a
        sale in `currency` at `ts`; None when it does not (the catalog prices the line)."""
        if currency != self.currency or not self.valid_at(ts):
            return None
        best: PriceListItem | None = None
        for item in self.items:
            if item.sku == sku and item.min_quantity <= quantity and (best is None
                                                                      or item.min_quantity > best.min_quantity):
                best = item
        return None if best is None else ListPrice(self.price_list_id, best.unit_price, best.min_quantity)


@dataclass(frozen=True, slots=True)
class DiscountBreach(Plain):
    line_no: int
    sku: str
    discount_percent: Decimal
    maximum: Decimal

    @property
    def message(self) -> str:
        return (f"line {self.line_no}: discount {_percent(self.discount_percent)}% on {self.sku} is above the "
                f"maximum {_percent(self.maximum)}%")


def _percent(value: Decimal) -> str:
    """100.0000 -> 100, 20.50 -> 20.5 (a percent as people write it)."""
    return format(value.normalize(), "f")


def discount_breaches(lines: Iterable[Any], maximum: Decimal | None) -> list[DiscountBreach]:
    """Lines (SaleLine-like: sku, discount_percent) whose discount is above `maximum` (None: no limit)."""
    if maximum is None:
        return []
    out = []
    for n, line in enumerate(lines, 1):
        d = line.discount_percent
        if d is not None and d > maximum:
            out.append(DiscountBreach(n, line.sku, d, maximum))
    return out


def validate_price_list(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a price_list.updated `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    plist = data.get("price_list_id")
    if not isinstance(plist, str) or not plist.strip():
        reasons.append("price_list_id is missing or empty")
    currency = data.get("currency")
    if not is_known_currency(currency):
        reasons.append(f"unknown currency {currency!r}")
    start, end = millis(data.get("valid_from")), millis(data.get("valid_to"))
    if start is not None and end is not None and end < start:
        reasons.append("valid_to must not be before valid_from")
    items = data.get("items") or []
    if len(items) > MAX_ITEMS:
        reasons.append(f"a price list has at most {MAX_ITEMS} items, got {len(items)}")
        return reasons
    seen: set[tuple[str, int]] = set()
    for n, item in enumerate(items):
        sku, qty = item.get("sku"), item.get("min_quantity", 1)
        if not isinstance(sku, str) or not sku.strip():
            reasons.append(f"items[{n}].sku is missing or empty")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
            reasons.append(f"items[{n}].min_quantity must be a whole number of at least 1, got {qty!r}")
        elif (sku, qty) in seen:
            reasons.append(f"items[{n}]: {sku} with min_quantity {qty} appears twice")
        else:
            seen.add((sku, qty))
        try:
            price = to_decimal(item.get("unit_price"))
        except (TypeError, ValueError):
            reasons.append(f"items[{n}].unit_price must be a decimal number, got {item.get('unit_price')!r}")
            continue
        if price < 0:
            reasons.append(f"items[{n}].unit_price must not be negative, got {price}")
        elif is_known_currency(currency) and not is_whole_minor(price, currency):
            reasons.append(f"items[{n}].unit_price {price} has more decimals than {currency} allows")
    return reasons
