"""Tenant-log frames and the records admit hands to the fold of its worker (streams/tenantlog.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.state import MAX_VALUE_BYTES, _loads, check_value
from streams.tenantlog import TOPICS, Admitted, Entry, FrameWriter, entries, record_bytes

entry = st.builds(Entry, st.sampled_from(TOPICS), st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1),
                  st.none() | st.binary(max_size=40), st.binary(max_size=200))


@given(st.lists(entry, max_size=30))
def test_frames_carry_every_entry_in_order(items):
    writer = FrameWriter()
    for e in items:
        writer.add(e.topic, e.partition, e.offset, e.key, e.value)
    got = [e for frame in writer.close() for e in entries(frame)]
    assert got == items


def test_the_fold_takes_what_admit_decoded_only_for_the_same_bytes_and_once():
    admitted = Admitted()
    admitted.local.add(1)
    record = {"event_id": "e1"}
    admitted.keep("sales", 2, 7, b"\x00abc", record, 1)
    assert admitted.take(Entry("sales", 2, 7, None, b"\x00abd")) is None  # other bytes at the same place
    admitted.keep("sales", 2, 7, b"\x00abc", record, 1)
    assert admitted.take(Entry("sales", 2, 8, None, b"\x00abc")) is None  # another place
    assert admitted.take(Entry("sales", 2, 7, None, b"\x00abc")) is record
    assert admitted.take(Entry("sales", 2, 7, None, b"\x00abc")) is None  # taken once
    assert len(admitted) == 0


def test_a_full_store_keeps_nothing_more_until_taken_or_stale():
    admitted = Admitted(most=2, stale_after=3600)
    admitted.local.add(0)
    for offset in range(3):
        admitted.keep("sales", 0, offset, b"v", {"n": offset}, 0)
    assert len(admitted) == 2 and admitted.take(Entry("sales", 0, 2, None, b"v")) is None
    admitted.sweep()  # nothing is stale yet
    assert len(admitted) == 2
    admitted.stale_after = 0.0
    admitted.sweep()
    assert len(admitted) == 0
    admitted.keep("sales", 0, 5, b"v", {"n": 5}, 0)
    assert admitted.take(Entry("sales", 0, 5, None, b"v")) == {"n": 5}


def test_a_store_keeps_about_its_budget_of_decoded_bytes_and_counts_them_back_exactly():
    small, big = b"v" * 10, b"w" * 1000
    admitted = Admitted(budget=record_bytes(big) + record_bytes(small), stale_after=3600)
    admitted.local.update({0, 1})
    admitted.keep("sales", 0, 0, big, {"n": 0}, 0)
    admitted.keep("sales", 0, 1, small, {"n": 1}, 1)
    assert admitted.bytes == record_bytes(big) + record_bytes(small) and admitted.full()
    admitted.keep("sales", 0, 2, small, {"n": 2}, 0)  # over budget: not kept (the fold decodes it)
    assert len(admitted) == 2
    assert admitted.take(Entry("sales", 0, 0, None, b"other")) is None  # other bytes: dropped all the same
    assert admitted.bytes == record_bytes(small) and not admitted.full()
    admitted.keep("sales", 0, 3, small, {"n": 3}, 0)
    admitted.keep("sales", 0, 3, small, {"n": 3}, 0)  # kept again at the same place: counted once
    assert admitted.bytes == 2 * record_bytes(small)
    admitted.drop(1)
    assert admitted.bytes == record_bytes(small) and len(admitted) == 1
    assert admitted.take(Entry("sales", 0, 3, None, small)) == {"n": 3}
    assert admitted.bytes == 0 and len(admitted) == 0
    admitted.keep("sales", 0, 4, big, {"n": 4}, 0)
    admitted.keep("sales", 0, 5, small, {"n": 5}, 0)
    admitted.keep("sales", 0, 6, small, {"n": 6}, 0)  # full again
    admitted.stale_after = 0.0
    admitted.sweep()
    assert admitted.bytes == 0 and len(admitted) == 0


def test_only_records_for_partitions_folded_here_are_kept_and_a_partition_moved_away_is_dropped():
    admitted = Admitted()
    admitted.local.update({0, 3})
    admitted.keep("sales", 0, 1, b"v", {"n": 1}, 3)
    admitted.keep("sales", 0, 2, b"v", {"n": 2}, 1)  # folded by another worker: never taken here
    admitted.keep("sales", 0, 3, b"v", {"n": 3}, 0)
    assert len(admitted) == 2
    admitted.drop(3)
    assert admitted.local == {0} and len(admitted) == 1
    admitted.keep("sales", 0, 4, b"v", {"n": 4}, 3)
    assert admitted.take(Entry("sales", 0, 1, None, b"v")) is None
    assert admitted.take(Entry("sales", 0, 4, None, b"v")) is None
    assert admitted.take(Entry("sales", 0, 3, None, b"v")) == {"n": 3}


def test_check_value_returns_the_stored_encoding_and_refuses_what_cannot_be_stored():
    value = {"on_hand": 3, "deltas": [[1, 2]], "big": 2**70}
    assert _loads(check_value(value)) == value
    limit = MAX_VALUE_BYTES // 4
    assert check_value("x" * (limit - 2)) == b'"' + b"x" * (limit - 2) + b'"'  # exactly at the limit
    with pytest.raises(ValueError) as refused:
        check_value("x" * (limit - 1))
    assert str(refused.value) == f"a state value of {limit + 1} bytes (at most {limit})"
    with pytest.raises(TypeError):
        check_value({"when": object()})  # not JSON-plain

