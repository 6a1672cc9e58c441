import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.idempotency import Decision, decide, fingerprint
from streams.core.stock import (
    NEGATIVE_STOCK,
    OVERSOLD,
    STALE_ABSOLUTE,
    Alert,
    StockState,
    apply_absolute,
    apply_delta,
    validate_inventory_change,
)

EMPTY = StockState("t1", "A")


def test_no_absolute_means_sum_of_deltas():
    r1 = apply_delta(EMPTY, 5, 100, "e1")
    r2 = apply_delta(r1.state, -2, 50, "e2")
    assert r2.state.on_hand == 3
    assert r2.state.deltas == ((50, -2), (100, 5))
    assert r2.changed and r2.alerts == ()


def test_late_absolute_keeps_only_later_deltas():
    s = apply_delta(EMPTY, 5, 10, "e1").state
    s = apply_delta(s, -2, 30, "e2").state
    r = apply_absolute(s, 7, 20, "e3", "WH1")
    assert r.state.on_hand == 5
    assert (r.state.absolute_ts, r.state.absolute_qty, r.state.deltas) == (20, 7, ((30, -2),))
    assert (r.state.updated_at, r.state.last_event_id, r.state.location_id) == (20, "e3", "WH1")


def test_delta_at_or_before_absolute_changes_nothing():
    s = apply_absolute(EMPTY, 10, 100, "e1").state
    for ts in (99, 100):
        r = apply_delta(s, -4, ts, "e2", kind="sale")
        assert r.state is s and not r.changed and r.alerts == ()
    assert apply_delta(s, -4, 101, "e3").state.on_hand == 6


def test_stale_absolute_is_ignored_and_reported():
    s = apply_absolute(EMPTY, 10, 100, "e1").state
    s = apply_delta(s, -3, 150, "e2").state
    r = apply_absolute(s, 50, 90, "e3")
    assert r.state is s
    assert not r.changed
    assert r.alerts == (
        Alert(
            "t1",
            "A",
            STALE_ABSOLUTE,
            7,
            "e3",
            "sku A: count 50 at 90 is older than the count 10 at 100; ignored",
            90,
        ),
    )


def test_same_timestamp_absolute_last_writer_wins():
    s = apply_absolute(EMPTY, 10, 100, "e1").state
    r = apply_absolute(s, 12, 100, "e2")
    assert r.changed and r.alerts == ()
    assert (r.state.on_hand, r.state.last_event_id) == (12, "e2")


def test_negative_stock_and_oversold_alerts():
    s = apply_absolute(EMPTY, 2, 10, "e1").state
    inv = apply_delta(s, -5, 20, "e2", "WH1", kind="inventory")
    assert inv.state.on_hand == -3
    assert inv.alerts == (
        Alert("t1", "A", NEGATIVE_STOCK, -3, "e2", "sku A: on_hand -3 after change of -5 at 20", 20),
    )
    sale = apply_delta(s, -5, 20, "e3", kind="sale")
    assert sale.state.on_hand == -3
    assert [(a.alert, a.on_hand, a.event_id) for a in sale.alerts] == [(OVERSOLD, -3, "e3")]
    restock = apply_delta(sale.state, 1, 30, "e4", kind="restock")
    assert [(a.alert, a.on_hand) for a in restock.alerts] == [(NEGATIVE_STOCK, -2)]
    assert apply_delta(restock.state, 2, 40, "e5").alerts == ()


def test_absolute_under_later_deltas_can_be_negative():
    s = apply_delta(EMPTY, -5, 30, "e1", kind="sale").state
    r = apply_absolute(s, 3, 20, "e2")
    assert r.state.on_hand == -2
    assert [(a.alert, a.on_hand) for a in r.alerts] == [(NEGATIVE_STOCK, -2)]


def test_the_reason_of_the_last_change_is_kept():
    s = apply_absolute(EMPTY, 10, 100, "e0").state
    assert s.reason == "COUNT"
    s = apply_delta(s, -1, 110, "e1").state
    assert s.reason == "ADJUSTMENT"
    assert apply_delta(s, -1, 120, "e2", kind="sale").state.reason == "SALE"
    assert apply_delta(s, -1, 120, "e2", kind="sale", reason="ORDER").state.reason == "ORDER"
    assert apply_delta(s, 1, 120, "e3", kind="restock").state.reason == "RETURN"
    assert apply_delta(s, 5, 120, "e4", reason="GOODS_RECEIPT").state.level()["reason"] == "GOODS_RECEIPT"
    assert apply_absolute(s, 3, 130, "e5", None, "CATALOG").state.reason == "CATALOG"
    unchanged = apply_delta(s, 5, 90, "e6", reason="GOODS_RECEIPT")  # inside the count: nothing changes
    assert unchanged.state is s and not unchanged.changed


def test_state_round_trips_through_json():
    s = apply_absolute(EMPTY, 10, 100, "e0", "WH1").state
    s = apply_delta(s, -3, 150, "e1").state
    plain = json.loads(json.dumps(s.to_dict()))
    assert plain["deltas"] == [150, -3]
    assert StockState.from_dict(plain) == s
    assert s.level() == {
        "tenant_id": "t1",
        "sku": "A",
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
        "updated_at": 150,
        "last_event_id": "e1",
        "location_id": None,
        "reason": "ADJUSTMENT",
    }


def test_validate_inventory_change():
    assert validate_inventory_change({"sku": "A", "new_quantity": 0}) == []
    assert validate_inventory_change({"sku": "A", "quantity_change": -2}) == []
    assert validate_inventory_change({"sku": "A", "new_quantity": 3, "quantity_change": 1}) == [
        "both new_quantity and quantity_change are set; exactly one is required"
    ]
    assert validate_inventory_change({"sku": "", "new_quantity": None}) == [
        "sku is missing or empty",
        "neither new_quantity nor quantity_change is set; exactly one is required",
    ]
    assert validate_inventory_change({"sku": "A", "new_quantity": -1}) == [
        "new_quantity must not be negative, got -1"
    ]
    assert validate_inventory_change({"sku": "A", "quantity_change": 0}) == ["quantity_change must not be zero"]
    assert validate_inventory_change({"new_quantity": 1.5}) == [
        "sku is missing or empty",
        "new_quantity must be an integer, got 1.5",
    ]


# --- properties -----------------------------------------------------------------

# (is_absolute, qty); timestamps are drawn separately so they are distinct
_event = st.one_of(
    st.tuples(st.just(True), st.integers(0, 100)),
    st.tuples(st.just(False), st.integers(-50, 50).filter(lambda q: q != 0)),
)


@st.composite
def _events(draw, max_size=12):
    kinds = draw(st.lists(_event, min_size=1, max_size=max_size))
    stamps = draw(st.lists(st.integers(0, 10_000), min_size=len(kinds), max_size=len(kinds), unique=True))
    return [(f"e{i}", ts, is_abs, qty) for i, ((is_abs, qty), ts) in enumerate(zip(kinds, stamps, strict=True))]


def _apply(state, event):
    event_id, ts, is_abs, qty = event
    if is_abs:
        return apply_absolute(state, qty, ts, event_id).state
    return apply_delta(state, qty, ts, event_id).state


def _expected_on_hand(events):
    absolutes = [(ts, qty) for _, ts, is_abs, qty in events if is_abs]
    if not absolutes:
        return sum(qty for *_, qty in events)
    abs_ts, abs_qty = max(absolutes)
    return abs_qty + sum(qty for _, ts, is_abs, qty in events if not is_abs and ts > abs_ts)


@settings(max_examples=200)
@given(st.data())
def test_stock_is_independent_of_arrival_order(data):
    events = data.draw(_events())
    shuffled = data.draw(st.permutations(events))
    a = b = EMPTY
    for e in events:
        a = _apply(a, e)
    for e in shuffled:
        b = _apply(b, e)
    assert a.on_hand == b.on_hand == _expected_on_hand(events)
    assert (a.absolute_ts, a.absolute_qty, a.deltas) == (b.absolute_ts, b.absolute_qty, b.deltas)


def _fold_with_idempotency(events, state=EMPTY, seen=None):
    """What the shell does: fingerprint, decide, apply only on APPLY."""
    seen = dict(seen or {})
    for event_id, ts, is_abs, qty in events:
        body = {"sku": "A", "new_quantity": qty} if is_abs else {"sku": "A", "quantity_change": qty}
        fp = fingerprint("inventory.change", "t1", body)
        decision = decide(seen.get(event_id), fp)
        assert decision is not Decision.CONFLICT
        if decision is Decision.APPLY:
            state = _apply(state, (event_id, ts, is_abs, qty))
            seen[event_id] = fp
    return state, seen


@settings(max_examples=200)
@given(st.data())
def test_applying_a_sequence_twice_equals_once(data):
    events = data.draw(_events())
    # duplicates anywhere: a redelivery may come at any later point, restamped or not
    extra = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    redelivered = [(eid, ts + data.draw(st.integers(0, 5)), is_abs, qty) for eid, ts, is_abs, qty in extra]
    once, seen = _fold_with_idempotency(events)
    twice, _ = _fold_with_idempotency(events + redelivered + events)
    assert twice == once
    # replaying the whole topic onto the stored state changes nothing either
    replayed, _ = _fold_with_idempotency(events, once, seen)
    assert replayed == once


def test_conflicting_reuse_of_an_event_id_is_refused():
    fp1 = fingerprint("inventory.change", "t1", {"sku": "A", "quantity_change": 5})
    fp2 = fingerprint("inventory.change", "t1", {"sku": "A", "quantity_change": 6})
    assert decide(fp1, fp2) is Decision.CONFLICT
