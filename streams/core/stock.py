"""Stock per (tenant, SKU): absolute counts, deltas and their alerts.

SPEC 2: on_hand = the latest absolute count (by event timestamp) + every delta
with a later timestamp; with no count yet, the sum of all deltas. To give the
same answer whatever order events arrive in, the state keeps the count it
rests on and the deltas stamped after it; a newer count prunes them.

Choices where SPEC is silent:
- An absolute with the same timestamp as the latest one is applied (last
  writer by arrival wins), so only absolutes with distinct timestamps are
  order independent; equal-timestamp counts that disagree are a producer bug.
- A delta stamped exactly at the count's timestamp is inside the count.
- `updated_at`, `last_event_id`, `location_id` and `reason` describe the last
  change applied (by arrival), as stock.levels shows "the SKU's last change".
- Lateness horizon (SPEC 2, "Cost does not grow with history"): deltas stamped more than the
  horizon behind the SKU's newest event (its latest count, delta or base) fold into a base
  (`base_ts`, `base_qty`), so the state keeps only what a late count may still need. A count
  older than the base is STALE_ABSOLUTE; a delta at or before the base (and after the count) adds
  to the base. Within the horizon the rule above holds exactly. `horizon=None` keeps every delta.
- `reserved` is always 0: an order is decided all or nothing against
  current stock and deducted at once, so nothing is ever held (SPEC: until an
  order lifecycle with allocation arrives).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import chain as _chain_iter
from typing import Any, Literal

from .serde import Plain

_chain = _chain_iter.from_iterable

__all__ = [
    "INVENTORY",
    "SALE",
    "RESTOCK",
    "STALE_ABSOLUTE",
    "NEGATIVE_STOCK",
    "OVERSOLD",
    "REASON_COUNT",
    "REASON_ADJUSTMENT",
    "REASON_CATALOG",
    "REASON_SALE",
    "REASON_ORDER",
    "REASON_RETURN",
    "Alert",
    "StockState",
    "StockResult",
    "apply_absolute",
    "apply_delta",
    "validate_inventory_change",
]

DeltaKind = Literal["inventory", "sale", "restock"]
INVENTORY: DeltaKind = "inventory"  # inventory.change quantity_change
SALE: DeltaKind = "sale"  # a sale line's deduction (negative)
RESTOCK: DeltaKind = "restock"  # a refund's restock (positive)
_KINDS = frozenset({INVENTORY, SALE, RESTOCK})
_WHAT = {INVENTORY: "change", SALE: "sale deduction", RESTOCK: "restock"}

STALE_ABSOLUTE = "STALE_ABSOLUTE"
NEGATIVE_STOCK = "NEGATIVE_STOCK"
OVERSOLD = "OVERSOLD"

# stock.levels `reason` of a change when the event names none
REASON_COUNT = "COUNT"  # an absolute inventory.change
REASON_ADJUSTMENT = "ADJUSTMENT"  # a delta inventory.change
REASON_CATALOG = "CATALOG"  # a catalog variant's stock_quantity
REASON_SALE = "SALE"  # a POS sale's deduction
REASON_ORDER = "ORDER"  # an accepted order's deduction
REASON_RETURN = "RETURN"  # a refund's restock


_REASON = {INVENTORY: REASON_ADJUSTMENT, SALE: REASON_SALE, RESTOCK: REASON_RETURN}


@dataclass(frozen=True, slots=True)
class Alert(Plain):
    """One inventory.alerts record (fields as in stockledger/schemas/inventory_alert.avsc)."""

    tenant_id: str
    sku: str
    alert: str  # OVERSOLD / NEGATIVE_STOCK / STALE_ABSOLUTE
    on_hand: int  # on_hand after the event (unchanged for STALE_ABSOLUTE)
    event_id: str | None
    message: str
    raised_at: int  # the triggering event's timestamp, epoch millis


@dataclass(frozen=True, slots=True)
class StockState(Plain):
    """Stock of one SKU; `StockState(tenant_id, sku)` is the empty state."""

    tenant_id: str
    sku: str
    on_hand: int = 0
    reserved: int = 0
    absolute_ts: int | None = None  # timestamp of the count on_hand rests on
    absolute_qty: int | None = None
    deltas: tuple[tuple[int, int], ...] = ()  # (ts, qty) after absolute_ts and base_ts, sorted, one per ts
    updated_at: int = 0  # timestamp of the last applied change; 0 = never
    last_event_id: str | None = None
    location_id: str | None = None
    reason: str | None = None  # why the last change happened (stock.levels `reason`)
    base_ts: int | None = None  # deltas after absolute_ts and at or before this, folded (lateness horizon)
    base_qty: int = 0  # their sum

    @property
    def available(self) -> int:
        """What can still be promised: on_hand - reserved."""
        return self.on_hand - self.reserved

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: this runs for every stock change. The base
        appears only once one exists (older stored values read as no base)."""
        out = {
            "tenant_id": self.tenant_id, "sku": self.sku, "on_hand": self.on_hand, "reserved": self.reserved,
            "absolute_ts": self.absolute_ts, "absolute_qty": self.absolute_qty,
            "deltas": list(_chain(self.deltas)), "updated_at": self.updated_at,
            "last_event_id": self.last_event_id, "location_id": self.location_id, "reason": self.reason,
        }
        if self.base_ts is not None:
            out["base_ts"], out["base_qty"] = self.base_ts, self.base_qty
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StockState:
        flat = iter(data.get("deltas", ()))  # [ts1, qty1, ts2, qty2, ...]: one flat list, cheap both ways
        return cls(
            data["tenant_id"], data["sku"], data.get("on_hand", 0), data.get("reserved", 0),
            data.get("absolute_ts"), data.get("absolute_qty"), tuple(zip(flat, flat, strict=False)),
            data.get("updated_at", 0), data.get("last_event_id"), data.get("location_id"), data.get("reason"),
            data.get("base_ts"), data.get("base_qty", 0),
        )

    def level(self) -> dict[str, Any]:
        """The stock.levels record for this state (stockledger/schemas/stock_level.avsc)."""
        return {
            "tenant_id": self.tenant_id,
            "sku": self.sku,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "updated_at": self.updated_at,
            "last_event_id": self.last_event_id,
            "location_id": self.location_id,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class StockResult:
    """New state; `changed` = the visible stock changed (publish stock.levels); alerts to emit.

    `state` is the input itself when nothing changed (a stale count, a delta inside a count).
    """

    state: StockState
    changed: bool
    alerts: tuple[Alert, ...] = ()


def _negative_alert(state: StockState, alert: str, what: str, ts: int, event_id: str | None) -> tuple[Alert, ...]:
    """An alert when on_hand ended below zero (kept: a fact, not an error)."""
    if state.on_hand >= 0:
        return ()
    message = f"sku {state.sku}: on_hand {state.on_hand} after {what}"
    return (Alert(state.tenant_id, state.sku, alert, state.on_hand, event_id, message, ts),)


def apply_absolute(
    state: StockState, qty: int, ts: int, event_id: str | None, location_id: str | None = None,
    reason: str | None = REASON_COUNT, horizon: int | None = None,
) -> StockResult:
    """A count (`new_quantity`, catalog `stock_quantity`): the truth as of `ts`.

    Older than the latest count or than the base (deltas it would need were folded, see the
    lateness horizon): ignored, STALE_ABSOLUTE. Otherwise on_hand = qty + the deltas stamped after
    ts, and earlier deltas are dropped.
    """
    if qty < 0:
        raise ValueError(f"an absolute count cannot be negative: {qty}")
    if state.absolute_ts is not None and ts < state.absolute_ts:
        message = (
            f"sku {state.sku}: count {qty} at {ts} is older than the count "
            f"{state.absolute_qty} at {state.absolute_ts}; ignored"
        )
        alert = Alert(state.tenant_id, state.sku, STALE_ABSOLUTE, state.on_hand, event_id, message, ts)
        return StockResult(state, False, (alert,))
    if state.base_ts is not None and ts < state.base_ts:
        message = (
            f"sku {state.sku}: count {qty} at {ts} is older than the lateness horizon's base at "
            f"{state.base_ts} (the changes after it are no longer kept one by one); ignored"
        )
        alert = Alert(state.tenant_id, state.sku, STALE_ABSOLUTE, state.on_hand, event_id, message, ts)
        return StockResult(state, False, (alert,))
    kept = tuple(d for d in state.deltas if d[0] > ts)
    new = _trim(replace(
        state,
        on_hand=qty + sum(q for _, q in kept),
        absolute_ts=ts,
        absolute_qty=qty,
        deltas=kept,
        base_ts=None,
        base_qty=0,
        updated_at=ts,
        last_event_id=event_id,
        location_id=location_id,
        reason=reason,
    ), horizon)
    what = f"count {qty} at {ts} plus {len(kept)} later change(s)"
    return StockResult(new, True, _negative_alert(new, NEGATIVE_STOCK, what, ts, event_id))


def _insert(deltas: tuple[tuple[int, int], ...], ts: int, qty: int) -> tuple[tuple[int, int], ...]:
    """Add (ts, qty) keeping ts order, merging into an entry with the same ts (dropped if it nets 0)."""
    items = list(deltas)
    i = bisect.bisect_left(items, (ts,))
    if i < len(items) and items[i][0] == ts:
        merged = items[i][1] + qty
        if merged:
            items[i] = (ts, merged)
        else:
            del items[i]
    else:
        items.insert(i, (ts, qty))
    return tuple(items)


def _trim(state: StockState, horizon: int | None) -> StockState:
    """Fold the deltas stamped more than `horizon` ms behind the SKU's newest event into the base."""
    deltas = state.deltas
    if horizon is None or not deltas:
        return state
    newest = deltas[-1][0]
    if state.absolute_ts is not None and state.absolute_ts > newest:
        newest = state.absolute_ts
    cut = bisect.bisect_left(deltas, (newest - horizon,))  # deltas[:cut] are older than the horizon
    if not cut:
        return state
    old = deltas[:cut]
    base_ts = old[-1][0] if state.base_ts is None or old[-1][0] > state.base_ts else state.base_ts
    return replace(state, deltas=deltas[cut:], base_ts=base_ts, base_qty=state.base_qty + sum(q for _, q in old))


def apply_delta(
    state: StockState,
    qty: int,
    ts: int,
    event_id: str | None,
    location_id: str | None = None,
    kind: DeltaKind = INVENTORY,
    reason: str | None = None,
    horizon: int | None = None,
) -> StockResult:
    """A change of `qty` at `ts` (inventory quantity_change, sale deduction, refund restock).

    At or before the latest count it is already inside that count: nothing
    changes. At or before the base it adds to the base; otherwise it is kept
    (until it falls behind the lateness `horizon`, ms). A result below zero is kept and raises OVERSOLD for a sale,
    NEGATIVE_STOCK otherwise. `reason` defaults by kind: ADJUSTMENT, SALE, RETURN.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown delta kind {kind!r}")
    if qty == 0:
        raise ValueError("a zero delta is not a change")
    if state.absolute_ts is not None and ts <= state.absolute_ts:
        return StockResult(state, False, ())
    if state.base_ts is not None and ts <= state.base_ts:
        deltas, base_qty = state.deltas, state.base_qty + qty
    else:
        deltas, base_qty = _insert(state.deltas, ts, qty), state.base_qty
    new = _trim(replace(
        state,
        on_hand=state.on_hand + qty,
        deltas=deltas,
        base_qty=base_qty,
        updated_at=ts,
        last_event_id=event_id,
        location_id=location_id,
        reason=reason if reason is not None else _REASON[kind],
    ), horizon)
    alert = OVERSOLD if kind == SALE else NEGATIVE_STOCK
    what = f"{_WHAT[kind]} of {qty:+d} at {ts}"
    return StockResult(new, True, _negative_alert(new, alert, what, ts, event_id))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_inventory_change(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why an inventory.change `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    sku = data.get("sku")
    if not isinstance(sku, str) or not sku.strip():
        reasons.append("sku is missing or empty")
    new_quantity = data.get("new_quantity")
    change = data.get("quantity_change")
    if new_quantity is not None and change is not None:
        reasons.append("both new_quantity and quantity_change are set; exactly one is required")
    elif new_quantity is None and change is None:
        reasons.append("neither new_quantity nor quantity_change is set; exactly one is required")
    if new_quantity is not None:
        if not _is_int(new_quantity):
            reasons.append(f"new_quantity must be an integer, got {new_quantity!r}")
        elif new_quantity < 0:
            reasons.append(f"new_quantity must not be negative, got {new_quantity}")
    if change is not None:
        if not _is_int(change):
            reasons.append(f"quantity_change must be an integer, got {change!r}")
        elif change == 0:
            reasons.append("quantity_change must not be zero")
    return reasons
