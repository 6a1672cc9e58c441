"""The outbound `inventory.change` of seed 003 section 3.2, built from a stock.levels record, and the
outbound `catalog.update` of section 3.1, built from a catalog.groups record (issue 20).

`new_quantity` is the absolute `available` stock (on_hand - reserved: what the web store may sell;
003 calls it "the NEW total available stock"). `location_id` and `reason` are optional in 003 and
left out when the level has none (a null reason means unknown). `event_id` is deterministic per
(tenant, SKU, level): the same level published twice (a redelivery in the stream workers) gets the
same id, so a receiver deduplicates on it. The body is fixed per level; the signature is made per
try, over `<X-ERP-Timestamp>.<body>` (`stockledger.security.sign`).

`catalog.update` is the group's full product object in 003's shape: product_group_id, group_name,
description, category_hierarchy, tax_hsn, is_active, tax_rate (when the group has one) and every
variant with sku, display_name, price, mrp (when known), attributes and media. Money is written as
JSON numbers with their exact decimal text (79900.00, never through a float). A variant carries no
`stock_quantity`: stock goes out as inventory.change alone, so a catalog push never moves a store's
stock backwards. Its event_id is deterministic per (tenant, group, version).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stockledger.jsonconv import format_decimal
from stockledger.security import sign

EVENT_TYPE = "inventory.change"
CATALOG_EVENT_TYPE = "catalog.update"
EVENTS = ("inventory.change", "catalog.update")  # what a subscription may ask for
# webhook_deliveries keys one row per (subscription, key): a SKU for inventory.change, and this prefix and
# the product_group_id for catalog.update (a control character no SKU of a real catalog starts with)
GROUP_KEY = "\x1egroup:"
USER_AGENT = "stockledger-notify/1"


def event_id(level: dict) -> str:
    """`evt_` + 32 hex digits of SHA-256 over tenant, SKU, the change that set the level, on_hand, reserved."""
    parts = (level["tenant_id"], level["sku"], level.get("last_event_id") or "", str(level["on_hand"]),
             str(level["reserved"]))
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def iso_utc(value: datetime | int) -> str:
    """`2024-01-20T10:05:00Z` (milliseconds only when there are some)."""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    value = value.astimezone(UTC)
    ms = value.microsecond // 1000
    return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}" if ms else "") + "Z"


def body(level: dict) -> tuple[str, str]:
    """(event_id, JSON body) of the webhook for this stock.levels record."""
    data: dict = {"sku": level["sku"]}
    if level.get("location_id"):
        data["location_id"] = level["location_id"]
    data["new_quantity"] = level["available"]
    if level.get("reason"):
        data["reason"] = level["reason"]
    eid = event_id(level)
    doc = {"event_id": eid, "event_type": EVENT_TYPE, "tenant_id": level["tenant_id"],
           "timestamp": iso_utc(level["updated_at"]), "data": data}
    return eid, json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def headers(secret: str, raw: bytes, event: str, now: float | None = None) -> dict[str, str]:
    """Signed headers of one try: the signature covers `<timestamp>.<raw body>`."""
    ts = str(int(now if now is not None else time.time()))
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-ERP-Event-Id": event,
            "X-ERP-Timestamp": ts, "X-ERP-Signature": sign(secret, raw, ts)}


def group_key(product_group_id: str) -> str:
    """The webhook_deliveries key of a group's catalog.update."""
    return GROUP_KEY + product_group_id


def shown_key(key: str) -> str:
    """A delivery key as people read it: the SKU, or `group <product_group_id>`."""
    return f"group {key[len(GROUP_KEY):]}" if key.startswith(GROUP_KEY) else key


def catalog_event_id(group: dict) -> str:
    """`evt_` + 32 hex digits of SHA-256 over tenant, group, version and the update that made it."""
    parts = (group["tenant_id"], group["product_group_id"], str(group["version"]), group.get("event_id") or "")
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def _money(value: Decimal) -> str:
    return format_decimal(value)


def _json(value: Any) -> str:
    """Compact JSON with Decimals as exact numbers."""
    if isinstance(value, Decimal):
        return _money(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def catalog_body(group: dict) -> tuple[str, str]:
    """(event_id, JSON body) of the catalog.update webhook for this catalog.groups record."""
    data: dict[str, Any] = {"product_group_id": group["product_group_id"], "group_name": group["group_name"]}
    if group.get("description") is not None:
        data["description"] = group["description"]
    data["category_hierarchy"] = list(group.get("category_hierarchy") or ())
    if group.get("tax_hsn") is not None:
        data["tax_hsn"] = group["tax_hsn"]
    data["is_active"] = bool(group.get("is_active", True))
    if group.get("tax_rate") is not None:
        data["tax_rate"] = group["tax_rate"]
    variants = []
    for v in group["variants"]:
        item: dict[str, Any] = {"sku": v["sku"], "display_name": v["display_name"], "price": v["price"]}
        if v.get("mrp") is not None:
            item["mrp"] = v["mrp"]
        item["attributes"] = dict(v.get("attributes") or {})
        item["media"] = [{"url": m["url"], "is_main": bool(m.get("is_main", False))} for m in v.get("media") or ()]
        variants.append(item)
    data["variants"] = variants
    eid = catalog_event_id(group)
    doc = {"event_id": eid, "event_type": CATALOG_EVENT_TYPE, "tenant_id": group["tenant_id"],
           "timestamp": iso_utc(group["updated_at"]), "data": data}
    return eid, _json(doc)
