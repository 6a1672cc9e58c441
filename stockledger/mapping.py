"""The 003 ERP payloads mapped onto contract events (SPEC section 1).

The order import (`order_id`, `order_date`, `customer_ref`, `line_items`) becomes an
`order.placed` on `sales`; the adjust payload (`reference_id`, `adjustments[]`) becomes one
`inventory.change` per adjustment. Event ids derive from the payload's own reference so a
re-sent payload is recognised as the same business action.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def is_order_import(record: dict) -> bool:
    return "order_id" in record and "line_items" in record and "event_type" not in record


def is_adjust(record: dict) -> bool:
    return "adjustments" in record and "reference_id" in record and "event_type" not in record


GUEST_PREFIX = "GUEST-"


def order_customer(record: dict) -> tuple[str | None, str]:
    """(customer_ref, payment_terms) of an imported order (seed 003). An order that names no payment terms
    is payment due: on account of its customer, or of the one-time customer GUEST-<order_id> when it names
    none (a web store's guest checkout), so its invoice stays open until the treasury's payment (seed 001)
    settles it; it is never booked as cash nobody received."""
    customer, terms = record.get("customer_ref"), record.get("payment_terms") or "ON_ACCOUNT"
    if terms == "ON_ACCOUNT" and not customer:
        customer = f"{GUEST_PREFIX}{record['order_id']}"
    return customer, terms


def order_import(record: dict, tenant: str | None, currency: str) -> dict:
    customer, terms = order_customer(record)
    return {
        "event_id": f"order-import:{record['order_id']}",
        "event_type": "order.placed",
        "tenant_id": record.get("tenant_id", tenant),
        "timestamp": record.get("order_date") or datetime.now(UTC).isoformat(),
        "source": "erp",
        "data": {
            "sale_id": record["order_id"],
            "channel": "ERP",
            "customer_ref": customer,
            "currency": record.get("currency", currency),
            "payment_terms": terms,
            "line_items": [
                {k: v for k, v in line.items() if k in ("sku", "quantity", "unit_price", "discount_percent",
                                                         "tax_percent")}
                for line in record["line_items"]
            ],
        },
    }


def adjust(record: dict, tenant: str | None) -> list[dict]:
    stamp: Any = record.get("timestamp") or datetime.now(UTC).isoformat()
    out = []
    for n, adj in enumerate(record["adjustments"], start=1):
        out.append({
            "event_id": f"adjust:{record['reference_id']}:{n}",
            "event_type": "inventory.change",
            "tenant_id": record.get("tenant_id", tenant),
            "timestamp": stamp,
            "source": "erp",
            "data": {
                "sku": adj["sku"],
                "location_id": adj.get("warehouse_id"),
                "quantity_change": adj["quantity_change"],
                "reason": "ADJUSTMENT",
                "reference_id": record["reference_id"],
            },
        })
    return out
