"""The tenant log: one internal topic, keyed by tenant_id, whose messages are frames of admitted events.

Every event of a tenant reaches one partition of this topic, in one order, and one fold applies it
(`streams.fold`). A frame carries many events of one tenant in the order admit read them, so the
fold pays the per-message cost once per frame. Each event keeps its original bytes and where it
was read (topic, partition, offset), so the fold can dead-letter it exactly as it arrived; frames
never carry a second encoding of the record. An event is decoded once on its worker: admit keeps
the records it decoded (`Admitted`), and the fold of the same worker takes them by where they were
read and their bytes; only what it does not find there (admitted by another worker, or before a
restart) is decoded again.

Wire form of a frame: a version byte, then per event `>BiqiI` (input topic index, partition, offset,
key length or -1, value length), the key bytes and the value bytes.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2

from stockledger.topics import INPUTS

VERSION = 1
FRAME_BYTES = 512 * 1024  # a frame is cut beyond this, well below Kafka's 1 MiB message limit
_HEAD = struct.Struct(">BiqiI")
TOPICS = tuple(t.name for t in INPUTS)
_INDEX = {name: i for i, name in enumerate(TOPICS)}


def tenant_partition(tenant: str, partitions: int) -> int:
    """The tenant-log partition of a tenant: murmur2 of its id, as every producer of the log picks it."""
    return (murmur2(tenant.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Entry:
    """One admitted event as it was read from its input topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class FrameWriter:
    """Collects a tenant's events in order and cuts them into frames of at most FRAME_BYTES."""

    __slots__ = ("frames", "_parts", "_size")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self._parts: list[bytes] = [bytes([VERSION])]
        self._size = 1

    def add(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> None:
        size = _HEAD.size + (len(key) if key else 0) + len(value)
        if self._size > 1 and self._size + size > FRAME_BYTES:
            self._cut()
        self._parts.append(_HEAD.pack(_INDEX[topic], partition, offset, -1 if key is None else len(key), len(value)))
        if key:
            self._parts.append(key)
        self._parts.append(value)
        self._size += size

    def _cut(self) -> None:
        self.frames.append(b"".join(self._parts))
        self._parts, self._size = [bytes([VERSION])], 1

    def close(self) -> list[bytes]:
        if self._size > 1:
            self._cut()
        return self.frames


def entries(frame: bytes) -> Iterator[Entry]:
    """The events of a frame, in order."""
    if not frame or frame[0] != VERSION:
        raise ValueError(f"not a tenant-log frame (version byte {frame[:1]!r})")
    view = memoryview(frame)
    pos, end = 1, len(frame)
    unpack = _HEAD.unpack_from
    while pos < end:
        index, partition, offset, klen, vlen = unpack(frame, pos)
        pos += _HEAD.size
        key = None
        if klen >= 0:
            key = bytes(view[pos:pos + klen])
            pos += klen
        value = bytes(view[pos:pos + vlen])
        pos += vlen
        yield Entry(TOPICS[index], partition, offset, key, value)


RECORD_OVERHEAD, RECORD_PER_BYTE = 400, 20  # a decoded record's bytes, estimated from its encoding's


def record_bytes(value: bytes) -> int:
    """What `Admitted` counts for a record decoded from `value`."""
    return RECORD_OVERHEAD + RECORD_PER_BYTE * len(value)


class Admitted:
    """The records admit decoded, until the fold of this worker takes them (so an event is decoded once).

    Keyed by where the record was read, and handed out only for the same bytes (decoding is a function
    of the bytes: the schema id is in them, and a schema id's schema never changes), so what the fold
    takes is what it would have decoded. Only records bound for a tenant-log partition this worker folds
    (`local`, kept by the fold: restored and not revoked) are kept, at most `most` of them and about
    `budget` bytes of decoded records (each counted as `record_bytes` of its encoding: a decoded record
    takes 15-21 times its Avro bytes, measured on inventory changes and sales). When full, nothing more
    is kept until the fold takes some (on a backlog admit runs ahead of the fold, and the fold decodes
    what was not kept; admit cannot wait for it, since the fold's frames and admit's input come through
    one fetch loop). `sweep` drops records kept more than `stale_after` seconds ago (folded before a
    restart), `drop` those of a partition that moved away.
    """

    __slots__ = ("most", "budget", "stale_after", "local", "_records", "_bytes")

    def __init__(self, most: int = 50_000, budget: int = 32 * 1024 * 1024, stale_after: float = 60.0):
        self.most = most
        self.budget = budget
        self.stale_after = stale_after
        self.local: set[int] = set()  # tenant-log partitions this worker's fold owns and has restored
        self._records: dict[tuple[str, int, int], tuple[float, bytes, Any, int]] = {}
        self._bytes = 0  # record_bytes of every record kept

    def keep(self, topic: str, partition: int, offset: int, value: bytes, record: Any, log_partition: int) -> None:
        if log_partition in self.local and len(self._records) < self.most and self._bytes < self.budget:
            key = (topic, partition, offset)
            old = self._records.get(key)
            if old is not None:
                self._bytes -= record_bytes(old[1])
            self._records[key] = (time.monotonic(), value, record, log_partition)
            self._bytes += record_bytes(value)

    def full(self) -> bool:
        return len(self._records) >= self.most or self._bytes >= self.budget

    def sweep(self) -> None:
        """When full, drop the records kept more than `stale_after` seconds ago (once per admit step)."""
        records = self._records
        if not self.full():
            return
        limit = time.monotonic() - self.stale_after
        stale = []
        for key, kept in records.items():  # in insertion order: the oldest first
            if kept[0] > limit:
                break
            stale.append(key)
        for key in stale:
            self._bytes -= record_bytes(records.pop(key)[1])

    def drop(self, log_partition: int) -> None:
        """`log_partition` is no longer folded here: forget it and the records kept for it."""
        self.local.discard(log_partition)
        records = self._records
        for key in [k for k, kept in records.items() if kept[3] == log_partition]:
            self._bytes -= record_bytes(records.pop(key)[1])

    def take(self, entry: Entry) -> Any | None:
        """The record admit decoded from `entry`'s bytes, or None."""
        kept = self._records.pop((entry.topic, entry.partition, entry.offset), None)
        if kept is None:
            return None
        self._bytes -= record_bytes(kept[1])
        return kept[2] if kept[1] == entry.value else None

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._records)
