"""The fold's state: per tenant-log partition, a local RocksDB and a compacted changelog in Kafka.

Tables (stock and catalog by SKU, credit by customer, sales by sale_id, payments, event ids seen) are
key spaces `<table>\\x1f<tenant>:<id>` of one store per tenant-log partition, so a tenant's state lives
with its log partition and moves with it. Every changed key is written once per batch: to RocksDB and,
through the worker's one producer, to the changelog partition of the same number. A worker with an
empty state folder restores a partition from the changelog alone; one that kept its folder reads
only the changelog's tail beyond the offset it last saw delivered.

Crash safety. The tenant log is committed after each batch's outputs and state are in Kafka. After a
crash, rebalance or partition move, the next owner reads again from the committed offset C, while
the state it restored (changelog, or a local store that may be ahead of it) can already hold the
effects of batches at or beyond C. So every stored value carries, for each batch not yet known to be
committed, the end of the batch (its last tenant-log offset + 1), the session that wrote it and the
value before it (see `pack`; the value before is kept as the bytes it was stored as, so an undo copy
is never decoded or encoded again unless it is used). A session (one assignment of the partition
to this worker) reads a value through its history: an entry of another session whose batch reaches
C or beyond (end > C) is undone (the value before it is used), so the fold sees exactly the state as
of C and, being a pure and deterministic function of it, makes the same decisions, produces the same
outputs and writes the same keys again: tables, changelog and outputs end as an uninterrupted run
leaves them.

A batch of one session can straddle the C of a later one (a session in between folded the same
frames in other batches and committed in the middle of this one's range): it is undone whole. Its
keys touched below C were folded again and rewritten by the session in between (the same frames
touch the same keys), which dropped its entries from them; for the others, the value before the
batch is the value as of C. Entries whose batch ends at or below the committed offset are dropped on
the next write of the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

from stockledger.config import Settings
from stockledger.retries import RetriesExhausted, RetryPolicy
from stockledger.topics import state_topic
from streams.outbox import Batch, Outbox

log = logging.getLogger("stockledger.worker")

SEP = "\x1f"
_OFFSET_KEY = b"\x00changelog-offset"  # next changelog offset this store has (sorts before every table key)
# The decoded-value cache of a store (`PartitionStore._cache`) is emptied when it would pass either bound:
_CACHE_MAX = 50_000  # keys
_CACHE_BYTES = 32 * 2**20  # bytes of their stored form (value and undo copies); decoded, they take a few times that
# Keys of these tables are mostly written once and seldom read again (an event id, a sale, a document a sale or
# payment claimed, a payment and its failures, an invoice, the expiry queue, a SKU's closed chunk of deltas): they
# are not kept decoded in memory after a write (RocksDB has them), so the cache holds the hot keys (stock,
# catalog, credit, refs, prices, settings, groups), whose number does not grow with the events. (Issue 17's soak:
# with "documents" cached, 1,000 events/s filled the cache to its 50,000 keys in a minute and a half, about 3 KiB
# of heap each, and the emptied heap stayed with the process.)
_WRITE_ONLY = tuple(t + SEP for t in ("seen", "expiry", "sales", "payments", "payment_failures", "invoices",
                                      "stock_chunks", "documents"))

# RocksDB's memory (issue 17), fixed per worker process whatever the number of tenant-log partitions (stores)
# it serves; every store shares the one block cache and the one write buffer manager (`rocks_options`).
BLOCK_CACHE_BYTES = 16 * 2**20  # LRU cache of data blocks, shared (else each store has its own 32 MiB cache)
# It fills to its cap whatever the load (blocks of files compaction replaced stay until evicted), so the cap is
# what it costs: the soak at 1,000 events/s, RSS at minutes 1 and 6, 165 and 188 MiB with 32 MiB, 156 and 165
# with 16. The fold reads few blocks (hot keys are decoded in `_cache`, new keys are answered by the bloom
# filters). The index and filter blocks stay with their files' table readers (see `rocks_options`): they grow
# with the state (about 1-2% of its SST bytes; "estimate-table-readers-mem"), not with the events folded.
WRITE_BUFFER_BYTES = 8 * 2**20  # one memtable of one store (RocksDB's default 64 MiB); a full one is flushed
WRITE_BUFFERS = 2  # memtables per store: the one being written and one being flushed
MEMTABLES_BYTES = 64 * 2**20  # all stores' memtables together: past it the shared manager flushes the largest
MAX_OPEN_FILES = 512  # SST files a store keeps open (its table cache), each with its index and filter blocks
BLOOM_BITS = 10  # bits per key of each SST file's bloom filter: a read of a key not stored (a new event id, a
# new document) seldom touches a data block
MAX_VALUE_BYTES = 16 * 1024 * 1024  # the state topic's max.message.bytes (Kafka's default is 1 MiB)
KAFKA_TIMEOUT = 30.0  # seconds a restore's watermark or committed-offset request may take
RESTORE_GIVE_UP = 300.0  # seconds a restore may keep failing before the worker gives up (and exits 70)
# 1, 2, 4, 8, then every 10 s between attempts of a failed restore: 30 retries wait about RESTORE_GIVE_UP
RESTORE_RETRY = RetryPolicy(retriable=lambda exc: True, first=1.0, cap=10.0, attempts=30)
_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_NULL = b"null"
_ABSENT: Any = (None, b"", [])  # the cache's answer for a key with no stored value (compared by identity; 0 bytes)

# A stored value: b"\x02", then the value's JSON (u32 length + bytes), then its undo history, each entry
# u64 end, u16 length + session, u32 length + the JSON of the value before (the bytes it was stored as).
# Values written before this format (a JSON array [value, [[end, session, before], ...]]) are still read.
_MAGIC = 2
_HEAD = struct.Struct(">BI")
_ENTRY = struct.Struct(">QH")
_LEN = struct.Struct(">I")
Entry = tuple[int, str, bytes, bytes]  # end, session, the value before (JSON), the entry as stored
Envelope = tuple[Any, bytes, list[Entry]]  # the value, its JSON, its history


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it exactly, after a space
        return b" " + _json_dumps(value).encode()  # (which orjson never writes) that says who reads it


def _loads(raw: bytes) -> Any:
    if raw[:1] == b" ":  # orjson would read an integer beyond 64 bits as a float
        return json.loads(raw)
    return orjson.loads(raw)


def _entry(end: int, session: str, before: bytes) -> Entry:
    s = session.encode()
    return end, session, before, b"".join((_ENTRY.pack(end, len(s)), s, _LEN.pack(len(before)), before))


def pack(raw: bytes, history: list[Entry]) -> bytes:
    return b"".join((_HEAD.pack(_MAGIC, len(raw)), raw, *(e[3] for e in history)))


def unpack(data: bytes) -> Envelope:
    if data[:1] != b"\x02":  # the earlier JSON form
        value, old = json.loads(data)
        return value, _dumps(value), [_entry(end, session, _dumps(before)) for end, session, before in old]
    _, n = _HEAD.unpack_from(data, 0)
    pos = _HEAD.size
    raw = data[pos:pos + n]
    pos += n
    history: list[Entry] = []
    size = len(data)
    while pos < size:
        start = pos
        end, ns = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        session = data[pos:pos + ns].decode()
        pos += ns
        (nb,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        before = data[pos:pos + nb]
        pos += nb
        history.append((end, session, before, data[start:pos]))
    return _loads(raw), raw, history


def _stored_size(env: Envelope) -> int:
    """The bytes of an envelope's stored form (its value and its undo entries)."""
    return len(env[1]) + sum(len(e[3]) for e in env[2])


def check_value(value: Any) -> bytes:
    """One event's new value of a key, encoded as the store keeps it; raises if it cannot be stored: not
    JSON-plain, or so large that its envelope (the value and those before it) could pass the changelog's
    record limit. The fold runs it per event, so such an event is dead-lettered alone instead of failing
    its whole batch's write, and hands the bytes to `View.put` (a value is encoded once)."""
    raw = _dumps(value)
    if len(raw) > MAX_VALUE_BYTES // 4:
        raise ValueError(f"a state value of {len(raw)} bytes (at most {MAX_VALUE_BYTES // 4})")
    return raw


_shared: dict[str, Any] = {}  # the block cache and write buffer manager every store of this process shares


def rocks_options() -> Options:
    """The options of every store: memory bounded by the constants above (worst case BLOCK_CACHE_BYTES +
    MEMTABLES_BYTES, and the memtable being flushed when the manager is full, for all stores together)."""
    if not _shared:  # created once, and kept: the cache and manager must outlive every store using them
        _shared["cache"] = Cache(BLOCK_CACHE_BYTES)
        _shared["buffers"] = WriteBufferManager(MEMTABLES_BYTES, False)
    table = BlockBasedOptions()
    table.set_block_cache(_shared["cache"])
    # Index and filter blocks are partitioned (4 KiB partitions) and kept in the block cache, with only each
    # file's top-level index pinned: their memory stays within the cache whatever the state's size. Left with the
    # table readers (RocksDB's default) they grew with the state (0.8 MiB a minute in the soak at 1,000 events/s);
    # whole (unpartitioned) in the 16 MiB cache they were evicted and read again on most reads once the state
    # passed ~100 MB (flat.py: steps 3x slower after 65,000 sales).
    table.set_bloom_filter(BLOOM_BITS, False)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_metadata_block_size(4096)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_top_level_index_and_filter(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(WRITE_BUFFERS)
    options.set_write_buffer_manager(_shared["buffers"])
    options.set_max_open_files(MAX_OPEN_FILES)
    return options


class RestoreFailed(Exception):
    """A partition's state could not be restored within RESTORE_GIVE_UP seconds."""


class PartitionStore:
    """The state of one tenant-log partition on this worker."""

    def __init__(self, settings: Settings, datadir: Path, partition: int, log_topic: str, group: str):
        self.settings = settings
        self.partition = partition
        self.topic = state_topic(settings.app_id)
        self.log_topic = log_topic
        self.group = group
        path = datadir / f"{self.topic}-{partition}"  # per app id: two groups never share a store
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=rocks_options())
        self.session: str | None = None  # None while not assigned here
        self.start = 0  # where this session began reading the tenant log (C)
        self.next = 0  # next tenant-log offset to apply in this session
        self.started = False  # whether the session has read its first frame (which fixes C)
        self.committed = 0  # highest committed tenant-log offset known (entries below it are dropped)
        self.ready = asyncio.Event()
        self._cache: dict[str, Envelope] = {}
        self._cache_bytes = 0  # the stored size of what `_cache` holds (see `_remember`)
        self._deleted: deque[tuple[int, str]] = deque()  # (batch end, key) of deletions not yet tombstoned

    # -- sessions -----------------------------------------------------------------------------
    async def begin(self, worker_id: str, progress: Callable[[str], None]) -> None:
        """A new assignment: restore the changelog's tail and learn C; until then `ready` is clear."""
        self.session = None
        self.ready.clear()
        self._clear_cache()
        # Deletions of the previous session not yet tombstoned stay stored as null (read as absent).
        self._deleted.clear()
        restored, committed = await self._restore_retrying(progress)
        session = f"{worker_id}-{uuid.uuid4().hex[:8]}"
        # The committed offset as the group has it; the first frame this session reads fixes C for good
        # (`first_frame`), since that is where Faust really resumed.
        self.start = self.next = self.committed = committed
        self.started = False
        self.session = session
        self._cache.clear()  # nothing read while the changelog was written to the store may stay
        self.ready.set()
        log.info("state %s[%s]: %d changelog records restored; session %s from tenant-log offset %d",
                 self.topic, self.partition, restored, session, committed)

    async def _restore_retrying(self, progress: Callable[[str], None]) -> tuple[int, int]:
        """`_restore`, tried again while it fails (the broker away or restarting: librdkafka reports the
        lost connection as an error of `consume`, and timeouts as exceptions) under the one retry policy,
        about RESTORE_GIVE_UP seconds in all; then RestoreFailed (the fold makes it the agent's death, exit
        70, rather than a partition that waits for its state for ever). Each attempt resumes from the
        changelog offset the store last wrote."""
        loop = asyncio.get_running_loop()
        what = f"restoring {self.topic}[{self.partition}]"
        try:
            return await RESTORE_RETRY.acall_async(
                lambda: loop.run_in_executor(None, self._restore, progress), what,
                on_retry=lambda exc: progress(f"{what} failed ({exc}); trying again"))
        except RetriesExhausted as exc:
            raise RestoreFailed(f"{what} failed for about {RESTORE_GIVE_UP:.0f} s: {exc.__cause__}") from exc

    def first_frame(self, offset: int) -> None:
        """The session's first frame: history entries of other sessions from here on are undone, and
        frames from here on are applied (all earlier ones are committed, so in the state already)."""
        self.start = self.next = offset
        self.committed = min(self.committed, offset)
        self.started = True

    def end(self) -> None:
        """Revoked: a batch still in flight sees the session gone and acks nothing."""
        self.session = None
        self.ready.clear()
        self._clear_cache()

    def _restore(self, progress: Callable[[str], None]) -> tuple[int, int]:
        s = self.settings
        consumer = Consumer({**s.kafka_config(), "group.id": self.group,
                             "enable.auto.commit": False, "enable.partition.eof": True,
                             "fetch.max.bytes": 64 * 1024 * 1024})
        try:
            tp = TopicPartition(self.topic, self.partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=KAFKA_TIMEOUT, cached=False)
            have = self.db.get(_OFFSET_KEY)
            start = max(int(have) if have is not None else 0, low)
            restored = 0
            if start < high:
                consumer.assign([TopicPartition(self.topic, self.partition, start if start > 0 else OFFSET_BEGINNING)])
                next_note = time.monotonic() + 5
                done = False
                while not done:
                    wb = WriteBatch(raw_mode=True)
                    n = 0
                    last = None
                    for msg in consumer.consume(10_000, 1.0):
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                done = True
                                continue
                            raise RuntimeError(f"restoring {self.topic}[{self.partition}]: {err}")
                        if msg.value() is not None:
                            wb.put(msg.key(), msg.value())  # type: ignore[arg-type]
                        else:  # a tombstone: the key was deleted
                            wb.delete(msg.key())  # type: ignore[arg-type]
                        n += 1
                        last = msg.offset()
                        if last >= high - 1:  # type: ignore[operator]
                            done = True
                    if last is not None:
                        wb.put(_OFFSET_KEY, str(last + 1).encode())
                    if n:
                        self.db.write(wb)
                        restored += n
                    if time.monotonic() > next_note:
                        progress(f"restoring {self.topic}[{self.partition}]: {restored} "
                                 f"of about {high - start} records")
                        next_note = time.monotonic() + 5
            committed = consumer.committed([TopicPartition(self.log_topic, self.partition)],
                                           timeout=KAFKA_TIMEOUT)[0].offset
            return restored, max(committed, 0)
        finally:
            consumer.close()

    # -- the decoded-value cache ---------------------------------------------------------------
    def _remember(self, key: str, env: Envelope) -> None:
        """Keep `key`'s envelope decoded, a hot key only (not of a `_WRITE_ONLY` table, nor a value of more than
        an eighth of _CACHE_BYTES, which is read from RocksDB each time); the cache is emptied
        first when it would pass _CACHE_MAX keys or _CACHE_BYTES, so it never holds more."""
        cache = self._cache
        size = _stored_size(env)
        if key.startswith(_WRITE_ONLY) or size > _CACHE_BYTES // 8:  # a write-once key, or one huge value
            self._forget(key)
            return
        old = cache.get(key)
        if old is not None:
            self._cache_bytes -= _stored_size(old)
        if old is None and len(cache) >= _CACHE_MAX or self._cache_bytes + size > _CACHE_BYTES:
            self._clear_cache()
        cache[key] = env
        self._cache_bytes += size

    def _forget(self, key: str) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= _stored_size(old)

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    # -- reads --------------------------------------------------------------------------------
    def _envelope(self, key: str) -> Envelope | None:
        """The key's stored envelope, None if it has none. Both answers are cached (the absence too: the fold
        asks for keys that do not exist on every event, the tenant's settings or an event id first seen),
        until the key is written or the cache is cleared."""
        cache = self._cache
        env = cache.get(key)
        if env is None:
            raw = self.db.get(key.encode())
            if raw is None:
                if len(cache) >= _CACHE_MAX:
                    self._clear_cache()
                cache[key] = _ABSENT  # counts no bytes; a write-once key's goes when it is written
                return None
            env = unpack(raw)
            self._remember(key, env)
        elif env is _ABSENT:
            return None
        return env

    def _resolve(self, env: Envelope) -> tuple[Any, bytes, list[Entry]]:
        """The value as this session must see it (decoded, and its encoding), and the history entries that
        stay valid."""
        value, raw, history = env
        for i, entry in enumerate(history):
            if entry[0] > self.start and entry[1] != self.session:
                before = entry[2]
                return _loads(before), before, history[:i]
        return value, raw, history

    def get(self, table: str, key: str) -> Any | None:
        return self.read(table + SEP + key)

    def read(self, key: str) -> Any | None:
        """The value of a stored key (`<table>\x1f<key>`) as this session must see it; None if it has none."""
        env = self._cache.get(key)
        if env is None or env is _ABSENT:
            env = self._envelope(key)
            if env is None:
                return None
        return self._resolve(env)[0] if env[2] else env[0]

    def scan(self, table: str, prefix: str) -> Iterator[tuple[str, Any]]:
        """(key, value) of every key of `table` that starts with `prefix`, in key order."""
        head = table + SEP + prefix
        start = head.encode()
        for raw_key, raw in self.db.items(from_key=start):
            if not raw_key.startswith(start):  # type: ignore[union-attr,arg-type]
                break
            value = self._resolve(unpack(raw))[0]
            if value is not None:
                yield raw_key.decode()[len(table) + 1:], value  # type: ignore[union-attr]

    # -- writes -------------------------------------------------------------------------------
    def write(self, outbox: Outbox, batch: Batch, end: int, changes: dict[str, Any],
              encoded: dict[str, bytes] | None = None) -> None:
        """Store every changed key once, locally and to the changelog, remembering the value before.

        A value is encoded once (`encoded` has the encodings the fold made when it checked them); the
        values before (undo copies) are kept as the bytes they were stored as, never decoded or encoded
        again. A deletion (value None) is stored as an envelope holding
        null with its undo entry until its batch is committed; then the key is deleted and a tombstone
        goes to the changelog (`_tombstones`)."""
        wb = WriteBatch(raw_mode=True)
        floor, session = self.committed, self.session
        topic, partition = self.topic, self.partition
        encoded = encoded or {}
        if self._deleted and self._deleted[0][0] <= floor:
            self._tombstones(wb, outbox, batch, floor, changes)
        sess = (session or "").encode()
        head = _ENTRY.pack(end, len(sess)) + sess  # every undo entry of the batch starts alike
        produce, put, length = outbox.produce, wb.put, _LEN.pack
        held: tuple[bytes, bytes | None] | None = None  # the last record, sent after the loop with its offset tracked
        for key, value in changes.items():
            env = self._envelope(key)
            history: list[Any]
            if env is None:
                before, kept = _NULL, []
            else:
                _, before, history = self._resolve(env) if env[2] else env
                kept = [e for e in history if e[0] > floor] if history else []
            raw_key = key.encode()
            if value is None:
                if before == _NULL and not kept:  # nothing to undo: gone for good (or never there)
                    if env is not None:
                        wb.delete(raw_key)
                        if held is not None:
                            produce(batch, topic, held[1], held[0], partition)
                        held = raw_key, None
                        self._forget(key)
                    continue
                self._deleted.append((end, key))
                raw = _NULL
            else:
                raw = encoded.get(key) or _dumps(value)
            kept.append((end, session or "", before, b"".join((head, length(len(before)), before))))
            data = pack(raw, kept)
            put(raw_key, data)
            if held is not None:
                produce(batch, topic, held[1], held[0], partition)
            held = raw_key, data
            self._remember(key, (value, raw, kept))
        if held is not None:  # the store's changelog ends here once the batch is in Kafka (`delivered`)
            produce(batch, topic, held[1], held[0], partition, True)
        self.db.write(wb)

    def _tombstones(self, wb: WriteBatch, outbox: Outbox, batch: Batch, floor: int, changes: dict[str, Any]) -> None:
        """Keys deleted by committed batches (and not written since): deleted here and on the changelog."""
        deleted = self._deleted
        while deleted and deleted[0][0] <= floor:
            _, key = deleted.popleft()
            if key in changes:
                continue
            env = self._envelope(key)
            if env is not None and env[0] is None and all(e[0] <= floor for e in env[2]):
                raw_key = key.encode()
                wb.delete(raw_key)
                outbox.produce(batch, self.topic, None, raw_key, self.partition, True)
                self._forget(key)

    def delivered(self, batch: Batch) -> None:
        """The batch is in Kafka: remember how far this store's changelog goes."""
        last = batch.offsets.get((self.topic, self.partition))
        if last is not None:
            self.db[_OFFSET_KEY] = str(last + 1).encode()

    def close(self) -> None:
        self.db.close()


class View:
    """The state the pure core folds over for one batch (`streams.core.fold.State`): reads through the
    store, writes collected so that each changed key is stored once at the end of the batch, with the
    encoding the fold checked (`encoded`, kept by `fold.fold_entry` once the event is applied)."""

    __slots__ = ("store", "changes", "encoded")

    def __init__(self, store: PartitionStore):
        self.store = store
        self.changes: dict[str, Any] = {}
        self.encoded: dict[str, bytes] = {}

    def get(self, table: str, key: str) -> Any | None:
        k = table + SEP + key
        value = self.changes.get(k, _ABSENT)
        return self.store.read(k) if value is _ABSENT else value

    def put(self, table: str, key: str, value: Any) -> None:
        self.changes[table + SEP + key] = value
