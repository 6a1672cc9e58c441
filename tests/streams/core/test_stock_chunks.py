"""Issue 17, item 1: a hot SKU's stored values are bounded. The head keeps fewer than K deltas, a full tail is
closed into a chunk written once, old chunks fold into the base or die under a count, and the answers are
exactly those of a naive reference that keeps every delta one by one (SPEC 2, "Cost does not grow with
history"). Sizes are those of the stored JSON (the fold's state values)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.fold import DAY_MS, FoldConfig, serial_fold, stock_of
from streams.core.stock import (
    GC_PER_EVENT,
    STALE_ABSOLUTE,
    STOCK_CHUNK,
    Chunking,
    StockResult,
    StockState,
    apply_absolute,
    apply_delta,
)

from .foldkit import count, delta, emits

H = 7 * DAY_MS
T0 = 1_767_225_600_000  # 2026-01-01: timestamps of one width
K = STOCK_CHUNK
# The bounds for timestamps of 13 digits and quantities of up to 6 digits: a delta is at most 22 bytes of JSON
# ("1767225600000,-999999,"); a head holds at most K - 1 deltas and its fixed fields, a chunk K deltas.
HEAD_MAX = 1_800
CHUNK_MAX = 1_500


def size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


class Store:
    """A SKU's chunks as the fold keeps them (its `stock_chunks` table), counting reads and writes."""

    def __init__(self, k: int = K):
        self.chunks: dict[int, dict] = {}
        self.reads: list[int] = []
        self.writes: list[tuple[int, dict | None]] = []
        self.chunking = Chunking(k, self.read)

    def read(self, n: int) -> dict | None:
        self.reads.append(n)
        return self.chunks.get(n)

    def apply(self, result: StockResult) -> StockState:
        for n, chunk in result.chunks:
            self.writes.append((n, chunk))
            if chunk is None:
                self.chunks.pop(n, None)
            else:
                assert n not in self.chunks  # a chunk is written once
                self.chunks[n] = chunk
        return result.state


class Naive:
    """The reference: every delta kept one by one. on_hand = the latest count + every delta after it (the sum of
    all with no count); a count is stale when older than the latest count, or than the base: the newest delta
    (since the count) stamped more than the horizon behind the SKU's newest event."""

    def __init__(self, horizon: int | None):
        self.horizon = horizon
        self.abs_ts: int | None = None
        self.abs_qty = 0
        self.entries: list[tuple[int, int]] = []
        self.newest: int | None = None

    @property
    def on_hand(self) -> int:
        return self.abs_qty + sum(q for _, q in self.entries)

    def base(self) -> int | None:
        if self.horizon is None or self.newest is None:
            return None
        behind = [t for t, _ in self.entries if t < self.newest - self.horizon]
        return max(behind) if behind else None

    def delta(self, qty: int, ts: int) -> bool:
        if self.abs_ts is not None and ts <= self.abs_ts:
            return False
        self.entries.append((ts, qty))
        self.newest = ts if self.newest is None else max(self.newest, ts)
        return True

    def count(self, qty: int, ts: int) -> bool:
        base = self.base()
        if (self.abs_ts is not None and ts < self.abs_ts) or (base is not None and ts < base):
            return False
        self.abs_ts, self.abs_qty = ts, qty
        self.entries = [e for e in self.entries if e[0] > ts]
        self.newest = ts if self.newest is None else max(self.newest, ts)
        return True


def check_bounds(state: StockState, store: Store, k: int = K) -> None:
    assert len(state.deltas) < k
    assert set(store.chunks) <= set(range(state.chunk_gc, state.chunk_hi))
    for chunk in store.chunks.values():
        assert len(chunk["d"]) <= 2 * k


# -- 10,000 sales on one SKU, no count ------------------------------------------------------------------------
def test_10000_sales_without_a_count_give_bounded_values_and_the_naive_sum():
    state, store = StockState("t1", "A"), Store()
    heads, per_sale = [], []
    for n in range(10_000):  # one a second: all within the horizon, so every chunk stays live
        before = len(store.writes)
        state = store.apply(apply_delta(state, -(n % 7 + 1), T0 + n * 1000, f"e-{n:05d}", "LOC-1", "sale",
                                        horizon=H, chunking=store.chunking))
        heads.append(size(state.to_dict()))
        per_sale.append(heads[-1] + sum(size(c) for _, c in store.writes[before:] if c is not None))
    check_bounds(state, store)
    assert state.on_hand == -sum(n % 7 + 1 for n in range(10_000)) == -39_994
    assert (len(state.deltas), state.chunk_lo, state.chunk_hi, len(store.chunks)) == (10_000 % K, 0, 156, 156)
    assert max(heads) <= HEAD_MAX and max(size(c) for c in store.chunks.values()) <= CHUNK_MAX
    assert max(per_sale) <= HEAD_MAX + CHUNK_MAX
    assert store.reads == []  # a sale in order never reads a chunk
    # the head of the first sale and of the last differ only by the chunk range and the tail
    assert heads[0] < 300 and heads[-1] < 300 + (10_000 % K) * 22


def test_sales_beyond_the_horizon_fold_whole_chunks_into_the_base_and_delete_them():
    state, store = StockState("t1", "A"), Store()
    gap = 60_000  # one a minute: the horizon holds 10,081 of them
    for n in range(30_000):
        state = store.apply(apply_delta(state, -1, T0 + n * gap, f"e{n}", kind="sale", horizon=H,
                                        chunking=store.chunking))
        check_bounds(state, store)
    assert state.on_hand == -30_000
    live = range(state.chunk_lo, state.chunk_hi)
    kept = len(state.deltas) + sum(len(store.chunks[n]["d"]) // 2 for n in live)
    newest = T0 + 29_999 * gap
    # whole chunks only: the oldest live chunk still holds a delta within the horizon
    assert store.chunks[state.chunk_lo]["max"] >= newest - H
    assert H // gap + 1 <= kept < H // gap + 1 + K
    assert state.base_qty == -(30_000 - kept) and state.base_ts == T0 + (30_000 - kept - 1) * gap
    assert len(store.chunks) == len(live)  # the folded ones are deleted


# -- late counts ----------------------------------------------------------------------------------------------
def sold(n: int, store: Store, count_at: int | None = None) -> tuple[StockState, Naive]:
    state, naive = StockState("t1", "A"), Naive(H)
    if count_at is not None:
        state = store.apply(apply_absolute(state, 1_000_000, count_at, "c0", horizon=H, chunking=store.chunking))
        naive.count(1_000_000, count_at)
    for i in range(n):
        state = store.apply(apply_delta(state, -1 - i % 3, T0 + i * 1000, f"e{i}", kind="sale", horizon=H,
                                        chunking=store.chunking))
        naive.delta(-1 - i % 3, T0 + i * 1000)
    return state, naive


def test_a_late_count_in_the_middle_of_closed_chunks_is_exact_and_reads_only_the_chunks_after_it():
    store = Store()
    state, naive = sold(1_000, store)  # chunks 0..14 (64 deltas each) and a tail of 40
    assert (state.chunk_lo, state.chunk_hi, len(state.deltas)) == (0, 15, 40)
    at = T0 + 500 * 1000 + 500  # between delta 500 and 501: inside chunk 7 (deltas 448..511)
    store.reads.clear()
    result = apply_absolute(state, 700, at, "late", horizon=H, chunking=store.chunking)
    naive.count(700, at)
    assert result.state.on_hand == naive.on_hand == 700 - sum(1 + i % 3 for i in range(501, 1_000))
    assert store.reads == [14, 13, 12, 11, 10, 9, 8, 7, 6]  # newest first; chunk 6 ends before the count
    assert (result.state.absolute_ts, result.state.base_ts) == (at, None)
    assert [(a.alert, a.on_hand, a.message) for a in result.alerts] == [  # the later changes: chunked or not
        ("NEGATIVE_STOCK", -297, f"sku A: on_hand -297 after count 700 at {at} plus 499 later change(s)")]
    state = store.apply(result)
    assert (state.chunk_gc, state.chunk_lo, state.chunk_hi) == (4, 7, 15)  # 0..6 dead, 4 deleted at once
    assert sorted(store.chunks) == list(range(4, 15))
    state = store.apply(apply_delta(state, -1, T0 + 2_000 * 1000, "x", horizon=H, chunking=store.chunking))
    naive.delta(-1, T0 + 2_000 * 1000)
    assert sorted(store.chunks) == list(range(7, 15)) and state.chunk_gc == 7
    # a second count between chunk 7's dead deltas and its live ones: exact again
    again = apply_absolute(state, 10, at + 100, "late2", horizon=H, chunking=store.chunking)
    naive.count(10, at + 100)
    assert again.state.on_hand == naive.on_hand
    # a delta at or before the count is inside it
    assert apply_delta(again.state, -5, at + 50, "in", horizon=H, chunking=store.chunking).changed is False


def test_a_count_in_order_reads_no_chunk_and_kills_them_all():
    store = Store()
    state, naive = sold(1_000, store)
    store.reads.clear()
    result = apply_absolute(state, 5, T0 + 10_000_000, "now", horizon=H, chunking=store.chunking)
    assert store.reads == [] and result.state.on_hand == 5 and result.state.deltas == ()
    state = store.apply(result)
    assert (state.chunk_gc, state.chunk_lo, state.chunk_hi) == (GC_PER_EVENT, 15, 15)
    for i in range(4):  # the dead chunks go, GC_PER_EVENT per event
        state = store.apply(apply_delta(state, 1, T0 + 10_000_001 + i, f"n{i}", horizon=H, chunking=store.chunking))
    assert store.chunks == {} and state.on_hand == 9 and state.chunk_gc == 15


def test_a_count_older_than_the_base_is_stale():
    store = Store()
    state, naive = StockState("t1", "A"), Naive(H)
    for i in range(400):  # one an hour: 16 days, the first 9 behind the horizon
        state = store.apply(apply_delta(state, -1, T0 + i * 3_600_000, f"e{i}", horizon=H, chunking=store.chunking))
        naive.delta(-1, T0 + i * 3_600_000)
    base = naive.base()
    assert base == T0 + (399 - 168 - 1) * 3_600_000
    # folded already (chunk 0 went into the base) or still in a live chunk: the base is the same
    assert state.base_ts is not None and state.base_ts <= base
    for at in (T0 + 5 * 3_600_000, base - 1):
        r = apply_absolute(state, 50, at, "old", horizon=H, chunking=store.chunking)
        assert (r.state, r.changed, r.chunks) == (state, False, ())
        [alert] = r.alerts
        assert (alert.alert, alert.on_hand, alert.message) == (STALE_ABSOLUTE, -400, (
            f"sku A: count 50 at {at} is older than the lateness horizon's base at {base} (the changes after it "
            f"are no longer kept one by one); ignored"))
    r = apply_absolute(state, 50, base, "at-base", horizon=H, chunking=store.chunking)
    naive.count(50, base)
    assert r.changed and r.state.on_hand == naive.on_hand == 50 - 169


def test_a_head_of_an_older_version_with_every_delta_reads_and_is_closed_into_chunks():
    old = {"tenant_id": "t1", "sku": "A", "on_hand": 9_000, "reserved": 0, "absolute_ts": T0,
           "absolute_qty": 10_000, "deltas": [v for i in range(1_000) for v in (T0 + 1 + i, -1)],
           "updated_at": T0 + 1_000, "last_event_id": "e999", "location_id": None, "reason": "SALE"}
    state, store = StockState.from_dict(old), Store()
    assert (state.on_hand, len(state.deltas), state.chunk_hi) == (9_000, 1_000, 0)
    state = store.apply(apply_delta(state, -1, T0 + 2_000, "new", kind="sale", horizon=H, chunking=store.chunking))
    assert (state.on_hand, len(state.deltas), state.chunk_hi, len(store.chunks)) == (8_999, 1_001 % K, 15, 15)
    late = apply_absolute(state, 100, T0 + 500, "late", horizon=H, chunking=store.chunking)
    assert late.state.on_hand == 100 - 500 - 1


def test_a_count_reads_past_a_chunk_of_late_deltas_to_an_older_chunk_holding_newer_ones():
    # chunk 0 holds deltas at 100..103 (arrived first), chunk 1 late ones at 50..53: a count at 70 must read both
    store = Store(4)
    state, naive = StockState("t1", "A"), Naive(None)
    for ts in (100, 101, 102, 103, 50, 51, 52, 53):
        state = store.apply(apply_delta(state, -1, ts, f"d{ts}", chunking=store.chunking))
        naive.delta(-1, ts)
    assert ([store.chunks[n]["max"] for n in (0, 1)], [store.chunks[n]["pmax"] for n in (0, 1)]) == \
        ([103, 53], [103, 103])
    result = apply_absolute(state, 10, 70, "c", chunking=store.chunking)
    naive.count(10, 70)
    assert result.state.on_hand == naive.on_hand == 6
    assert (result.state.chunk_lo, result.state.chunk_due) == (0, 103)  # chunk 1 is live too (its deltas dead)


def test_the_dead_deltas_of_a_chunk_do_not_reach_the_base_when_it_expires():
    store = Store(4)
    state = StockState("t1", "A")
    for ts in (10, 20, 30, 40):  # chunk 0
        state = store.apply(apply_delta(state, -1, ts, f"d{ts}", horizon=100, chunking=store.chunking))
    state = store.apply(apply_absolute(state, 50, 25, "c", horizon=100, chunking=store.chunking))
    assert (state.on_hand, state.chunk_lo, state.chunk_hi) == (48, 0, 1)  # 30 and 40 after the count
    state = store.apply(apply_delta(state, -1, 141, "far", horizon=100, chunking=store.chunking))
    # chunk 0 (newest 40) is behind the horizon (141 - 100): its live deltas 30 and 40 fold, 10 and 20 are dead
    assert (state.on_hand, state.base_ts, state.base_qty, state.chunk_lo, state.deltas) == (47, 40, -2, 1, ((141, -1),))
    assert store.chunks == {}


# -- the property: whatever K, the naive answer ----------------------------------------------------------------
ops = st.lists(st.tuples(st.sampled_from(["delta", "delta", "delta", "count"]), st.integers(0, 40),
                         st.integers(-5, 5)), min_size=1, max_size=150)


@settings(max_examples=1_000, deadline=None)
@given(ops, st.sampled_from([1, 2, 3, 5, 8]), st.sampled_from([None, 4, 10, 25]))
def test_chunked_state_gives_the_naive_answer_whatever_k(events, k, horizon):
    store, naive = Store(k), Naive(horizon)
    state = unchunked = StockState("t1", "A")
    clock = 0
    for n, (what, back, q) in enumerate(events):
        clock += 1
        ts = clock - back  # out of order: up to 40 behind the newest
        if what == "count":
            result = apply_absolute(state, abs(q), ts, f"e{n}", horizon=horizon, chunking=store.chunking)
            plain = apply_absolute(unchunked, abs(q), ts, f"e{n}", horizon=horizon)
            applied = naive.count(abs(q), ts)
            stale = [a.message for a in result.alerts if a.alert == STALE_ABSOLUTE]
            assert bool(stale) == (not applied)
            assert stale == [a.message for a in plain.alerts if a.alert == STALE_ABSOLUTE]
        elif q:
            result = apply_delta(state, q, ts, f"e{n}", horizon=horizon, chunking=store.chunking)
            plain = apply_delta(unchunked, q, ts, f"e{n}", horizon=horizon)
            assert result.changed == naive.delta(q, ts) == plain.changed
        else:
            continue
        assert result.alerts == plain.alerts
        state, unchunked = store.apply(result), plain.state
        assert state.on_hand == naive.on_hand == unchunked.on_hand
        assert state.level() == unchunked.level()
        check_bounds(state, store, k)
        # on_hand = count + base + every live delta (a chunk's deltas at or before the count are dead)
        live = [(t, q) for c in range(state.chunk_lo, state.chunk_hi)
                for t, q in zip(store.chunks[c]["d"][::2], store.chunks[c]["d"][1::2], strict=True)
                if state.absolute_ts is None or t > state.absolute_ts]
        assert state.on_hand == (state.absolute_qty or 0) + state.base_qty + sum(q for _, q in
                                                                                 (*live, *state.deltas))


# -- the fold --------------------------------------------------------------------------------------------------
def test_the_fold_keeps_chunks_in_their_own_table_and_answers_as_the_unchunked_fold():
    events = [count("A", 100_000, event_id="c0", ts=T0)]
    events += [delta("A", -1 - i % 2, event_id=f"d{i}", ts=T0 + 1 + i) for i in range(300)]
    events += [count("A", 500, event_id="late", ts=T0 + 150), delta("A", 3, event_id="d-late", ts=T0 + 100)]
    events += [delta("A", -1, event_id=f"e{i}", ts=T0 + 1_000 + i) for i in range(100)]
    events += events[5:20]  # redelivered: duplicates change nothing
    chunked, out = serial_fold(events)
    plain, plain_out = serial_fold(events, FoldConfig(stock_chunk=None))
    assert out == plain_out
    levels = emits(out, "stock.levels")
    assert levels[-1]["on_hand"] == 500 - sum(1 + i % 2 for i in range(150, 300)) - 100
    assert stock_of(chunked, "t1", "A").level() == stock_of(plain, "t1", "A").level()
    assert len(plain.tables["stock"]["t1:A"]["deltas"]) == 2 * 250
    head = chunked.tables["stock"]["t1:A"]
    assert head["chunks"][1:3] == [2, 6] and len(head["deltas"]) == 2 * 16  # 300 + 100 deltas, 6 chunks closed
    assert sorted(chunked.tables["stock_chunks"]) == [f"t1:A#{n}" for n in range(2, 6)]
