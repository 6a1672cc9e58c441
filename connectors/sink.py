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
(see connectors.dlq) and the worker carries on. Invoice paid amount, credited amount, status and
payment times are derived from payment allocations (highest paid_after wins) and CREDIT credit notes
each time one of them lands: the order payments, credit notes and invoices arrive in does not matter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Message, Producer
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Engine

from connectors import store
from connectors.dlq import DeadLetters
from connectors.offsets import (
    OUTAGE,
    REWIND_CHECK_S,
    Fenced,
    OffsetWorker,
    Stopped,
    TPKey,
    key_of,
    offset_of,
)
from connectors.rows import LEDGER_TOPICS, RecordError, RecordRows, contract_topic, to_rows
from stockledger.codec import Codec, DecodeError
from stockledger.config import Settings
from stockledger.db import migrate
from stockledger.deadletter import DECODE, RULE, VALIDATE, Failure, dlq_topic
from stockledger.ops import BATCH_BUCKETS, OpsServer
from stockledger.produce import producer_config
from stockledger.topics import ensure_topics

log = logging.getLogger("stockledger.sink")

DEFAULT_BATCH_SIZE = 2000
DEFAULT_BATCH_MS = 100


class GiveUp(Exception):
    """Stop retrying a batch: the worker is stopping."""


def default_group(settings: Settings) -> str:
    return f"{settings.app_id}-sink"


def ledger_topics(prefix: str = "") -> list[str]:
    return [prefix + name for name in LEDGER_TOPICS]


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


class SinkMetrics:
    """`stockledger_sink_records_total{topic}`, `stockledger_sink_dead_letters_total`,
    `stockledger_sink_batch_seconds` (one batch's transaction: rows, offsets, dead letters, commit)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.records = Counter("stockledger_sink_records", "Records written (rows or dead letters), per topic.",
                               ["topic"], registry=r)
        self.dead_letters = Counter("stockledger_sink_dead_letters", "Records sent to a dead-letter topic.",
                                    registry=r)
        self.batch = Histogram("stockledger_sink_batch_seconds", "One batch written and committed.",
                               buckets=BATCH_BUCKETS, registry=r)

    def observe(self, items: list, dead_letters: int, seconds: float) -> None:
        by_topic: dict[str, int] = {}
        for it in items:
            topic = it.msg.topic()
            by_topic[topic] = by_topic.get(topic, 0) + 1
        for topic, n in by_topic.items():
            self.records.labels(topic).inc(n)
        self.dead_letters.inc(dead_letters)
        self.batch.observe(seconds)


@dataclass(slots=True)
class _Item:
    msg: Message
    rows: RecordRows | None = None
    failure: Failure | None = None


class Sink(OffsetWorker):
    """One connector worker. Start several with the same group to share the partitions."""

    dead_letters: DeadLetters  # created by run()

    def __init__(self, settings: Settings, *, group: str | None = None, topic_prefix: str = "",
                 batch_size: int = DEFAULT_BATCH_SIZE, batch_ms: int = DEFAULT_BATCH_MS,
                 instance_id: str | None = None, engine: Engine | None = None,
                 stop: threading.Event | None = None, metrics_port: int = 0):
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
        self.codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
        self.buffer: list[Message] = []
        self.next: dict[TPKey, int] = {}  # stored next offset of every assigned partition, as last read or written
        # A test hook, None in production: called with each batch's offset moves before its transaction
        # (outside it, so it holds no lock); tests/connectors/support.py holds batches with it.
        self.before_commit: Callable[[dict[TPKey, tuple[int, int]]], None] | None = None
        self.metrics = SinkMetrics()
        self.metrics_port = metrics_port  # /metrics and /health on Settings.metrics_host; 0: none
        self.consuming = False

    def health(self) -> tuple[bool, dict]:
        return self.consuming and not self.stop.is_set(), {"group": self.group, "partitions": len(self.next)}

    # -- lifecycle ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Schema at head (migrations run here), topics and DLQs exist, schemas registered."""
        revision = self.retrying("migrate", lambda: migrate.upgrade(self.engine))
        log.info("database at revision %s", revision)
        ensure_topics(self.settings.kafka_config(), self.settings.partitions,
                      self.topics + [dlq_topic(t) for t in self.topics])
        for t in self.topics:
            self.codec.register(contract_topic(t) + ".dlq")

    def run(self) -> Stats:
        """Consume, batch and write until `stop` is set; then write what is buffered and leave."""
        http = None
        if self.metrics_port:  # /health answers 503 while migrating and waiting for an outage to end
            http = OpsServer(self.settings.metrics_host, self.metrics_port, self.metrics.registry, self.health).start()
        try:
            return self._run()
        finally:
            self.consuming = False
            if http is not None:
                http.close()

    def _run(self) -> Stats:
        if not self.prepared():
            return self.stats
        self.dead_letters = DeadLetters(Producer(producer_config(self.settings)), self.codec)
        self.open_consumer()
        self.consuming = True
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
                self.take(msg)
            now = time.monotonic()
            if self.buffer and (len(self.buffer) >= self.batch_size or now >= deadline):
                self._flush()
            if now - last_check >= REWIND_CHECK_S:  # also for partitions with no new records to fence
                self.check_rewound()
                last_check = now
            if now - last_report >= 10:
                rate = (self.stats.records - reported) / (now - last_report)
                log.info("%.0f records/s; %s; partitions %d", rate, self.stats.line(), len(self.next))
                last_report, reported = now, self.stats.records

    # -- batches ------------------------------------------------------------------------------------
    def _prepare_item(self, msg: Message) -> _Item:
        topic = key_of(msg)[0]
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
        return Failure(*key_of(msg), offset_of(msg), msg.key(), msg.value(), stage, error)

    def _flush(self, final: bool = False) -> None:
        """Write the buffer and its offsets in one transaction; retry (OUTAGE) until done, fenced or stopped."""
        def write() -> None:
            self._write([self._prepare_item(m) for m in self.buffer])

        def pause(delay: float) -> None:
            if final and self.stop.is_set() and delay > 8:
                raise GiveUp("at shutdown")
            if final:
                time.sleep(delay)
            elif self.stop.wait(delay):
                raise GiveUp("asked to stop")  # the final flush in run() tries again

        while True:
            try:
                OUTAGE.call(write, f"batch of {len(self.buffer)}", sleep=pause, on_retry=self.count_retry)
                return
            except Fenced as exc:
                self.stats.fenced += 1
                log.warning("%s", exc)
                stale = exc.partitions
                self.retrying("seek to stored offsets", lambda: self.seek_to_stored(stale))  # noqa: B023 (called here)
                if not self.buffer:
                    return
            except GiveUp as exc:
                if final:
                    log.error("giving up on the last batch at shutdown; it is read again at the next start")
                log.debug("batch not written: %s", exc)
                return

    def _write(self, items: list[_Item]) -> None:
        moves = self.moves_of([it.msg for it in items])
        if self.before_commit is not None:
            self.before_commit(moves)
        good = [(it.msg, it.rows) for it in items if it.rows is not None]
        failures = [it.failure for it in items if it.failure is not None]
        started = time.perf_counter()
        with self.engine.begin() as conn:
            self.advance(conn, moves)
            store.lock_invoices(conn, {k for _, rows in good for k in rows.invoice_keys})
            refused = store.write_isolating(conn, [rows for _, rows in good])
            refused_at = {r.index for r in refused}
            failures += [self._failure(good[r.index][0], RULE, r.reason) for r in refused]
            store.settle_invoices(conn, {k for i, (_, rows) in enumerate(good) if i not in refused_at
                                    for k in rows.invoice_keys})
            self.dead_letters.send(failures)  # before the commit: a dead letter is never lost
        # committed
        self.committed(moves)
        self.buffer = []  # items are the whole buffer: no callback runs while a batch is written
        self.stats.records += len(items)
        self.stats.dead_letters += len(failures)
        self.stats.batches += 1
        self.metrics.observe(items, len(failures), time.perf_counter() - started)
        for f in failures:
            log.warning("dead letter %s[%d]@%d (%s): %s", f.topic, f.partition, f.offset, f.stage, f.error)
