"""Stock per (tenant, SKU): absolute counts, deltas, reservations and their alerts.

SPEC 2: on_hand = the latest absolute count (by event timestamp) + every delta
with a later timestamp; with no count yet, the sum of all deltas. To give the
same answer whatever order events arrive in, the state keeps the count it
rests on and the deltas stamped after it; a newer count prunes them.

Choices where SPEC is silent:
- An absolute with the same timestamp as the latest one is applied (last
  writer by arrival wins), so only absolutes with distinct timestamps are
  order independent; equal-timestamp counts that disagree are a producer bug.
- A delta stamped exactly at the count's timestamp is inside the count.
- `updated_at`, `last_event_id` and `location_id` describe the last change
  applied (by arrival), as stock.levels shows "the SKU's last change".
- Reservations are recorded by hold_id; a closed hold (committed or released)
  is remembered among the last CLOSED_HOLDS_KEPT so a redelivered reserve
  cannot take the stock again. The shell remembers every outcome beyond that
  window and hands it back with `recall_closed`, so a reserve redelivered after
  hundreds of later sales is still recognised while the state stays small.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .serde import Plain

__all__ = [
    "INVENTORY",
    "SALE",
    "RESTOCK",
    "STALE_ABSOLUTE",
    "NEGATIVE_STOCK",
    "OVERSOLD",
    "CLOSED_HOLDS_KEPT",
    "closed_outcome",
    "recall_closed",
    "Alert",
    "StockState",
    "StockResult",
    "apply_absolute",
    "apply_delta",
    "reserve",
    "try_reserve",
    "release",
    "commit_reservation",
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

COMMITTED = "COMMITTED"
RELEASED = "RELEASED"
CLOSED_HOLDS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Alert(Plain):
    """One inventory.alerts record (fields as in schemas/inventory_alert.avsc)."""

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
    deltas: tuple[tuple[int, int], ...] = ()  # (ts, qty) after absolute_ts, sorted, one per ts
    updated_at: int = 0  # timestamp of the last applied change; 0 = never
    last_event_id: str | None = None
    location_id: str | None = None
    holds: tuple[tuple[str, int], ...] = ()  # open reservations (hold_id, qty)
    closed_holds: tuple[tuple[str, str], ...] = ()  # (hold_id, COMMITTED|RELEASED), newest last

    @property
    def available(self) -> int:
        """What can still be promised: on_hand - reserved."""
        return self.on_hand - self.reserved

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: this runs for every stock change."""
        return {
            "tenant_id": self.tenant_id, "sku": self.sku, "on_hand": self.on_hand, "reserved": self.reserved,
            "absolute_ts": self.absolute_ts, "absolute_qty": self.absolute_qty,
            "deltas": [list(d) for d in self.deltas], "updated_at": self.updated_at,
            "last_event_id": self.last_event_id, "location_id": self.location_id,
            "holds": [list(h) for h in self.holds], "closed_holds": [list(h) for h in self.closed_holds],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StockState":
        return cls(
            data["tenant_id"], data["sku"], data.get("on_hand", 0), data.get("reserved", 0),
            data.get("absolute_ts"), data.get("absolute_qty"), tuple((t, q) for t, q in data.get("deltas", ())),
            data.get("updated_at", 0), data.get("last_event_id"), data.get("location_id"),
            tuple((h, q) for h, q in data.get("holds", ())), tuple((h, o) for h, o in data.get("closed_holds", ())),
        )

    def level(self) -> dict[str, Any]:
        """The stock.levels record for this state (schemas/stock_level.avsc)."""
        return {
            "tenant_id": self.tenant_id,
            "sku": self.sku,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "updated_at": self.updated_at,
            "last_event_id": self.last_event_id,
            "location_id": self.location_id,
        }


@dataclass(frozen=True, slots=True)
class StockResult:
    """New state; `changed` = the visible stock changed (publish stock.levels); alerts to emit.

    Store `state` whenever it `is not` the input (hold bookkeeping may change
    without a visible change).
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
    state: StockState, qty: int, ts: int, event_id: str | None, location_id: str | None = None
) -> StockResult:
    """A count (`new_quantity`, catalog `stock_quantity`): the truth as of `ts`.

    Older than the latest count: ignored, STALE_ABSOLUTE. Otherwise on_hand =
    qty + the deltas stamped after ts, and earlier deltas are dropped.
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
    kept = tuple(d for d in state.deltas if d[0] > ts)
    new = replace(
        state,
        on_hand=qty + sum(q for _, q in kept),
        absolute_ts=ts,
        absolute_qty=qty,
        deltas=kept,
        updated_at=ts,
        last_event_id=event_id,
        location_id=location_id,
    )
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


def apply_delta(
    state: StockState,
    qty: int,
    ts: int,
    event_id: str | None,
    location_id: str | None = None,
    kind: DeltaKind = INVENTORY,
) -> StockResult:
    """A change of `qty` at `ts` (inventory quantity_change, sale deduction, refund restock).

    At or before the latest count it is already inside that count: nothing
    changes. A result below zero is kept and raises OVERSOLD for a sale,
    NEGATIVE_STOCK otherwise.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown delta kind {kind!r}")
    if qty == 0:
        raise ValueError("a zero delta is not a change")
    if state.absolute_ts is not None and ts <= state.absolute_ts:
        return StockResult(state, False, ())
    new = replace(
        state,
        on_hand=state.on_hand + qty,
        deltas=_insert(state.deltas, ts, qty),
        updated_at=ts,
        last_event_id=event_id,
        location_id=location_id,
    )
    alert = OVERSOLD if kind == SALE else NEGATIVE_STOCK
    what = f"{_WHAT[kind]} of {qty:+d} at {ts}"
    return StockResult(new, True, _negative_alert(new, alert, what, ts, event_id))


def _hold(state: StockState, hold_id: str) -> int | None:
    for hid, qty in state.holds:
        if hid == hold_id:
            return qty
    return None


def _closed(state: StockState, hold_id: str) -> str | None:
    for hid, outcome in state.closed_holds:
        if hid == hold_id:
            return outcome
    return None


def closed_outcome(state: StockState, hold_id: str) -> str | None:
    """COMMITTED or RELEASED if the state remembers `hold_id` as closed."""
    return _closed(state, hold_id)


def recall_closed(state: StockState, hold_id: str, outcome: str) -> StockState:
    """The state with a closed hold it had forgotten put back (a no-op if it knows the hold)."""
    if _hold(state, hold_id) is not None or _closed(state, hold_id) is not None:
        return state
    return replace(state, closed_holds=(state.closed_holds + ((hold_id, outcome),))[-CLOSED_HOLDS_KEPT:])


def _close(state: StockState, hold_id: str, outcome: str) -> StockState:
    holds = tuple(h for h in state.holds if h[0] != hold_id)
    closed = (state.closed_holds + ((hold_id, outcome),))[-CLOSED_HOLDS_KEPT:]
    qty = _hold(state, hold_id) or 0
    return replace(state, holds=holds, closed_holds=closed, reserved=state.reserved - qty)


def reserve(state: StockState, qty: int, hold_id: str) -> StockResult:
    """Reserve `qty` under `hold_id` even beyond availability; a known hold_id is a no-op."""
    if qty <= 0:
        raise ValueError(f"a reservation must be positive: {qty}")
    if _hold(state, hold_id) is not None or _closed(state, hold_id) is not None:
        return StockResult(state, False, ())
    new = replace(state, holds=state.holds + ((hold_id, qty),), reserved=state.reserved + qty)
    return StockResult(new, True, ())


def try_reserve(state: StockState, qty: int, hold_id: str) -> tuple[StockState, bool]:
    """Reserve only if available >= qty; ok=True when the hold has (or had) its stock.

    Repeats answer as the first time did: an open or committed hold -> True,
    a released one -> False, without touching the state.
    """
    if _hold(state, hold_id) is not None:
        return state, True
    outcome = _closed(state, hold_id)
    if outcome is not None:
        return state, outcome == COMMITTED
    if state.available < qty:
        return state, False
    return reserve(state, qty, hold_id).state, True


def release(state: StockState, hold_id: str) -> StockResult:
    """Give a hold's quantity back. Releasing twice is a no-op; releasing an unknown
    hold records it as released so a late duplicate reserve cannot take stock."""
    if _hold(state, hold_id) is not None:
        return StockResult(_close(state, hold_id, RELEASED), True, ())
    if _closed(state, hold_id) is not None:
        return StockResult(state, False, ())
    return StockResult(_close(state, hold_id, RELEASED), False, ())


def commit_reservation(
    state: StockState, hold_id: str, ts: int, event_id: str | None, location_id: str | None = None,
    qty: int | None = None,
) -> StockResult:
    """Turn a hold into a sale deduction at `ts`; a closed hold is a no-op.

    A commit can reach a SKU whose reservation was lost (a crash after the answer left but before
    the hold was stored): given `qty`, it deducts anyway and records the hold as committed, so a
    late redelivered reserve finds it closed instead of holding stock forever.
    """
    held = _hold(state, hold_id)
    if held is None:
        if qty is None or _closed(state, hold_id) is not None:
            return StockResult(state, False, ())
        held, state = qty, replace(state, holds=state.holds + ((hold_id, qty),), reserved=state.reserved + qty)
    qty = held
    closed = _close(state, hold_id, COMMITTED)
    result = apply_delta(closed, -qty, ts, event_id, location_id, kind=SALE)
    if result.changed:
        return result
    # the deduction falls inside a later count; the reservation still went away
    return StockResult(replace(closed, updated_at=ts, last_event_id=event_id, location_id=location_id), True, ())


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
