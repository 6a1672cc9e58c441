"""The stored form of a state value (streams/state.py): the value's JSON, then its undo entries as bytes."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from streams.state import _dumps, _entry, _loads, pack, unpack

plain = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                 max_size=4), max_leaves=12)


@given(plain, st.lists(st.tuples(st.integers(0, 2**63 - 1), st.text(max_size=12), plain), max_size=4))
def test_a_value_and_its_history_round_trip(value, history):
    entries = [_entry(end, session, _dumps(before)) for end, session, before in history]
    got_value, raw, got = unpack(pack(_dumps(value), entries))
    assert got_value == value and _loads(raw) == value  # integers beyond 64 bits too (standard library)
    assert [(e[0], e[1], _loads(e[2])) for e in got] == [(end, s, before) for end, s, before in history]
    assert [e[3] for e in got] == [e[3] for e in entries]  # the undo entries are kept as the bytes they were


def test_the_earlier_json_form_is_still_read():
    old = json.dumps([{"on_hand": 3}, [[12, "w1-abc", {"on_hand": 1}], [15, "w1-abc", None]]]).encode()
    value, raw, history = unpack(old)
    assert value == {"on_hand": 3} and _loads(raw) == value
    assert [(e[0], e[1], _loads(e[2])) for e in history] == [(12, "w1-abc", {"on_hand": 1}), (15, "w1-abc", None)]
    again = unpack(pack(raw, history))
    assert again[0] == value and [e[3] for e in again[2]] == [e[3] for e in history]
