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
- Bounded values (SPEC 2, "Cost does not grow with history"): with `chunking` (the fold's), the
  head value (`StockState`) keeps only the newest deltas (`deltas`, the tail, fewer than
  `Chunking.size`); a full tail is closed into its own value, chunk n of the SKU (the fold's table
  `stock_chunks`), written once: {"d": [ts, qty, ...] sorted, "max": its newest ts, "pmax": the newest
  ts of it and every older chunk}. The head keeps the chunk range: chunks `chunk_gc`..`chunk_lo`-1 are
  dead (deleted a few per event, `GC_PER_EVENT`), `chunk_lo`..`chunk_hi`-1 live, `chunk_due` = the max
  ts of chunk `chunk_lo`, `chunk_pmax` = the newest ts of every chunk closed. A chunk's deltas at or
  before the head's count are dead (a count does not rewrite the chunks it leaves live). Behind the
  horizon, the tail folds into the base at once, and the oldest live chunk once its newest delta is
  behind it (at most `EXPIRE_PER_EVENT` per event); the stale test of a count computes the base exactly
  (the newest delta stamped behind the horizon, folded or not), so the answers are those of the
  unchunked state. A count reads the chunks that may hold deltas after it, newest first, and stops at
  the first chunk whose `pmax` is at or before it: that chunk and all older ones become dead. A delta
  writes the head, at most one new chunk and `GC_PER_EVENT` deletions. Deltas with the same ts merge
  in the tail and a merged zero is kept (it still marks that ts for the base's timestamp).
- `reserved` is always 0: an order is decided all or nothing against
  current stock and deducted at once, so nothing is ever held (SPEC: until an
  order lifecycle with allocation arrives).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain as _chain_iter
from typing import Any, Literal

from .serde import Plain, evolve

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
    "Chunking",
    "ChunkWrites",
    "STOCK_CHUNK",
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


STOCK_CHUNK = 64  # the fold's tail length at which a SKU's deltas are closed into a chunk
EXPIRE_PER_EVENT = 1  # at most this many chunks folded into the base per event (one chunk per STOCK_CHUNK deltas)
GC_PER_EVENT = 4  # at most this many dead chunks deleted per event

ChunkWrites = tuple[tuple[int, dict[str, Any] | None], ...]  # (chunk number, its value or None: delete it)


@dataclass(frozen=True, slots=True)
class Chunking:
    """How a SKU's closed chunks are kept: the tail length that closes one, and how to read chunk n."""

    size: int
    read: Callable[[int], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class StockState(Plain):
    """Stock of one SKU (the head value); `StockState(tenant_id, sku)` is the empty state."""

    tenant_id: str
    sku: str
    on_hand: int = 0
    reserved: int = 0
    absolute_ts: int | None = None  # timestamp of the count on_hand rests on
    absolute_qty: int | None = None
    deltas: tuple[tuple[int, int], ...] = ()  # (ts, qty) after absolute_ts, not folded nor in a chunk; sorted
    updated_at: int = 0  # timestamp of the last applied change; 0 = never
    last_event_id: str | None = None
    location_id: str | None = None
    reason: str | None = None  # why the last change happened (stock.levels `reason`)
    base_ts: int | None = None  # the newest delta folded into the base (lateness horizon)
    base_qty: int = 0  # the folded deltas' sum
    chunk_gc: int = 0  # chunks gc..lo-1 are dead, not yet deleted
    chunk_lo: int = 0  # chunks lo..hi-1 are live
    chunk_hi: int = 0  # the next chunk's number
    chunk_due: int | None = None  # the newest ts of chunk lo (when lo < hi)
    chunk_pmax: int | None = None  # the newest ts of every chunk closed

    @property
    def available(self) -> int:
        """What can still be promised: on_hand - reserved."""
        return self.on_hand - self.reserved

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: this runs for every stock change. The base and the
        chunk range appear only once they exist (older stored values read as none)."""
        out = {
            "tenant_id": self.tenant_id, "sku": self.sku, "on_hand": self.on_hand, "reserved": self.reserved,
            "absolute_ts": self.absolute_ts, "absolute_qty": self.absolute_qty,
            "deltas": list(_chain(self.deltas)), "updated_at": self.updated_at,
            "last_event_id": self.last_event_id, "location_id": self.location_id, "reason": self.reason,
        }
        if self.base_ts is not None:
            out["base_ts"], out["base_qty"] = self.base_ts, self.base_qty
        if self.chunk_hi:
            out["chunks"] = [self.chunk_gc, self.chunk_lo, self.chunk_hi, self.chunk_due, self.chunk_pmax]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StockState:
        flat = iter(data.get("deltas", ()))  # [ts1, qty1, ts2, qty2, ...]: one flat list, cheap both ways
        gc, lo, hi, due, pmax = data.get("chunks") or (0, 0, 0, None, None)
        return cls(
            data["tenant_id"], data["sku"], data.get("on_hand", 0), data.get("reserved", 0),
            data.get("absolute_ts"), data.get("absolute_qty"), tuple(zip(flat, flat, strict=False)),
            data.get("updated_at", 0), data.get("last_event_id"), data.get("location_id"), data.get("reason"),
            data.get("base_ts"), data.get("base_qty", 0), gc, lo, hi, due, pmax,
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
    """New state; `changed` = the visible stock changed (publish stock.levels); alerts to emit; the chunks
    to write (a new one) or delete (None).

    `state` is the input itself when nothing changed (a stale count, a delta inside a count).
    """

    state: StockState
    changed: bool
    alerts: tuple[Alert, ...] = ()
    chunks: ChunkWrites = ()


def _negative_alert(state: StockState, alert: str, what: str, ts: int, event_id: str | None) -> tuple[Alert, ...]:
    """An alert when on_hand ended below zero (kept: a fact, not an error)."""
    if state.on_hand >= 0:
        return ()
    message = f"sku {state.sku}: on_hand {state.on_hand} after {what}"
    return (Alert(state.tenant_id, state.sku, alert, state.on_hand, event_id, message, ts),)


def _newest(state: StockState) -> int | None:
    """The SKU's newest event time: its count, its newest kept delta, the newest delta ever chunked."""
    newest = state.absolute_ts
    if state.deltas and (newest is None or state.deltas[-1][0] > newest):
        newest = state.deltas[-1][0]
    if state.chunk_pmax is not None and (newest is None or state.chunk_pmax > newest):
        newest = state.chunk_pmax
    return newest


def _pairs(chunk: Mapping[str, Any]) -> Any:
    flat = iter(chunk["d"])
    return zip(flat, flat, strict=False)


def _chunk(state: StockState, n: int, chunking: Chunking | None, fresh: Mapping[int, Any]) -> Mapping[str, Any]:
    chunk = fresh[n] if n in fresh else (chunking.read(n) if chunking is not None else None)
    if chunk is None:
        raise LookupError(f"sku {state.sku}: stock chunk {n} is missing (live chunks {state.chunk_lo}.."
                          f"{state.chunk_hi - 1})")
    return chunk


def apply_absolute(
    state: StockState, qty: int, ts: int, event_id: str | None, location_id: str | None = None,
    reason: str | None = REASON_COUNT, horizon: int | None = None, chunking: Chunking | None = None,
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
    # The deltas after ts (their sum), and the base as the unchunked state has it: the newest delta stamped
    # behind the horizon, whether already folded (base_ts) or still kept (in the tail or a live chunk).
    newest = _newest(state)
    behind = None if horizon is None or newest is None else newest - horizon
    base_ts = state.base_ts
    after = 0
    kept = tuple(d for d in state.deltas if d[0] > ts)
    for t, q in kept:
        after += q
        if behind is not None and t < behind and (base_ts is None or t > base_ts):
            base_ts = t
    dead_to = state.chunk_hi - 1  # chunks lo..dead_to hold no delta after ts
    due = state.chunk_due
    later: set[int] = set()  # the timestamps of chunked deltas after ts (not in the tail: one per ts, as unchunked)
    if state.chunk_lo < state.chunk_hi and state.chunk_pmax is not None and state.chunk_pmax > ts:
        for n in range(state.chunk_hi - 1, state.chunk_lo - 1, -1):
            chunk = _chunk(state, n, chunking, {})
            if chunk["pmax"] <= ts:
                break
            dead_to, due = n - 1, chunk["max"]
            for t, q in _pairs(chunk):
                if t > ts:
                    after += q
                    later.add(t)
                    if behind is not None and t < behind and (base_ts is None or t > base_ts):
                        base_ts = t
    if base_ts is not None and ts < base_ts:
        message = (
            f"sku {state.sku}: count {qty} at {ts} is older than the lateness horizon's base at "
            f"{base_ts} (the changes after it are no longer kept one by one); ignored"
        )
        alert = Alert(state.tenant_id, state.sku, STALE_ABSOLUTE, state.on_hand, event_id, message, ts)
        return StockResult(state, False, (alert,))
    lo = max(dead_to + 1, state.chunk_lo)
    new, writes = _maintain(evolve(
        state,
        on_hand=qty + after,
        absolute_ts=ts,
        absolute_qty=qty,
        deltas=kept,
        base_ts=None,
        base_qty=0,
        updated_at=ts,
        last_event_id=event_id,
        location_id=location_id,
        reason=reason,
        chunk_lo=lo,
        chunk_due=due if lo < state.chunk_hi else None,
    ), horizon, chunking)
    what = f"count {qty} at {ts} plus {len(kept) + len(later.difference(t for t, _ in kept))} later change(s)"
    return StockResult(new, True, _negative_alert(new, NEGATIVE_STOCK, what, ts, event_id), writes)


def _insert(deltas: tuple[tuple[int, int], ...], ts: int, qty: int) -> tuple[tuple[int, int], ...]:
    """Add (ts, qty) keeping ts order, merging into an entry with the same ts (a merged zero is kept: it still
    marks a delta at ts for the base's timestamp)."""
    if not deltas or deltas[-1][0] < ts:  # the usual case: the newest delta
        return (*deltas, (ts, qty))
    items = list(deltas)
    i = bisect.bisect_left(items, (ts,))
    if i < len(items) and items[i][0] == ts:
        items[i] = (ts, items[i][1] + qty)
    else:
        items.insert(i, (ts, qty))
    return tuple(items)


def _maintain(state: StockState, horizon: int | None, chunking: Chunking | None) -> tuple[StockState, ChunkWrites]:
    """After a change: fold the tail's deltas behind the horizon into the base; close a full tail into a chunk;
    fold the oldest live chunk into the base once its newest delta is behind the horizon; delete a few dead
    chunks. Constant work: at most one chunk read or written per step (but for a head of an older version
    holding many deltas, closed in chunks once)."""
    deltas = state.deltas
    base_ts, base_qty = state.base_ts, state.base_qty
    newest = _newest(state)
    behind = None if horizon is None or newest is None else newest - horizon
    if behind is not None and deltas and deltas[0][0] < behind:
        cut = bisect.bisect_left(deltas, (behind,))  # deltas[:cut] are behind the horizon
        old = deltas[:cut]
        if base_ts is None or old[-1][0] > base_ts:
            base_ts = old[-1][0]
        base_qty += sum(q for _, q in old)
        deltas = deltas[cut:]
    if chunking is None:
        if deltas is state.deltas:
            return state, ()
        return evolve(state, deltas=deltas, base_ts=base_ts, base_qty=base_qty), ()
    gc, lo, hi, due, pmax = state.chunk_gc, state.chunk_lo, state.chunk_hi, state.chunk_due, state.chunk_pmax
    fresh: dict[int, Any] = {}
    size = chunking.size
    while len(deltas) >= size:  # once, but for an older head holding more
        closed, deltas = deltas[:size], deltas[size:]
        top = closed[-1][0]
        pmax = top if pmax is None or top > pmax else pmax
        fresh[hi] = {"d": list(_chain(closed)), "max": top, "pmax": pmax}
        if lo == hi:
            due = top
        hi += 1
    floor = state.absolute_ts
    for _ in range(EXPIRE_PER_EVENT):
        if behind is None or lo >= hi or due is None or due >= behind:
            break
        for t, q in _pairs(_chunk(state, lo, chunking, fresh)):
            if floor is None or t > floor:
                base_qty += q
                if base_ts is None or t > base_ts:
                    base_ts = t
        lo += 1
        due = _chunk(state, lo, chunking, fresh)["max"] if lo < hi else None
    if not fresh and gc >= lo and lo == state.chunk_lo:  # the usual sale: nothing closed, folded or deleted
        if deltas is state.deltas:
            return state, ()
        return evolve(state, deltas=deltas, base_ts=base_ts, base_qty=base_qty), ()
    writes = [(n, v) for n, v in fresh.items() if n >= lo]
    for _ in range(GC_PER_EVENT):
        if gc >= lo:
            break
        if gc not in fresh:
            writes.append((gc, None))
        gc += 1
    return evolve(state, deltas=deltas, base_ts=base_ts, base_qty=base_qty, chunk_gc=gc, chunk_lo=lo,
                   chunk_hi=hi, chunk_due=due, chunk_pmax=pmax), tuple(writes)


def apply_delta(
    state: StockState,
    qty: int,
    ts: int,
    event_id: str | None,
    location_id: str | None = None,
    kind: DeltaKind = INVENTORY,
    reason: str | None = None,
    horizon: int | None = None,
    chunking: Chunking | None = None,
) -> StockResult:
    """A change of `qty` at `ts` (inventory quantity_change, sale deduction, refund restock).

    At or before the latest count it is already inside that count: nothing
    changes. At or before the base, or behind the lateness `horizon` (ms), it adds to the base; otherwise it
    is kept (until it falls behind the horizon). A result below zero is kept and raises OVERSOLD for a sale,
    NEGATIVE_STOCK otherwise. `reason` defaults by kind: ADJUSTMENT, SALE, RETURN.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown delta kind {kind!r}")
    if qty == 0:
        raise ValueError("a zero delta is not a change")
    if state.absolute_ts is not None and ts <= state.absolute_ts:
        return StockResult(state, False, ())
    newest = _newest(state)
    base_ts: int | None
    if (state.base_ts is not None and ts <= state.base_ts) or (
            horizon is not None and newest is not None and ts < newest - horizon):
        deltas, base_qty = state.deltas, state.base_qty + qty
        base_ts = ts if state.base_ts is None or ts > state.base_ts else state.base_ts
    else:
        deltas, base_qty, base_ts = _insert(state.deltas, ts, qty), state.base_qty, state.base_ts
    new, writes = _maintain(evolve(
        state,
        on_hand=state.on_hand + qty,
        deltas=deltas,
        base_ts=base_ts,
        base_qty=base_qty,
        updated_at=ts,
        last_event_id=event_id,
        location_id=location_id,
        reason=reason if reason is not None else _REASON[kind],
    ), horizon, chunking)
    alert = OVERSOLD if kind == SALE else NEGATIVE_STOCK
    what = f"{_WHAT[kind]} of {qty:+d} at {ts}"
    return StockResult(new, True, _negative_alert(new, alert, what, ts, event_id), writes)


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
