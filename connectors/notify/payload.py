"""The outbound `inventory.change` of seed 003 section 3.2, built from a stock.levels record.

`new_quantity` is the absolute `available` stock (on_hand - reserved: what the web store may sell;
003 calls it "the NEW total available stock"). `location_id` and `reason` are optional in 003 and
left out when the level has none (a null reason means unknown). `event_id` is deterministic per
(tenant, SKU, level): the same level published twice (a redelivery in the stream workers) gets the
same id, so a receiver deduplicates on it. The body is fixed per level; the signature is made per
try, over `<X-ERP-Timestamp>.<body>` (`stockledger.security.sign`).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime

from stockledger.security import sign

EVENT_TYPE = "inventory.change"
EVENTS = ("inventory.change", "catalog.update")  # what a subscription may ask for (catalog: not pushed yet)
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
