"""What every connector worker shares: a confluent-kafka consumer whose positions live in PostgreSQL.

On start and on every partition assignment the worker seeks to the offsets stored in `sink_offsets`
(keyed by its group); a batch's effects and the offsets it consumed commit in one transaction, and
an offset moves only from the value the worker read (`store.advance_offsets`, fenced), so a worker
that lost a partition, or whose offsets an operator rewound, finds out at its next commit, throws
that batch away and seeks to what is stored. Kafka's committed offsets are written too, for lag
monitoring only, and never read. Outages (PostgreSQL, Kafka) are retried with backoff.

Used by the sink (`connectors.sink`) and the webhook notifier (`connectors.notify`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import psycopg2
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors import store
from stockledger.config import Settings
from stockledger.retries import RetryPolicy

log = logging.getLogger("stockledger.connectors")

REWIND_CHECK_S = 2.0  # how often a worker looks whether its stored offsets were rewound (replay)
BACKOFF_START_S, BACKOFF_MAX_S = 1.0, 30.0

TPKey = tuple[str, int]
# What an outage looks like: the database or Kafka may come back, so the work is retried.
TRANSIENT = (SQLAlchemyError, psycopg2.Error, KafkaException, OSError)


def is_outage(exc: BaseException) -> bool:
    """A TRANSIENT failure that is not the database refusing a record (those are never retried)."""
    return isinstance(exc, TRANSIENT) and not store.is_record_error(exc)


# The connectors' retry policy for outages: 1 s doubling to 30 s, until it works or the worker stops.
OUTAGE = RetryPolicy(is_outage, first=BACKOFF_START_S, cap=BACKOFF_MAX_S, logger=log)


class Stopped(Exception):
    """Asked to stop while waiting for an outage to end."""


class Fenced(Exception):
    """Stored offsets of some partitions are not where this worker left them."""

    def __init__(self, partitions: set[TPKey]):
        super().__init__(f"stored offsets moved under this worker: {sorted(partitions)}")
        self.partitions = partitions


def key_of(msg: Message) -> TPKey:
    """(topic, partition) of a consumed record (never None for a record without error)."""
    return msg.topic(), msg.partition()  # type: ignore[return-value]


def offset_of(msg: Message) -> int:
    return msg.offset()  # type: ignore[return-value]


class OffsetWorker:
    """Partition bookkeeping of a connector worker: stored offsets, seeks, fencing, retried outages.

    A subclass sets `settings`, `group`, `topics`, `engine`, `stop`, `stats` (with `retries` and
    `rewound` counters) and `instance_id`, calls `open_consumer()`, buffers what `take()` accepts
    in `self.buffer`, and commits a batch with `advance(conn, moves_of(batch))` inside its own
    transaction, then `committed(moves)` after the commit.
    """

    settings: Settings
    group: str
    topics: list[str]
    engine: Engine
    stop: threading.Event
    instance_id: str | None
    consumer: Consumer
    buffer: list[Message]
    next: dict[TPKey, int]  # stored next offset of every assigned partition, as last read or written

    def prepare(self) -> None:
        """Make ready to consume (migrations, topics); outages retried with `retrying`."""
        raise NotImplementedError

    def prepared(self) -> bool:
        """`prepare()`; False (logged) when asked to stop while waiting for an outage to end."""
        try:
            self.prepare()
            return True
        except Stopped:
            log.info("stopped before starting")
            return False

    def consumer_config(self) -> dict:
        conf = {
            **self.settings.kafka_config(),
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
        return conf

    def open_consumer(self) -> None:
        self.consumer = Consumer(self.consumer_config())
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)

    def take(self, msg: Message) -> bool:
        """Buffer a consumed record if it is ours and not yet stored; errors are logged or raised."""
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return False
            if err.fatal():
                raise KafkaException(err)
            log.warning("kafka: %s", err)
            return False
        expected = self.next.get(key_of(msg))
        if expected is None or offset_of(msg) < expected:
            return False  # not ours any more, or from before a seek: already stored
        self.buffer.append(msg)
        return True

    # -- partitions ----------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        stored = self.retrying("read stored offsets", lambda: self._ensure_offsets(keys))
        for tp in partitions:
            tp.offset = stored[(tp.topic, tp.partition)]
            self.next[(tp.topic, tp.partition)] = tp.offset
        consumer.assign(partitions)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions) or "nothing")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.buffer = [m for m in self.buffer if key_of(m) not in gone]
        for key in gone:
            self.next.pop(key, None)
        if partitions:
            log.info("revoked %d partitions (unwritten records dropped: the next owner reads them again)",
                     len(partitions))

    def _ensure_offsets(self, keys: list[TPKey]) -> dict[TPKey, int]:
        with self.engine.begin() as conn:
            return store.ensure_offsets(conn, self.group, keys)

    def seek_to_stored(self, keys: set[TPKey]) -> None:
        """Throw away buffered records of these partitions and continue from their stored offsets."""
        with self.engine.begin() as conn:
            self._seek_to(store.read_offsets(conn, self.group, sorted(keys)))

    def _seek_to(self, stored: dict[TPKey, int]) -> None:
        self.buffer = [m for m in self.buffer if key_of(m) not in stored]
        for key, offset in stored.items():
            if key not in self.next:
                continue
            self.next[key] = offset
            self.consumer.seek(TopicPartition(key[0], key[1], offset))
            log.warning("%s[%d]: stored offset is %d; continuing from there", key[0], key[1], offset)

    def check_rewound(self) -> None:
        """Notice a replay (stored offsets rewound) within REWIND_CHECK_S, even on a quiet partition."""
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
            self.stats.rewound += 1  # type: ignore[attr-defined]
            self._seek_to(moved)

    # -- batches --------------------------------------------------------------------------------------
    def moves_of(self, msgs: list[Message]) -> dict[TPKey, tuple[int, int]]:
        """Per partition (stored offset expected, offset after the last of `msgs`)."""
        moves: dict[TPKey, tuple[int, int]] = {}
        for msg in msgs:
            key = key_of(msg)
            start, end = moves.get(key, (self.next[key], 0))
            moves[key] = (start, max(end, offset_of(msg) + 1))
        return moves

    def advance(self, conn, moves: dict[TPKey, tuple[int, int]]) -> None:
        """Inside the batch's transaction: move the stored offsets, or raise Fenced."""
        stale = store.advance_offsets(conn, self.group, moves)
        if stale:
            raise Fenced(stale)

    def committed(self, moves: dict[TPKey, tuple[int, int]]) -> None:
        """After the batch's transaction committed: remember the offsets, tell Kafka (lag only)."""
        for key, (_, end) in moves.items():
            self.next[key] = end
        try:  # lag monitoring only; the database is the truth
            self.consumer.commit(offsets=[TopicPartition(t, p, end) for (t, p), (_, end) in moves.items()],
                                 asynchronous=True)
        except KafkaException:
            pass

    def retrying(self, what: str, fn: Callable):
        """`fn()` until it does not fail with an outage (OUTAGE: 1 s doubling to 30 s); Stopped if asked to stop."""
        def pause(delay: float) -> None:
            if self.stop.wait(delay):
                raise Stopped(what)

        return OUTAGE.call(fn, what, sleep=pause, on_retry=self.count_retry)

    def count_retry(self, _exc: BaseException) -> None:
        self.stats.retries += 1  # type: ignore[attr-defined]


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM / SIGINT: finish the current batch, write what is buffered, leave the group."""
    def handler(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
