"""Bounds (SPEC 2, "Bounds"): what a quantity and a money amount may be, checked before and during the fold.

- A quantity (a line's quantity, quantity_change, new_quantity, a catalog variant's stock_quantity) is an
  integer with |q| <= 1,000,000,000 per line or event: else QUANTITY_OUT_OF_RANGE.
- A money amount (prices, percents, payments, amounts, credit limits) fits decimal(18,4): at most 14
  digits before the point and 4 after: else AMOUNT_OUT_OF_RANGE.
- A SKU's on_hand stays within +-10^12, and every amount the fold writes or sends (a document, a journal
  line, a customer's balance) fits decimal(18,4): an event that would break that is refused whole.

- A catalog.update's product group is a bounded value (the fold keeps it whole and pushes it, issue 20): at most
  MAX_VARIANTS variants, MAX_MEDIA media entries per variant (each URL at most MAX_URL_CHARS characters),
  MAX_ATTRIBUTES attributes per variant (names and values at most MAX_TEXT_CHARS), a description of at most
  MAX_DESCRIPTION_CHARS characters, at most MAX_CATEGORIES categories of at most MAX_TEXT_CHARS each: else
  CATALOG_OUT_OF_RANGE. (003 only bounds product_group_id, 50 characters; these are ours.)

`event_bounds` is the check of an incoming event (admit, `stockledger produce`, the HTTP API through
`stockledger.produce.convert`); `outcome_bounds` the fold's check of what one event would write and send.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "QUANTITY_OUT_OF_RANGE",
    "AMOUNT_OUT_OF_RANGE",
    "MAX_QUANTITY",
    "MAX_ON_HAND",
    "CATALOG_OUT_OF_RANGE",
    "MAX_VARIANTS",
    "MAX_MEDIA",
    "MAX_URL_CHARS",
    "MAX_ATTRIBUTES",
    "MAX_TEXT_CHARS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_CATEGORIES",
    "BoundsError",
    "quantity_fits",
    "amount_fits",
    "event_bounds",
    "catalog_bounds",
    "outcome_bounds",
]

QUANTITY_OUT_OF_RANGE, AMOUNT_OUT_OF_RANGE = "QUANTITY_OUT_OF_RANGE", "AMOUNT_OUT_OF_RANGE"
MAX_QUANTITY = 1_000_000_000  # per line or event
MAX_ON_HAND = 10 ** 12  # a SKU's on_hand, either sign
CATALOG_OUT_OF_RANGE = "CATALOG_OUT_OF_RANGE"
MAX_VARIANTS = 500  # per product group
MAX_MEDIA = 10  # per variant
MAX_URL_CHARS = 2048  # per media URL
MAX_ATTRIBUTES = 50  # per variant
MAX_TEXT_CHARS = 200  # an attribute's name or value, a category
MAX_DESCRIPTION_CHARS = 20_000  # the group's description (HTML as sent)
MAX_CATEGORIES = 10  # levels of category_hierarchy
_AMOUNT_LIMIT = Decimal(10) ** 14  # decimal(18,4): 14 digits before the point
_AMOUNT_EXPONENT = -4  # and 4 after it
_QUANTUM = Decimal(1).scaleb(_AMOUNT_EXPONENT)


class BoundsError(ValueError):
    """A value beyond the SPEC's bounds: `code` (QUANTITY_OUT_OF_RANGE / AMOUNT_OUT_OF_RANGE), the field's path."""

    def __init__(self, code: str, field: str, message: str):
        super().__init__(f"{code}: {field}: {message}")
        self.code, self.field, self.message = code, field, message


def quantity_fits(value: Any, limit: int = MAX_QUANTITY) -> bool:
    """An int (not a bool) within +-limit. A value that is not an int at all is the validators' business."""
    if value.__class__ is int:
        return -limit <= value <= limit
    return not (isinstance(value, int) and not isinstance(value, bool)) or -limit <= value <= limit


def amount_fits(value: Any) -> bool:
    """A finite Decimal (or int) that fits decimal(18,4); a value that is not a number is the validators'."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_AMOUNT_LIMIT < value < _AMOUNT_LIMIT
    if not isinstance(value, Decimal):
        return True
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    # digits before the point: adjusted() + 1 (1234.5 -> 3 + 1 = 4); digits after: -exponent once
    # trailing zeros are dropped (1.23400 is 1.234); no context rounding involved
    if value.adjusted() >= 14:
        return False
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= _AMOUNT_EXPONENT:
        return True
    return value.quantize(_QUANTUM) == value  # at most 18 digits here: exact in the default context


# event_type -> paths of its quantities and amounts in `data`; "*" walks a list
_Q, _A = QUANTITY_OUT_OF_RANGE, AMOUNT_OUT_OF_RANGE
_SALE = ((("line_items", "*", "quantity"), _Q), (("line_items", "*", "unit_price"), _A),
         (("line_items", "*", "discount_percent"), _A), (("line_items", "*", "tax_percent"), _A),
         (("payments", "*", "amount"), _A))
_FIELDS: Mapping[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "inventory.change": ((("new_quantity",), _Q), (("quantity_change",), _Q)),
    "catalog.update": ((("tax_rate",), _A), (("variants", "*", "price"), _A), (("variants", "*", "mrp"), _A),
                       (("variants", "*", "stock_quantity"), _Q)),
    "customer.credit": ((("credit_limit",), _A),),
    "payment.received": ((("amount",), _A),),
    "payment.failed": ((("amount",), _A),),
    "sale.completed": _SALE,
    "order.placed": _SALE,
    "refund.issued": ((("lines", "*", "quantity"), _Q),),
    "price_list.updated": ((("items", "*", "unit_price"), _A), (("items", "*", "min_quantity"), _Q)),
    "order.shipped": ((("lines", "*", "quantity"), _Q),),
    "order.cancelled": ((("lines", "*", "quantity"), _Q),),
    "tenant.configured": ((("default_tax_percent",), _A), (("max_discount_percent",), _A)),
}


def _walk(node: Any, path: tuple[str, ...], where: str) -> Iterable[tuple[str, Any]]:
    if not path:
        yield where, node
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                yield from _walk(item, rest, f"{where}[{i}]")
        return
    if isinstance(node, Mapping) and head in node:
        yield from _walk(node[head], rest, f"{where}.{head}" if where else head)


def _values(node: Any, path: tuple[str, ...]) -> list[Any]:
    """The values `_walk` reaches, in its order, without their paths (the check's fast path)."""
    nodes = [node]
    for head in path:
        found: list[Any] = []
        if head == "*":
            for n in nodes:
                if isinstance(n, (list, tuple)):
                    found.extend(n)
        else:
            for n in nodes:
                if isinstance(n, Mapping) and head in n:
                    found.append(n[head])
        nodes = found
    return nodes


def _too_long(value: Any, limit: int) -> bool:
    return isinstance(value, str) and len(value) > limit


def _too_many(value: Any, limit: int) -> bool:
    return isinstance(value, (list, tuple, Mapping)) and len(value) > limit


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, Mapping)) else 0


def catalog_bounds(data: Any) -> BoundsError | None:
    """The first part of a catalog.update's group beyond the catalog bounds (CATALOG_OUT_OF_RANGE), or None.
    Values of the wrong type are the validators' business (never an exception here)."""
    if not isinstance(data, Mapping):
        return None
    code = CATALOG_OUT_OF_RANGE
    if _too_long(data.get("description"), MAX_DESCRIPTION_CHARS):
        return BoundsError(code, "data.description", f"{_size(data['description']):,} characters; at most "
                                                     f"{MAX_DESCRIPTION_CHARS:,}")
    categories = data.get("category_hierarchy")
    if _too_many(categories, MAX_CATEGORIES):
        return BoundsError(code, "data.category_hierarchy", f"{_size(categories)} categories; at most {MAX_CATEGORIES}")
    if isinstance(categories, (list, tuple)):
        for i, c in enumerate(categories):
            if _too_long(c, MAX_TEXT_CHARS):
                return BoundsError(code, f"data.category_hierarchy[{i}]", f"{len(c)} characters; at most "
                                                                          f"{MAX_TEXT_CHARS}")
    variants = data.get("variants")
    if _too_many(variants, MAX_VARIANTS):
        return BoundsError(code, "data.variants", f"{_size(variants)} variants; at most {MAX_VARIANTS}")
    for n, v in enumerate(variants if isinstance(variants, (list, tuple)) else ()):
        if not isinstance(v, Mapping):
            continue
        media, attributes = v.get("media"), v.get("attributes")
        if _too_many(media, MAX_MEDIA):
            return BoundsError(code, f"data.variants[{n}].media", f"{_size(media)} entries; at most {MAX_MEDIA}")
        for i, m in enumerate(media if isinstance(media, (list, tuple)) else ()):
            if isinstance(m, Mapping) and _too_long(m.get("url"), MAX_URL_CHARS):
                return BoundsError(code, f"data.variants[{n}].media[{i}].url",
                                   f"{len(m['url']):,} characters; at most {MAX_URL_CHARS:,}")
        if _too_many(attributes, MAX_ATTRIBUTES):
            return BoundsError(code, f"data.variants[{n}].attributes",
                               f"{_size(attributes)} attributes; at most {MAX_ATTRIBUTES}")
        if isinstance(attributes, Mapping):
            for name, value in attributes.items():
                if _too_long(name, MAX_TEXT_CHARS) or _too_long(value, MAX_TEXT_CHARS):
                    return BoundsError(code, f"data.variants[{n}].attributes[{str(name)[:40]!r}]",
                                       f"a name or value of more than {MAX_TEXT_CHARS} characters")
    return None


def event_bounds(event_type: Any, data: Any) -> BoundsError | None:
    """The first quantity or amount of an event's `data` beyond its bound (field path as `data.<...>`), then
    (catalog.update) the first part of its group beyond the catalog bounds."""
    if event_type == "catalog.update":
        beyond = _number_bounds(event_type, data)
        return beyond if beyond is not None else catalog_bounds(data)
    return _number_bounds(event_type, data)


def _all_fit(path: tuple[str, ...], fits: Callable[[Any], bool]) -> Callable[[Mapping], bool]:
    """Whether every value `_walk` reaches along `path` in a record's data fits: straight code for the two
    shapes of `_FIELDS` (`(name,)` and `(list, "*", name)`), `_values` for any other. An absent key reads as
    None, which fits either bound (a value that is not a number is the validators' business)."""
    if len(path) == 1:
        name = path[0]
        return lambda data: fits(data.get(name))
    if len(path) == 3 and path[1] == "*" and "*" not in (path[0], path[2]):
        outer, name = path[0], path[2]

        def check(data: Mapping) -> bool:
            items = data.get(outer)
            if not isinstance(items, (list, tuple)):
                return True
            for item in items:
                if isinstance(item, Mapping) and not fits(item.get(name)):
                    return False
            return True
        return check
    return lambda data: all(fits(value) for value in _values(data, path))


# event_type -> (path, code, whether all its values fit) for each of its quantities and amounts
_CHECKS = {event_type: tuple((path, code, _all_fit(path, quantity_fits if code == _Q else amount_fits))
                             for path, code in fields) for event_type, fields in _FIELDS.items()}


def _number_bounds(event_type: Any, data: Any) -> BoundsError | None:
    checks = _CHECKS.get(event_type) if isinstance(event_type, str) else None
    if checks is None or not isinstance(data, Mapping):
        return None
    for path, code, all_fit in checks:
        if all_fit(data):
            continue
        for where, value in _walk(data, path, "data"):  # one is beyond: the first, with its path
            if code == _Q and not quantity_fits(value):
                return BoundsError(code, where, f"{value} is beyond +-{MAX_QUANTITY:,}")
            if code == _A and not amount_fits(value):
                return BoundsError(code, where, f"{value} does not fit decimal(18,4)")
    return None


# -- the fold's check -------------------------------------------------------------------------------
_CREDIT_AMOUNTS = ("credit_limit", "credit_balance")


def outcome_bounds(writes: Mapping[tuple[str, str], Any], outputs: Iterable[Any]) -> BoundsError | None:
    """What one event would write (`(table, key) -> JSON-plain value`) and send (Emit-like objects with
    `.topic` and `.value`, an Avro datum) checked against the bounds: on_hand of every stock write, the
    amounts of every credit write, and every Decimal of every output datum."""
    for (table, key), value in writes.items():
        if not isinstance(value, Mapping):
            continue
        if table == "stock":
            on_hand = value.get("on_hand")
            if not quantity_fits(on_hand, MAX_ON_HAND):
                return BoundsError(QUANTITY_OUT_OF_RANGE, f"on_hand of {value.get('sku', key)}",
                                   f"{on_hand} is beyond +-10^12")
        elif table == "credit":
            for name in _CREDIT_AMOUNTS:
                raw = value.get(name)
                if raw is not None and not amount_fits(Decimal(raw)):
                    return BoundsError(AMOUNT_OUT_OF_RANGE, f"{name} of customer {value.get('customer_ref')}",
                                       f"{raw} does not fit decimal(18,4)")
            for due in value.get("due") or ():
                if not amount_fits(Decimal(due["amount"])):
                    return BoundsError(AMOUNT_OUT_OF_RANGE, f"outstanding of customer {value.get('customer_ref')}",
                                       f"{due['amount']} {due.get('currency')} does not fit decimal(18,4)")
    for out in outputs:
        value = getattr(out, "value", None)
        if value is None or getattr(out, "topic", None) not in _AMOUNT_TOPICS or not _has_big_amount(value):
            continue
        where, amount = _first_big_amount(value, "")
        return BoundsError(AMOUNT_OUT_OF_RANGE, f"{out.topic} {where}", f"{amount} does not fit decimal(18,4)")
    return None


# The outputs that carry amounts (stock.levels and inventory.alerts carry none). Should another appear
# unlisted, an amount beyond the schema's precision still fails its encoding: INTERNAL_ERROR, never a stall.
_AMOUNT_TOPICS = frozenset({"ledger.invoices", "ledger.credit_notes", "ledger.payments", "ledger.journal",
                            "sales.outcomes", "catalog.groups"})

# Outputs: magnitude only, on the hot path. Their amounts are rounded to a currency's minor unit or come
# from inputs already checked; an amount of more than 4 decimals would fail its encoding (INTERNAL_ERROR).
_NEG_LIMIT = -_AMOUNT_LIMIT


def _has_big_amount(node: Any) -> bool:
    todo = [node]
    pop, push = todo.pop, todo.append
    while todo:
        item = pop()
        values = item.values() if item.__class__ is dict else item
        for v in values:
            cls = v.__class__
            if cls is Decimal:
                if not (_NEG_LIMIT < v < _AMOUNT_LIMIT):
                    return True
            elif cls is dict or cls is list:
                push(v)
    return False


def _first_big_amount(node: Any, where: str) -> tuple[str, Decimal]:
    """Where the amount `_has_big_amount` found is (only run once one is)."""
    items = node.items() if node.__class__ is dict else enumerate(node)
    for k, v in items:
        path = (f"{where}.{k}" if where else str(k)) if node.__class__ is dict else f"{where}[{k}]"
        if v.__class__ is Decimal and not (_NEG_LIMIT < v < _AMOUNT_LIMIT):
            return path, v
        if v.__class__ in (dict, list) and _has_big_amount(v):
            return _first_big_amount(v, path)
    raise AssertionError("no amount beyond the bound")  # pragma: no cover
