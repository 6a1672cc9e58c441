"""Request bodies -> contract events (SPEC section 1), checked like `stockledger produce` checks a
file: the same schemas, the same seed 003 mapping (stockledger/mapping.py), errors naming the field
as the caller wrote it. Nothing is published unless every event of a request converts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.problems import Problem
from stockledger import mapping
from stockledger.jsonconv import FieldError
from stockledger.produce import Prepared, convert

Published = list[tuple[str, Prepared]]  # (topic, record)
ERP_TOPICS = {"catalog.update": "catalog.updates", "inventory.change": "inventory.changes",
              "inventory.stock.updated": "inventory.changes"}
TREASURY_PAYMENT = "treasury.payment.success"
DEFAULT_CURRENCY = "USD"  # of an order import that names none, as `stockledger produce` assumes
AS_DATA = {"data.": ""}  # the body is the event's data: name its fields as the caller wrote them


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


def _same_tenant(body: dict, tenant: str) -> None:
    if "tenant_id" in body and body["tenant_id"] != tenant:
        raise invalid("tenant_id", "does not match the tenant of the request")


def pos_sale(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 000's sale: the body is `sale.completed`'s data (channel POS unless it says otherwise)."""
    data = {"channel": "POS", **_object(body)}
    event = {"event_id": event_id, "event_type": "sale.completed", "tenant_id": tenant, "timestamp": at,
             "source": "pos", "data": data}
    return [("sales", _convert("sales", event, AS_DATA))]


def pos_refund(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 000's refund: the body is `refund.issued`'s data."""
    event = {"event_id": event_id, "event_type": "refund.issued", "tenant_id": tenant, "timestamp": at,
             "source": "pos", "data": _object(body)}
    return [("refunds", _convert("refunds", event, AS_DATA))]


ORDER_RENAME = {"data.sale_id": "order_id", "timestamp": "order_date", "data.": ""}


def order_import(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 003's order import, mapped to `order.placed` exactly as `produce` maps it."""
    body = _object(body)
    _require(body, "order_id", "line_items")
    _same_tenant(body, tenant)
    if not isinstance(body["line_items"], list) or not all(isinstance(li, dict) for li in body["line_items"]):
        raise invalid("line_items", "expected an array of objects")
    event = mapping.order_import({**body, "order_date": body.get("order_date") or at}, tenant, DEFAULT_CURRENCY)
    event["event_id"] = event_id
    return [("sales", _convert("sales", event, ORDER_RENAME))]


def inventory_adjust(tenant: str, body: Any, event_id: str, at: str) -> Published:
    """Seed 003's adjust: one `inventory.change` (a delta) per adjustment."""
    body = _object(body)
    _require(body, "reference_id", "adjustments")
    _same_tenant(body, tenant)
    adjustments = body["adjustments"]
    if not isinstance(adjustments, list) or not adjustments:
        raise invalid("adjustments", "expected a non-empty array")
    for n, adj in enumerate(adjustments):
        if not isinstance(adj, dict):
            raise invalid(f"adjustments[{n}]", "expected an object")
        _require(adj, "sku", "quantity_change", prefix=f"adjustments[{n}].")
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
    if not isinstance(body["event_id"], str) or not body["event_id"].strip() or len(body["event_id"]) > 255:
        raise invalid("event_id", "expected a non-empty string of at most 255 characters")
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
    """Seed 001's `treasury.payment.success`, checked; `payment_received` makes the event."""
    body = _envelope(tenant, body)
    if body["event_type"] != TREASURY_PAYMENT:
        raise invalid("event_type", f"{body['event_type']!r} is not taken here (expected {TREASURY_PAYMENT})")
    data = _object(body["data"], "data")
    _require(data, "payment_id", "order_id", "amount", prefix="data.")
    if not isinstance(data["order_id"], str) or not data["order_id"]:
        raise invalid("data.order_id", "expected a non-empty string")
    return body


def payment_received(tenant: str, body: dict, customer_ref: str, currency: str, at: str) -> Published:
    """The treasury payment as a `payment.received` against `INV-<order_id>` for the sale's customer."""
    data = body["data"]
    event = {"event_id": body["event_id"], "event_type": "payment.received", "tenant_id": tenant,
             "timestamp": body.get("timestamp") or at, "source": "treasury",
             "data": {"payment_id": data["payment_id"], "customer_ref": customer_ref,
                      "invoice_id": f"INV-{data['order_id']}", "amount": data["amount"], "currency": currency,
                      "method": data.get("method", "BANK"), "reference": data.get("provider_reference")}}
    rename = {"data.reference": "data.provider_reference", "data.invoice_id": "data.order_id"}
    return [("payments", _convert("payments", event, rename))]
