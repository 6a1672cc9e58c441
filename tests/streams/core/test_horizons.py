"""SPEC 2 "Cost does not grow with history": the lateness horizon of a SKU's deltas and the dedup horizon
of event ids, in the pure core (exact results; the serial fold is what the worker runs)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.fold import DAY_MS, EXPIRY_CHUNK, DictState, FoldConfig, fold, seen_of, serial_fold, stock_of
from streams.core.stock import STALE_ABSOLUTE, StockState, apply_absolute, apply_delta

from .foldkit import count, delta, emits

H = 7 * DAY_MS  # the default lateness horizon
HOUR = 3_600_000


def size(state: StockState) -> int:
    return len(json.dumps(state.to_dict(), separators=(",", ":")))


# -- the lateness horizon -----------------------------------------------------------------------------------
def test_deltas_behind_the_horizon_fold_into_the_base():
    s = apply_absolute(StockState("t1", "A"), 100, 0, "c0", horizon=H).state
    for n, ts in enumerate((1 * DAY_MS, 2 * DAY_MS, 9 * DAY_MS)):
        s = apply_delta(s, -(n + 1), ts, f"d{n}", horizon=H).state
    # newest is day 9: the delta of day 1 is more than 7 days behind it, the one of day 2 exactly 7 (kept)
    assert (s.on_hand, s.absolute_ts, s.absolute_qty, s.base_ts, s.base_qty, s.deltas) == \
        (94, 0, 100, DAY_MS, -1, ((2 * DAY_MS, -2), (9 * DAY_MS, -3)))
    assert s.to_dict()["base_ts"] == DAY_MS and StockState.from_dict(s.to_dict()) == s
    s = apply_delta(s, -3, 10 * DAY_MS, "d3", horizon=H).state
    assert (s.on_hand, s.base_ts, s.base_qty, s.deltas) == (91, 2 * DAY_MS, -3, ((9 * DAY_MS, -3), (10 * DAY_MS, -3)))
    # a delta at or before the base (after the count) adds to the base; one at or before the count does nothing
    late = apply_delta(s, -4, 1 * DAY_MS + 5, "late", horizon=H)
    assert (late.changed, late.state.on_hand, late.state.base_qty, late.state.deltas) == \
        (True, 87, -7, s.deltas)
    inside = apply_delta(s, -4, 0, "inside", horizon=H)
    assert (inside.changed, inside.state) == (False, s)


def test_a_count_older_than_the_base_is_stale_and_one_within_the_horizon_is_exact():
    s = apply_absolute(StockState("t1", "A"), 100, 0, "c0", horizon=H).state
    s = apply_delta(s, -1, 1 * DAY_MS, "d1", horizon=H).state
    s = apply_delta(s, -2, 9 * DAY_MS, "d2", horizon=H).state
    stale = apply_absolute(s, 50, 1 * DAY_MS - 1, "old", horizon=H)
    assert (stale.changed, stale.state) == (False, s)
    [alert] = stale.alerts
    assert (alert.alert, alert.on_hand, alert.event_id, alert.raised_at) == (STALE_ABSOLUTE, 97, "old", DAY_MS - 1)
    assert alert.message == (f"sku A: count 50 at {DAY_MS - 1} is older than the lateness horizon's base at "
                             f"{DAY_MS} (the changes after it are no longer kept one by one); ignored")
    # at the base's own timestamp: the base is inside the count, the later delta counts
    at_base = apply_absolute(s, 50, 1 * DAY_MS, "c1", horizon=H).state
    assert (at_base.on_hand, at_base.base_ts, at_base.base_qty, at_base.deltas) == (48, None, 0, ((9 * DAY_MS, -2),))
    within = apply_absolute(s, 70, 5 * DAY_MS, "c2", horizon=H).state
    assert (within.on_hand, within.absolute_ts, within.deltas) == (68, 5 * DAY_MS, ((9 * DAY_MS, -2),))


def test_no_horizon_keeps_every_delta():
    s = StockState("t1", "A")
    for day in range(20):
        s = apply_delta(s, 1, day * DAY_MS, f"d{day}", horizon=None).state
    assert (s.on_hand, len(s.deltas), s.base_ts) == (20, 20, None)


def test_a_skus_stored_value_stays_bounded_over_10000_deltas_beyond_the_horizon():
    # 10,000 sales an hour apart (417 days, far beyond the 7-day horizon), after one count
    t0 = 1_767_225_600_000  # 2026-01-01: timestamps of one width
    s = apply_absolute(StockState("t1", "A"), 1_000_000, t0, "c0", horizon=H).state
    sizes = []
    for n in range(1, 10_001):
        s = apply_delta(s, -1, t0 + n * HOUR, f"e-{n:05d}", "LOC-1", "sale", horizon=H).state
        sizes.append(size(s))
    kept = H // HOUR + 1  # the deltas stamped at most 7 days (168 hours) behind the newest
    assert (s.on_hand, len(s.deltas), s.deltas[0][0], s.base_qty) == (990_000, kept, t0 + 10_000 * HOUR - H,
                                                                      -(10_000 - kept))
    # once the horizon is full the value grows no more (but for base_qty's digits: -1 to -9831)
    assert sizes[kept] == 3_122 and max(sizes) == sizes[-1] == sizes[kept] + 3


events = st.lists(st.tuples(st.booleans(), st.integers(0, 30 * DAY_MS), st.integers(-50, 50)), max_size=60)


def run(ops, horizon):
    s, stale = StockState("t1", "A"), []
    for n, (is_count, ts, q) in enumerate(ops):
        if is_count:
            r = apply_absolute(s, abs(q), ts, f"e{n}", horizon=horizon)
            stale += [a.message for a in r.alerts if a.alert == STALE_ABSOLUTE]
        elif q:
            r = apply_delta(s, q, ts, f"e{n}", horizon=horizon)
        else:
            continue
        s = r.state
    return s, stale


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from([HOUR, DAY_MS, H]))
def test_the_horizon_changes_nothing_but_refusing_counts_older_than_the_base(ops, horizon):
    bounded, stale = run(ops, horizon)
    full, full_stale = run(ops, None)
    s = bounded
    assert s.on_hand == (s.absolute_qty or 0) + s.base_qty + sum(q for _, q in s.deltas)
    assert all(ts >= s.deltas[-1][0] - horizon for ts, _ in s.deltas)  # only deltas within the horizon are kept
    assert list(s.deltas) == sorted(s.deltas) and (s.base_ts is None or all(ts > s.base_ts for ts, _ in s.deltas))
    if not any("lateness horizon" in m for m in stale):  # then the stock rule holds exactly
        assert (s.on_hand, s.absolute_ts, s.updated_at, s.last_event_id) == \
            (full.on_hand, full.absolute_ts, full.updated_at, full.last_event_id)
        assert stale == full_stale


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, H - 1), st.integers(-50, 50)), max_size=60))
def test_within_the_horizon_the_stock_rule_holds_exactly(ops):
    assert run(ops, H) == run(ops, None)


# -- the dedup horizon ---------------------------------------------------------------------------------------
def test_event_ids_are_forgotten_after_the_dedup_horizon_with_bounded_state():
    config = FoldConfig(dedup_horizon_ms=35 * DAY_MS)
    state = DictState()
    n = 1_000  # one change an hour: 41.7 days
    for i in range(n):
        fold(state, delta("A", 1, event_id=f"e{i}", ts=i * HOUR), config)
    mark = (n - 1) * HOUR
    remembered = [f"e{i}" for i in range(n) if i * HOUR >= mark - 35 * DAY_MS]
    assert sorted(k.split(":", 1)[1] for k in state.tables["seen"]) == sorted(remembered)
    assert len(remembered) == 35 * 24 + 1
    head = n - len(remembered)
    open_ids = [[f"e{i}", i * HOUR] for i in range(n - n % EXPIRY_CHUNK, n)]  # the chunk being filled
    assert state.tables["expiry"]["t1:#"] == {"mark": mark, "head": head, "tail": n, "due": head * HOUR,
                                              "open": open_ids}
    chunks = sorted(int(k.split(":")[1]) for k in state.tables["expiry"] if not k.endswith("#"))
    assert chunks == list(range(head // EXPIRY_CHUNK, n // EXPIRY_CHUNK))  # the full ones not yet swept
    assert state.tables["expiry"][f"t1:{chunks[-1]}"] == [[f"e{i}", i * HOUR] for i in range(
        chunks[-1] * EXPIRY_CHUNK, (chunks[-1] + 1) * EXPIRY_CHUNK)]
    # a duplicate within the horizon changes nothing; one of a forgotten id is applied again
    assert fold(state, delta("A", 1, event_id=remembered[0], ts=int(remembered[0][1:]) * HOUR), config) == []
    assert stock_of(state, "t1", "A").on_hand == n
    again = fold(state, delta("A", 1, event_id="e0", ts=0), config)
    assert [lv["on_hand"] for lv in emits(again, "stock.levels")] == [n + 1]
    assert seen_of(state, "t1", "e0") is not None


def test_a_late_event_is_never_forgotten_before_the_horizon_and_the_sweep_is_bounded():
    config = FoldConfig(dedup_horizon_ms=10 * DAY_MS)
    state = DictState()
    fold(state, delta("A", 1, event_id="new", ts=20 * DAY_MS), config)
    fold(state, delta("A", 1, event_id="late", ts=1 * DAY_MS), config)  # behind the horizon already
    for i in range(10):  # each applied event forgets at most 4 ids
        fold(state, delta("B", 1, event_id=f"b{i}", ts=20 * DAY_MS + i), config)
    # "new" (ts day 20) is within the horizon and heads the queue: "late" waits behind it
    assert seen_of(state, "t1", "new") is not None and seen_of(state, "t1", "late") is not None
    fold(state, delta("B", 1, event_id="far", ts=31 * DAY_MS), config)
    # both of them and 2 of the b's (within one sweep of 4), in queue order
    assert seen_of(state, "t1", "new") is None and seen_of(state, "t1", "late") is None
    assert sorted(k for k in state.tables["seen"]) == sorted(f"t1:{e}" for e in ["far"] + [f"b{i}" for i in
                                                                                          range(2, 10)])
    queue = [["new", 20 * DAY_MS], ["late", DAY_MS], *[[f"b{i}", 20 * DAY_MS + i] for i in range(10)],
             ["far", 31 * DAY_MS]]
    assert state.tables["expiry"] == {"t1:#": {"mark": 31 * DAY_MS, "head": 4, "tail": 13, "due": 20 * DAY_MS + 1,
                                               "open": queue}}


def test_no_dedup_horizon_remembers_every_id():
    state, _ = serial_fold([delta("A", 1, event_id=f"e{i}", ts=i * DAY_MS) for i in range(50)],
                           FoldConfig(dedup_horizon_ms=None))
    assert len(state.tables["seen"]) == 50 and state.tables["expiry"] == {}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 60 * DAY_MS)), max_size=80))
def test_no_id_within_the_dedup_horizon_is_forgotten(ids):
    horizon = 10 * DAY_MS
    config = FoldConfig(dedup_horizon_ms=horizon)
    state = DictState()
    first: dict[int, int] = {}
    mark = None
    for i, ts in ids:
        fold(state, count("A", i, event_id=f"e{i}", ts=ts), config)
        if seen_of(state, "t1", f"e{i}") is not None and i not in first:
            first[i] = ts
        mark = ts if mark is None else max(mark, ts)
        for j, t in list(first.items()):
            if seen_of(state, "t1", f"e{j}") is None:
                assert t < mark - horizon  # forgotten only once behind the horizon
                del first[j]
    queue = state.tables["expiry"].get("t1:#")
    if queue is not None:
        assert queue["tail"] - queue["head"] == len(state.tables["seen"])
