"""Builders for fold tests: events as the codec decodes them, and a check that outputs fit their schemas.

An event is written as JSON-like data, converted and encoded with its topic's schema and decoded
again, so the fold sees exactly what stockledger/codec.py gives it (tz-aware datetimes, Decimal money
at scale 4, absent optionals as None).
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import fastavro
from fastavro.validation import validate

from stockledger.codec import local_schema
from stockledger.jsonconv import compile_from_json, to_json
from stockledger.topics import spec
from streams.core.fold import DeadLetter, Emit, Input

TOPIC_OF = {
    "catalog.update": "catalog.updates", "inventory.change": "inventory.changes", "sale.completed": "sales",
    "order.placed": "sales", "refund.issued": "refunds", "payment.received": "payments",
    "customer.credit": "customers", "price_list.updated": "price.lists", "payment.failed": "payments",
    "tenant.configured": "tenant.settings", "order.shipped": "sales", "order.cancelled": "sales",
    "order.released": "sales",
}
_KEY_FIELD = {"catalog.updates": "product_group_id", "inventory.changes": "sku", "sales": "sale_id",
              "refunds": "sale_id", "payments": "customer_ref", "customers": "customer_ref",
              "price.lists": "price_list_id"}
_CONVERTERS: dict[str, Any] = {}
_offsets: dict[str, int] = {}


def _converter(stem: str) -> Any:
    conv = _CONVERTERS.get(stem)
    if conv is None:
        conv = _CONVERTERS[stem] = compile_from_json(local_schema(stem))
    return conv


def event(event_type: str, data: dict, *, event_id: str, ts: int = 1_000, tenant: str = "t1") -> Input:
    topic = TOPIC_OF[event_type]
    stem = spec(topic).schema
    record = {"event_id": event_id, "event_type": event_type, "tenant_id": tenant, "timestamp": ts,
              "source": "test", "data": data}
    datum = _converter(stem)(to_json(record), "")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, local_schema(stem), datum)
    value = buf.getvalue()
    decoded = fastavro.schemaless_reader(io.BytesIO(value), local_schema(stem), None)
    offset = _offsets.get(topic, 0)
    _offsets[topic] = offset + 1
    key = (f"{tenant}:{data[_KEY_FIELD[topic]]}" if topic in _KEY_FIELD else tenant).encode()
    return Input(topic, 0, offset, key, value, decoded)


# -- event shorthands -----------------------------------------------------------------------------
def count(sku: str, qty: int, *, event_id: str, ts: int = 1_000, reason: str | None = None,
          location: str | None = None, tenant: str = "t1") -> Input:
    return event("inventory.change", {"sku": sku, "new_quantity": qty, "reason": reason, "location_id": location},
                 event_id=event_id, ts=ts, tenant=tenant)


def delta(sku: str, qty: int, *, event_id: str, ts: int = 1_000, reason: str | None = None,
          location: str | None = None, tenant: str = "t1") -> Input:
    return event("inventory.change", {"sku": sku, "quantity_change": qty, "reason": reason,
                                      "location_id": location}, event_id=event_id, ts=ts, tenant=tenant)


def catalog(group: str, variants: list[dict], *, event_id: str, ts: int = 1_000, is_active: bool = True,
            tax_rate: str | None = None, tenant: str = "t1") -> Input:
    full = [{"display_name": v["sku"], "attributes": {}, "media": [], **v} for v in variants]
    return event("catalog.update", {"product_group_id": group, "group_name": group, "is_active": is_active,
                                    "tax_rate": tax_rate, "category_hierarchy": [], "variants": full},
                 event_id=event_id, ts=ts, tenant=tenant)


def sale(sale_id: str, lines: list[dict], *, event_id: str, ts: int = 2_000, order: bool = False,
         terms: str = "PAID", customer: str | None = None, payments: list[dict] | None = None,
         currency: str = "KES", location: str | None = None, tenant: str = "t1") -> Input:
    data = {"sale_id": sale_id, "channel": "WEB" if order else "POS", "customer_ref": customer,
            "currency": currency, "location_id": location, "payment_terms": terms, "line_items": lines,
            "payments": payments}
    return event("order.placed" if order else "sale.completed", data, event_id=event_id, ts=ts, tenant=tenant)


def refund(refund_id: str, sale_id: str, lines: list[dict], *, event_id: str, ts: int = 3_000,
           restock: bool = True, method: str = "CASH", tenant: str = "t1") -> Input:
    return event("refund.issued", {"refund_id": refund_id, "sale_id": sale_id, "lines": lines, "restock": restock,
                                   "refund_method": method}, event_id=event_id, ts=ts, tenant=tenant)


def payment(payment_id: str, customer: str, amount: str, *, event_id: str, ts: int = 3_000,
            invoice: str | None = None, currency: str = "KES", method: str = "BANK", tenant: str = "t1") -> Input:
    return event("payment.received", {"payment_id": payment_id, "customer_ref": customer, "invoice_id": invoice,
                                      "amount": amount, "currency": currency, "method": method},
                 event_id=event_id, ts=ts, tenant=tenant)


def terms(customer: str, limit: str, on_hold: bool = False, *, event_id: str, ts: int = 500,
          tenant: str = "t1", days: int | None = None, price_list: str | None = None) -> Input:
    data: dict[str, Any] = {"customer_ref": customer, "credit_limit": limit, "on_hold": on_hold}
    if days is not None:
        data["payment_terms_days"] = days
    if price_list is not None:
        data["price_list_id"] = price_list
    return event("customer.credit", data, event_id=event_id, ts=ts, tenant=tenant)


def price_list(list_id: str, items: list[dict], *, event_id: str, ts: int = 600, currency: str = "KES",
               valid_from: int | None = None, valid_to: int | None = None, tenant: str = "t1") -> Input:
    """A price_list.updated; items as {sku, unit_price, min_quantity?}."""
    data = {"price_list_id": list_id, "currency": currency, "valid_from": valid_from, "valid_to": valid_to,
            "items": [{"min_quantity": 1, **i} for i in items]}
    return event("price_list.updated", data, event_id=event_id, ts=ts, tenant=tenant)


def ship(sale_id: str, shipment_id: str, lines: list[dict], *, event_id: str, ts: int = 2_500,
         location: str | None = None, tenant: str = "t1") -> Input:
    return event("order.shipped", {"sale_id": sale_id, "shipment_id": shipment_id, "lines": lines,
                                   "location_id": location}, event_id=event_id, ts=ts, tenant=tenant)


def cancel(sale_id: str, cancellation_id: str, lines: list[dict] | None = None, *, event_id: str, ts: int = 2_600,
           reason: str | None = None, tenant: str = "t1") -> Input:
    return event("order.cancelled", {"sale_id": sale_id, "cancellation_id": cancellation_id, "lines": lines,
                                     "reason": reason}, event_id=event_id, ts=ts, tenant=tenant)


def release(sale_id: str, *, event_id: str, ts: int = 2_700, by: str = "credit-desk", tenant: str = "t1") -> Input:
    return event("order.released", {"sale_id": sale_id, "released_by": by}, event_id=event_id, ts=ts, tenant=tenant)


def configure(*, event_id: str, ts: int = 100, tenant: str = "t1", **settings: Any) -> Input:
    """tenant.configured with the given settings (order_fulfilment="RESERVE", credit_policy="HOLD", ...)."""
    return event("tenant.configured", settings, event_id=event_id, ts=ts, tenant=tenant)


# -- output checks --------------------------------------------------------------------------------
def check_outputs(outputs: list[Emit | DeadLetter]) -> None:
    """Every Emit is a datum of its topic's schema (no stray field, right types); Decimals fit scale 4."""
    for out in outputs:
        if isinstance(out, DeadLetter):
            assert out.stage in ("rule", "idempotency")
            assert out.error.split(":")[0].isupper()
            continue
        schema = local_schema(spec(out.topic).schema)
        _converter(spec(out.topic).schema)(to_json(out.value), "")  # raises on an unknown or missing field
        validate(out.value, schema, raise_errors=True)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, out.value)
        assert out.key.startswith(out.value["tenant_id"] + ":")


def topics(outputs: list[Emit | DeadLetter]) -> list[str]:
    return [o.topic if isinstance(o, Emit) else "DLQ" for o in outputs]


def emits(outputs: list[Emit | DeadLetter], topic: str) -> list[dict]:
    return [o.value for o in outputs if isinstance(o, Emit) and o.topic == topic]


D = Decimal


# -- hostile bytes --------------------------------------------------------------------------------
_WIDE: dict[str, Any] = {}


def wide_schema(stem: str) -> Any:
    """The schema with decimals of precision 60: the same wire format, so a producer of its own can write
    amounts far beyond decimal(18,4) that every reader of the real schema still decodes."""
    parsed = _WIDE.get(stem)
    if parsed is None:
        import json

        from stockledger.codec import schema_text

        doc = json.loads(schema_text(stem))

        def widen(node: Any) -> Any:
            if isinstance(node, dict):
                if node.get("logicalType") == "decimal":
                    return {**node, "precision": 60}
                return {k: widen(v) for k, v in node.items()}
            if isinstance(node, list):
                return [widen(v) for v in node]
            return node

        parsed = _WIDE[stem] = fastavro.parse_schema(widen(doc))
    return parsed


def wide_body(topic: str, datum: dict) -> bytes:
    """The Avro body (no header) of `datum` under the widened schema of `topic`; raises as fastavro does."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, wide_schema(spec(topic).schema), datum)
    return buf.getvalue()
