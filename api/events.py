"""Request bodies -> contract events (SPEC section 1), checked like `stockledger produce` checks a
file: the same schemas, the same seed 003 mapping (stockledger/mapping.py), errors naming the field
as the caller wrote it. Nothing is published unless every event of a request converts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from api.problems import Problem
from stockledger import mapping
from stockledger.jsonconv import FieldError
from stockledger.produce import Prepared, convert
from stockledger.security import id_refusal

Published = list[tuple[str, Prepared]]  # (topic, record)
ERP_TOPICS = {"catalog.update": "catalog.updates", "inventory.change": "inventory.changes",
              "inventory.stock.updated": "inventory.changes"}
TREASURY_PAYMENT = "treasury.payment.success"
TREASURY_FAILED = "treasury.payment.failed"  # recorded on the sale (payment.failed), nothing booked
TREASURY_METHOD = "MOBILE"  # a provider's payment lands in clearing (1010) until the provider settles to the bank
DEFAULT_CURRENCY = ""  # an order import that names none: the fold takes the tenant's default_currency (SPEC 8)
AS_DATA = {"data.": ""}  # the body is the event's data: name its fields as the caller wrote them


FIXED_AT = "2000-01-01T00:00:00.000+00:00"  # the time a request is mapped at for its fingerprint


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(at: datetime) -> str:
    """The `timestamp` the API gives an event that names none: when its key was first claimed, so a
    request executed again (after a crash or a failed publish) publishes the very same record."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def invalid(field: str, message: str) -> Problem:
    return Problem(400, f"{field}: {message}", field=field)


def _convert(topic: str, event: dict, rename: dict[str, str]) -> Prepared:
    try:
        return convert(topic, event)
    except FieldError as exc:
        path = exc.path
        for ours, theirs in rename.items():
            if path == ours or path.startswith(ours if ours.endswith(".") else ours + ".") \
                    or path.startswith(ours + "["):
                path = theirs + path[len(ours):]
                break
        raise invalid(path or "<body>", exc.message) from None


def _object(body: Any, what: str = "the body") -> dict:
    if not isinstance(body, dict):
        raise invalid("<body>", f"{what} must be a JSON object")
    return body


def _require(body: dict, *names: str, prefix: str = "") -> None:
    for name in names:
        if name not in body:
            raise invalid(prefix + name, "is required")


ORDER_FIELDS = frozenset({"order_id", "order_date", "customer_ref", "currency", "payment_terms", "line_items",
                          "tenant_id"})
ORDER_LINE_FIELDS = frozenset({"sku", "quantity", "unit_price", "discount_percent", "tax_percent"})
ADJUST_FIELDS = frozenset({"reference_id", "adjustments", "timestamp", "tenant_id"})
ADJUSTMENT_FIELDS = frozenset({"sku", "quantity_change", "warehouse_id"})


def _known(body: dict, fields: frozenset[str], prefix: str = "") -> None:
    """400 naming the fields the mapping would otherwise drop silently (at most ten, each cut to 64)."""
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        names = [prefix + k[:64] for k in unknown[:10]]
        raise Problem(400, f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(names)}"
                      + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""), field=names[0],
                      fields=names)


def _safe_id(body: dict, name: str, prefix: str = "") -> None:
    """An id that is later read by URL (a sale, order, customer, SKU): refused if it could read as a path."""
    value = body.get(name)
    if isinstance(value, str):
        why = id_refusal(value)
        if why is not None:
            raise invalid(prefix + name, why)


def _same_tenant(body: dict, tenant: str) -> None:
    if "tenant_id" in body and body["tenant_id"] != tenant:
        raise invalid("tenant_id", "does not match the tenant of the request")


def _ids(data: dict) -> None:
    """The ids of a POS sale or refund that are read back by URL (sale, customer, SKUs)."""
    for name in ("sale_id", "customer_ref"):
        _safe_id(data, name)
    for key in ("line_items", "lines"):
        items = data.get(key)
        if isinstance(items, list):
            for n, line in enumerate(items):
                if isinstance(line, dict):
                    _safe_id(line, "sku", f"{key}[{n}].")


# SPEC 8: the order lifecycle's doors, POST /api/v1/orders/{order_id}/ship|cancel|release: the body is the
# event's data without sale_id (the path's order id)
LIFECYCLE_FIELDS = {"order.shipped": frozenset({"shipment_id", "lines", "location_id"}),
                    "order.cancelled": frozenset({"cancellation_id", "lines", "reason"}),
                    "order.released": frozenset({"released_by"})}
LIFECYCLE_REQUIRED = {"order.shipped": ("shipment_id", "lines"), "order.cancelled": ("cancellation_id",),
                      "order.released": ("released_by",)}
LINE_FIELDS = frozenset({"sku", "quantity"})


def order_action(event_type: str, order_id: str) -> Callable[[str, Any, str, str], Published]:
    """The builder of an order.shipped / order.cancelled / order.released for the order in the path."""
    def build(tenant: str, body: Any, event_id: str, at: str) -> Published:
        body = _object(body)
        _known(body, LIFECYCLE_FIELDS[event_type])
        _require(body, *LIFECYCLE_REQUIRED[event_type])
        for name in ("shipment_id", "cancellation_id", "released_by"):
            value = body.get(name)
            if name in body and not (isinstance(value, str) and value.strip()):
                raise invalid(name, "must be a non-empty string")
        lines = body.get("lines")
        if "lines" in body and lines is not None:
            if not isinstance(lines, list) or not lines or not all(isinstance(li, dict) for li in lines):
                raise invalid("lines", "expected a non-empty array of objects")
            for n, line in enumerate(lines):
                _known(line, LINE_FIELDS, f"lines[{n}].")
                _require(line, "sku", "quantity", prefix=f"lines[{n}].")
                _safe_id(line, "sku", f"lines[{n}].")
                qty = line["quantity"]
                if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                    raise invalid(f"lines[{n}].quantity", "must be a positive integer")
        event = {"event_id": event_id, "event_type": event_type, "tenant_id": tenant, "timestamp": at,
                 "source": "api", "data": {"sale_id": order_id, **body}}
        return [("sales", _convert("sales", event, AS_DATA))]
    return build


# SPEC 9: POST /api/v1/price-lists/{price_list_id}: the body is price_list.updated's data without the list's id
# (the path's). The fold dead-letters a list that breaks its rules (streams.core.pricelists.validate_price_list)
# and answers nothing, so the door refuses here what it can tell without the fold's currency table: each
# refusal is one of validate_price_list's (tests/api/test_price_lists.py checks that they agree).
PRICE_LIST_FIELDS = frozenset({"currency", "valid_from", "valid_to", "items"})
PRICE_ITEM_FIELDS = frozenset({"sku", "unit_price", "min_quantity"})
PRICE_LIST_MAX_ITEMS = 10_000  # streams.core.pricelists.MAX_ITEMS: one list is one bounded state value


def price_list(price_list_id: str) -> Callable[[str, Any, str, str], Published]:
    """The builder of a price_list.updated for the list in the path (the whole list: it replaces the items)."""
    def build(tenant: str, body: Any, event_id: str, at: str) -> Published:
        body = _object(body)
        _known(body, PRICE_LIST_FIELDS)
        _require(body, "currency", "items")
        currency = body["currency"]
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
            raise invalid("currency", "expected an ISO 4217 code (three upper-case letters)")
        items = body["items"]
        if not isinstance(items, list) or not all(isinstance(it, dict) for it in items):
            raise invalid("items", "expected an array of objects")
        if len(items) > PRICE_LIST_MAX_ITEMS:
            raise invalid("items", f"a price list has at most {PRICE_LIST_MAX_ITEMS} items, got {len(items)}")
        for n, item in enumerate(items):
            _known(item, PRICE_ITEM_FIELDS, f"items[{n}].")
            _require(item, "sku", "unit_price", prefix=f"items[{n}].")
            _safe_id(item, "sku", f"items[{n}].")
        event = {"event_id": event_id, "event_type": "price_list.updated", "tenant_id": tenant, "timestamp": at,
                 "source": "api", "data": {"price_list_id": price_list_id, **body}}
        prepared = _convert("price.lists", event, AS_DATA)
        data = prepared.record["data"]
        if data["valid_from"] is not None and data["valid_to"] is not None and data["valid_to"] < data["valid_from"]:
            raise invalid("valid_to", "must not be before valid_from")
        seen: set[tuple[str, int]] = set()
        for n, item in enumerate(data["items"]):
            if not item["sku"].strip():
                raise invalid(f"items[{n}].sku", "must not be empty")
            if item["min_quantity"] < 1:
                raise invalid(f"items[{n}].min_quantity", "must be a whole number of at least 1")
            if item["unit_price"] < 0:
                raise invalid(f"items[{n}].unit_price", "must not be negative")
            if (item["sku"], item["min_quantity"]) in seen:
                raise invalid(f"items[{n}]", f"{item['sku']} with min_quantity {item['min_quantity']} appears twice")
            seen.add((item["sku"], item["min_quantity"]))
        return [("price.lists", prepared)]
    return build


def pos_sale(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 000's sale: the body is `sale.completed`'s data (channel POS unless it says otherwise)."""
    data = {"channel": "POS", **_object(body)}
    _ids(data)
    event = {"event_id": event_id, "event_type": "sale.completed", "tenant_id": tenant, "timestamp": at,
             "source": "pos", "data": data}
    return [("sales", _convert("sales", event, AS_DATA))]


def pos_refund(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 000's refund: the body is `refund.issued`'s data."""
    _ids(_object(body))
    event = {"event_id": event_id, "event_type": "refund.issued", "tenant_id": tenant, "timestamp": at,
             "source": "pos", "data": _object(body)}
    return [("refunds", _convert("refunds", event, AS_DATA))]


ORDER_RENAME = {"data.sale_id": "order_id", "timestamp": "order_date", "data.": ""}


def order_import(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 003's order import, mapped to `order.placed` exactly as `produce` maps it."""
    body = _object(body)
    _known(body, ORDER_FIELDS)
    _require(body, "order_id", "line_items")
    _same_tenant(body, tenant)
    if not isinstance(body["line_items"], list) or not all(isinstance(li, dict) for li in body["line_items"]):
        raise invalid("line_items", "expected an array of objects")
    for n, line in enumerate(body["line_items"]):
        _known(line, ORDER_LINE_FIELDS, f"line_items[{n}].")
        _safe_id(line, "sku", f"line_items[{n}].")
    _safe_id(body, "order_id")
    _safe_id(body, "customer_ref")
    event = mapping.order_import({**body, "order_date": body.get("order_date") or at}, tenant, DEFAULT_CURRENCY)
    event["event_id"] = event_id
    return [("sales", _convert("sales", event, ORDER_RENAME))]


def inventory_adjust(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 003's adjust: one `inventory.change` (a delta) per adjustment."""
    body = _object(body)
    _known(body, ADJUST_FIELDS)
    _require(body, "reference_id", "adjustments")
    _same_tenant(body, tenant)
    adjustments = body["adjustments"]
    if not isinstance(adjustments, list) or not adjustments:
        raise invalid("adjustments", "expected a non-empty array")
    for n, adj in enumerate(adjustments):
        if not isinstance(adj, dict):
            raise invalid(f"adjustments[{n}]", "expected an object")
        _known(adj, ADJUSTMENT_FIELDS, f"adjustments[{n}].")
        _require(adj, "sku", "quantity_change", prefix=f"adjustments[{n}].")
        _safe_id(adj, "sku", f"adjustments[{n}].")
    out = []
    for n, event in enumerate(mapping.adjust({**body, "timestamp": body.get("timestamp") or at}, tenant)):
        event["event_id"] = f"{event_id}:{n + 1}"
        rename = {"data.location_id": f"adjustments[{n}].warehouse_id", "data.reference_id": "reference_id",
                  "data.": f"adjustments[{n}]."}
        out.append(("inventory.changes", _convert("inventory.changes", event, rename)))
    return out


def _envelope(tenant: str, body: Any) -> dict:
    body = _object(body)
    _require(body, "event_id", "event_type", "data")
    if not isinstance(body["event_id"], str) or not body["event_id"].strip() or len(body["event_id"]) > 255 \
            or not body["event_id"].isprintable():
        raise invalid("event_id", "expected a non-empty string of at most 255 printable characters")
    _same_tenant(body, tenant)
    return body


def erp_webhook(tenant: str, body: Any, at: str) -> Published:
    """Seed 003's `catalog.update` and `inventory.change`, and seed 002's `inventory.stock.updated`
    (`item_id` the SKU, `stock_level` an absolute count, `warehouse_id` the location)."""
    body = _envelope(tenant, body)
    kind = body["event_type"]
    topic = ERP_TOPICS.get(kind)
    if topic is None:
        raise invalid("event_type", f"{kind!r} is not taken here (expected {', '.join(ERP_TOPICS)})")
    event = {"source": "erp", "timestamp": at, **body, "tenant_id": tenant}
    rename: dict[str, str] = {}
    if kind == "inventory.stock.updated":
        data = _object(body["data"], "data")
        _require(data, "item_id", "stock_level", prefix="data.")
        event["event_type"] = "inventory.change"
        event["data"] = {"sku": data["item_id"], "new_quantity": data["stock_level"],
                         "location_id": data.get("warehouse_id"), "reason": "COUNT"}
        rename = {"data.sku": "data.item_id", "data.new_quantity": "data.stock_level",
                  "data.location_id": "data.warehouse_id"}
    return [(topic, _convert(topic, event, rename))]


def treasury_payment(tenant: str, body: Any) -> dict:
    """Seed 001's `treasury.payment.success` or `.failed`, checked; `payment_received` makes the event."""
    body = _envelope(tenant, body)
    if body["event_type"] not in (TREASURY_PAYMENT, TREASURY_FAILED):
        raise invalid("event_type", f"{body['event_type']!r} is not taken here (expected {TREASURY_PAYMENT} or "
                                    f"{TREASURY_FAILED})")
    data = _object(body["data"], "data")
    _require(data, "payment_id", "order_id", "amount", prefix="data.")
    if body["event_type"] == TREASURY_FAILED:
        why = data.get("reason")
        if not isinstance(why, str) or not why.strip():
            raise invalid("data.reason", "expected the provider's reason, a non-empty string")
    if not isinstance(data["order_id"], str) or not data["order_id"]:
        raise invalid("data.order_id", "expected a non-empty string")
    _safe_id(data, "order_id", "data.")
    return body


def payment_received(tenant: str, body: dict, customer_ref: str, currency: str, at: str) -> Published:
    """The treasury payment as a `payment.received` (a failure: `payment.failed` with the provider's reason)
    against `INV-<order_id>` for the sale's customer."""
    data = body["data"]
    failed = body["event_type"] == TREASURY_FAILED
    event = {"event_id": body["event_id"], "event_type": "payment.failed" if failed else "payment.received",
             "tenant_id": tenant, "timestamp": body.get("timestamp") or at, "source": "treasury",
             "data": {"payment_id": data["payment_id"], "customer_ref": customer_ref,
                      "invoice_id": f"INV-{data['order_id']}", "amount": data["amount"], "currency": currency,
                      "method": data.get("method", TREASURY_METHOD), "reference": data.get("provider_reference"),
                      "failure_reason": data.get("reason") if failed else None}}
    rename = {"data.reference": "data.provider_reference", "data.invoice_id": "data.order_id",
              "data.failure_reason": "data.reason"}
    return [("payments", _convert("payments", event, rename))]
