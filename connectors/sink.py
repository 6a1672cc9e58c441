"""`stockledger sink`: the PostgreSQL connector worker, the books written exactly once.

Exactly once comes from PostgreSQL, not from Kafka: each batch's rows and the offsets it consumed
commit in one database transaction, and on start and on every partition assignment the worker
seeks to the offsets stored there (Kafka's committed offsets are written too, for lag monitoring
only, and never read). An offset moves only from the value the worker read (a fenced UPDATE), so a
worker that lost a partition, or whose offsets an operator rewound, finds out at its next commit,
throws that batch away and seeks to what is stored. Primary keys are the document ids and every
insert is ON CONFLICT DO NOTHING: the second guard.

Faults: PostgreSQL down or restarting -> the batch is retried with backoff (1 s doubling to 30 s),
nothing of it is committed until all of it is. A record that can never be written goes to the DLQ
(see connectors.dlq) and the worker carries on. Invoice paid amount and status come from payment
allocations, highest paid_after wins: the order payments and invoices arrive in does not matter.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg2
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors import migrate, store
from connectors.dlq import DECODE, RULE, VALIDATE, DeadLetters, Failure, dlq_topic
from connectors.rows import LEDGER_TOPICS, RecordError, RecordRows, contract_topic, to_rows
from stockledger.config import Settings
from stockledger.produce import producer_config
from stockledger.topics import ensure_topics
from streams.codec import Codec, DecodeError

log = logging.getLogger("stockledger.sink")

DEFAULT_BATCH_SIZE = 2000
DEFAULT_BATCH_MS = 100
REWIND_CHECK_S = 2.0  # how often a worker looks whether its stored offsets were rewound (sink replay)
BACKOFF_START_S, BACKOFF_MAX_S = 1.0, 30.0

TPKey = tuple[str, int]
# What an outage looks like: the database or Kafka may come back, so the work is retried.
TRANSIENT = (SQLAlchemyError, psycopg2.Error, KafkaException, OSError)


def default_group(settings: Settings) -> str:
    return f"{settings.app_id}-sink"


def ledger_topics(prefix: str = "") -> list[str]:
    return [prefix + name for name in LEDGER_TOPICS]


class Stopped(Exception):
    """Asked to stop while waiting for an outage to end."""


class Fenced(Exception):
    """Stored offsets of some partitions are not where this worker left them."""

    def __init__(self, partitions: set[TPKey]):
        super().__init__(f"stored offsets moved under this worker: {sorted(partitions)}")
        self.partitions = partitions


@dataclass
class Stats:
    records: int = 0  # consumed records whose batch committed (written, duplicate or dead-lettered)
    dead_letters: int = 0
    batches: int = 0
    fenced: int = 0  # batches thrown away at commit: their partitions' stored offsets had moved
    rewound: int = 0  # stored offsets found moved by the periodic check (a sink replay), buffer dropped
    retries: int = 0

    def line(self) -> str:
        return (f"records={self.records} dead_letters={self.dead_letters} batches={self.batches} "
                f"fenced={self.fenced} rewound={self.rewound} retries={self.retries}")


def _key(msg: Message) -> TPKey:
    """(topic, partition) of a consumed record (never None for a record without error)."""
    return msg.topic(), msg.partition()  # type: ignore[return-value]


def _offset(msg: Message) -> int:
    return msg.offset()  # type: ignore[return-value]


@dataclass(slots=True)
class _Item:
    msg: Message
    rows: RecordRows | None = None
    failure: Failure | None = None


class Sink:
    """One connector worker. Start several with the same group to share the partitions."""

    consumer: Consumer  # created by run()
    dead_letters: DeadLetters  # created by run()

    def __init__(self, settings: Settings, *, group: str | None = None, topic_prefix: str = "",
                 batch_size: int = DEFAULT_BATCH_SIZE, batch_ms: int = DEFAULT_BATCH_MS,
                 instance_id: str | None = None, engine: Engine | None = None,
                 stop: threading.Event | None = None):
        if batch_size < 1 or batch_ms < 1:
            raise ValueError("--batch-size and --batch-ms must be at least 1")
        self.settings = settings
        self.group = group or default_group(settings)
        self.topics = ledger_topics(topic_prefix)
        self.batch_size = batch_size
        self.batch_s = batch_ms / 1000
        self.instance_id = instance_id
        self.engine = engine or store.engine_for(settings.database_url)
        self.stop = stop or threading.Event()
        self.stats = Stats()
        self.codec = Codec(settings.schema_registry_url)
        self.buffer: list[Message] = []
        self.next: dict[TPKey, int] = {}  # stored next offset of every assigned partition, as last read or written
        self.holding = threading.Event()  # tests only: set while a batch is held (Settings.fault_hold_batches)

    # -- lifecycle ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Schema at head (migrations run here), topics and DLQs exist, schemas registered."""
        revision = self._retrying("migrate", lambda: migrate.upgrade(self.engine))
        log.info("database at revision %s", revision)
        ensure_topics(self.settings.bootstrap_servers, self.settings.partitions,
                      self.topics + [dlq_topic(t) for t in self.topics])
        for t in self.topics:
            self.codec.register(contract_topic(t) + ".dlq")

    def run(self) -> Stats:
        """Consume, batch and write until `stop` is set; then write what is buffered and leave."""
        try:
            self.prepare()
        except Stopped:
            log.info("stopped before starting")
            return self.stats
        self.dead_letters = DeadLetters(Producer(producer_config(self.settings)), self.codec)
        conf = {
            "bootstrap.servers": self.settings.bootstrap_servers,
            "group.id": self.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a stored offset no longer in the log: everything retained
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "max.poll.interval.ms": 600_000,  # a long PostgreSQL outage keeps the worker in its group
        }
        if self.instance_id:
            conf["group.instance.id"] = self.instance_id  # static member: a restart takes its partitions back at once
        self.consumer = Consumer(conf)
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("sink %s consuming %s (batch %d records / %.0f ms)", self.group, ", ".join(self.topics),
                 self.batch_size, self.batch_s * 1000)
        try:
            self._loop()
            if self.buffer:
                self._flush(final=True)
        except Stopped as exc:
            log.info("stopped while waiting to %s; unwritten records are read again at the next start", exc)
        finally:
            self.consumer.close()
            self.engine.dispose()
        log.info("sink stopped: %s", self.stats.line())
        return self.stats

    def _loop(self) -> None:
        deadline = 0.0
        last_check = last_report = time.monotonic()
        reported = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if not self.buffer:
                msgs = self.consumer.consume(num_messages=1, timeout=0.5)
                if msgs:
                    deadline = time.monotonic() + self.batch_s
            else:
                msgs = self.consumer.consume(num_messages=self.batch_size - len(self.buffer),
                                             timeout=max(0.0, deadline - now))
            for msg in msgs:
                self._take(msg)
            now = time.monotonic()
            if self.buffer and (len(self.buffer) >= self.batch_size or now >= deadline):
                self._flush()
            if now - last_check >= REWIND_CHECK_S:  # also for partitions with no new records to fence
                self._check_rewound()
                last_check = now
            if now - last_report >= 10:
                rate = (self.stats.records - reported) / (now - last_report)
                log.info("%.0f records/s; %s; partitions %d", rate, self.stats.line(), len(self.next))
                last_report, reported = now, self.stats.records

    def _take(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal():
                raise KafkaException(err)
            log.warning("kafka: %s", err)
            return
        expected = self.next.get(_key(msg))
        if expected is None or _offset(msg) < expected:
            return  # not ours any more, or from before a seek: already stored
        self.buffer.append(msg)

    # -- partitions ----------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        stored = self._retrying("read stored offsets", lambda: self._ensure_offsets(keys))
        for tp in partitions:
            tp.offset = stored[(tp.topic, tp.partition)]
            self.next[(tp.topic, tp.partition)] = tp.offset
        consumer.assign(partitions)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions) or "nothing")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.buffer = [m for m in self.buffer if _key(m) not in gone]
        for key in gone:
            self.next.pop(key, None)
        if partitions:
            log.info("revoked %d partitions (unwritten records dropped: the next owner reads them again)",
                     len(partitions))

    def _ensure_offsets(self, keys: list[TPKey]) -> dict[TPKey, int]:
        with self.engine.begin() as conn:
            return store.ensure_offsets(conn, self.group, keys)

    def _seek_to_stored(self, keys: set[TPKey]) -> None:
        """Throw away buffered records of these partitions and continue from their stored offsets."""
        with self.engine.begin() as conn:
            self._seek_to(store.read_offsets(conn, self.group, sorted(keys)))

    def _seek_to(self, stored: dict[TPKey, int]) -> None:
        self.buffer = [m for m in self.buffer if _key(m) not in stored]
        for key, offset in stored.items():
            if key not in self.next:
                continue
            self.next[key] = offset
            self.consumer.seek(TopicPartition(key[0], key[1], offset))
            log.warning("%s[%d]: stored offset is %d; continuing from there", key[0], key[1], offset)

    def _check_rewound(self) -> None:
        """Notice a sink replay (stored offsets rewound) within REWIND_CHECK_S, even on a quiet partition."""
        if not self.next:
            return
        try:
            with self.engine.begin() as conn:
                stored = store.read_offsets(conn, self.group, sorted(self.next))
        except TRANSIENT as exc:  # an outage: the next batch retries properly
            log.debug("offset check failed: %s", exc)
            return
        moved = {k: v for k, v in stored.items() if k in self.next and self.next[k] != v}
        if moved:
            self.stats.rewound += 1
            self._seek_to(moved)

    # -- batches ------------------------------------------------------------------------------------
    def _prepare_item(self, msg: Message) -> _Item:
        topic = _key(msg)[0]
        try:
            record = self.codec.decode(msg.value())  # RegistryUnavailable propagates: an outage, retried
        except DecodeError as exc:
            return _Item(msg, failure=self._failure(msg, DECODE, str(exc)))
        try:
            return _Item(msg, rows=to_rows(contract_topic(topic), record))
        except RecordError as exc:
            return _Item(msg, failure=self._failure(msg, VALIDATE, str(exc)))

    @staticmethod
    def _failure(msg: Message, stage: str, error: str) -> Failure:
        return Failure(*_key(msg), _offset(msg), msg.key(), msg.value(), stage, error)

    def _flush(self, final: bool = False) -> None:
        """Write the buffer and its offsets in one transaction; retry until done, fenced or stopped."""
        backoff = BACKOFF_START_S
        while True:
            try:
                items = [self._prepare_item(m) for m in self.buffer]
                self._write(items)
                return
            except Fenced as exc:
                self.stats.fenced += 1
                log.warning("%s", exc)
                stale = exc.partitions
                self._retrying("seek to stored offsets", lambda: self._seek_to_stored(stale))
                if not self.buffer:
                    return
            except TRANSIENT as exc:
                if store.is_record_error(exc):
                    raise  # write_isolating handles those: this is a bug, not an outage
                self.stats.retries += 1
                if final and self.stop.is_set() and backoff > 8:
                    log.error("giving up on the last batch at shutdown (%s); it is read again at the next start", exc)
                    return
                log.warning("batch of %d not written (%s: %s); retry in %.0f s", len(self.buffer),
                            type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "", backoff)
                if final:
                    time.sleep(backoff)
                else:
                    self.stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                if self.stop.is_set() and not final:
                    return  # the final flush in run() tries again

    def _hold(self, moves: dict[TPKey, tuple[int, int]]) -> None:
        """Tests only: while the file Settings.fault_hold_batches names exists, wait before committing.

        Outside the transaction: a held batch holds no lock, so a replay can rewind its offsets."""
        gate = Path(self.settings.fault_hold_batches)
        if not gate.exists():
            return
        log.warning("fault_hold_batches: holding a batch of %s until %s is removed",
                    ", ".join(f"{t}[{p}]@{a}..{b}" for (t, p), (a, b) in sorted(moves.items())), gate)
        self.holding.set()
        try:
            while gate.exists():
                if self.stop.wait(0.02):
                    raise Stopped("commit a held batch")
        finally:
            self.holding.clear()

    def _write(self, items: list[_Item]) -> None:
        moves: dict[TPKey, tuple[int, int]] = {}
        for it in items:
            key = _key(it.msg)
            start, end = moves.get(key, (self.next[key], 0))
            moves[key] = (start, max(end, _offset(it.msg) + 1))
        if self.settings.fault_hold_batches:
            self._hold(moves)
        good = [(it.msg, it.rows) for it in items if it.rows is not None]
        failures = [it.failure for it in items if it.failure is not None]
        with self.engine.begin() as conn:
            stale = store.advance_offsets(conn, self.group, moves)
            if stale:
                raise Fenced(stale)
            store.lock_invoices(conn, {k for _, rows in good for k in rows.invoice_keys})
            refused = store.write_isolating(conn, [rows for _, rows in good])
            refused_at = {r.index for r in refused}
            failures += [self._failure(good[r.index][0], RULE, r.reason) for r in refused]
            store.apply_paid(conn, {k for i, (_, rows) in enumerate(good) if i not in refused_at
                                    for k in rows.invoice_keys})
            self.dead_letters.send(failures)  # before the commit: a dead letter is never lost
        # committed
        for key, (_, end) in moves.items():
            self.next[key] = end
        self.buffer = []  # items are the whole buffer: no callback runs while a batch is written
        self.stats.records += len(items)
        self.stats.dead_letters += len(failures)
        self.stats.batches += 1
        for f in failures:
            log.warning("dead letter %s[%d]@%d (%s): %s", f.topic, f.partition, f.offset, f.stage, f.error)
        try:  # lag monitoring only; the database is the truth
            self.consumer.commit(offsets=[TopicPartition(t, p, end) for (t, p), (_, end) in moves.items()],
                                 asynchronous=True)
        except KafkaException:
            pass

    def _retrying(self, what: str, fn: Callable):
        backoff = BACKOFF_START_S
        while True:
            try:
                return fn()
            except TRANSIENT as exc:
                if store.is_record_error(exc):
                    raise
                self.stats.retries += 1
                log.warning("%s failed (%s: %s); retry in %.0f s", what, type(exc).__name__,
                            str(exc).strip().splitlines()[0] if str(exc).strip() else "", backoff)
                if self.stop.wait(backoff):
                    raise Stopped(what) from None
                backoff = min(backoff * 2, BACKOFF_MAX_S)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM / SIGINT: finish the current batch, write what is buffered, leave the group."""
    def handler(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
