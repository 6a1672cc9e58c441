"""Fold: one Faust agent applies the pure core to each tenant's state, in tenant-log order.

For every batch of frames of one tenant-log partition: wait until the partition's state is restored
(`streams.state`), take each event's record as admit decoded it (`tenantlog.Admitted`; decoded again
only if this worker's admit did not), call `streams.core.fold.fold_guarded` (the step the tests'
serial reference runs), then send the outputs and dead letters, write each changed key once
(RocksDB and changelog), wait until Kafka has all of it, ack the frames and commit. The outputs of
an event are sent after the state it changed is decided, and only after a batch is fully in Kafka
does its offset commit, so a payment sent after its sale's outcome always meets the sale's invoice.

Failure isolation (SPEC 2, "Bad input"): an event's outputs are encoded and its state writes checked
(`fold_entry`) before its changes join the batch's view; if deciding, encoding or preparing fails,
that event alone is dead-lettered INTERNAL_ERROR and the rest of the batch is applied. A failure of
the whole batch (its store write, a record Kafka refuses for good) acks nothing and kills the agent:
`/health` answers 503 and the worker exits non-zero (`faustfix/vitals.py`), so the next worker reads
the batch again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

from stockledger.config import Settings
from stockledger.deadletter import RULE, Failure, encoded
from stockledger.topics import DLQ_SUFFIX
from streams.admit import decode
from streams.core.fold import DAY_MS, DeadLetter, Decision, FoldConfig, Input, fold_guarded, internal_error
from streams.faustfix.committed import committed_offset
from streams.faustfix.consumer import feed
from streams.outbox import Acks
from streams.state import SEP, PartitionStore, View, check_value
from streams.tenantlog import entries

log = logging.getLogger("stockledger.worker")

BATCH, WITHIN = 4, 0.005  # frames per fold step (each up to admit.BATCH events), and how long a step waits to fill
MAX_OUTPUT_BYTES = 1_000_000  # one output record, under the output topics' max.message.bytes (Kafka's 1 MiB)


def letter(codec: Any, failure: Failure) -> tuple[str, bytes, Any]:
    """The dead letter of `failure`, encoded for `<its topic>.dlq` (stockledger.deadletter), and logged."""
    log.warning("dead letter %s[%s]@%s: %s", failure.topic, failure.partition, failure.offset, failure.error)
    return encoded(codec, failure)


def fold_entry(state: Any, inp: Input, config: FoldConfig, codec: Any,
               encoded: dict[str, bytes] | None = None) -> list[tuple[str, bytes, Any]]:
    """One event through the core, its outputs encoded and its state writes checked before any of it is
    applied to `state` (SPEC 2, "Bad input"): if deciding, encoding or preparing its writes fails, the
    event alone is dead-lettered INTERNAL_ERROR with its original bytes, and `state` keeps no trace of it.
    Returns (topic, value bytes, key) to send, in order. Once the event is applied, `encoded` (the
    batch's `View.encoded`) gets the encoding of each value it wrote, made by the check, by stored key.
    """
    encode = codec.encode

    def prepare(decision: Decision) -> tuple[list[tuple[str, bytes, Any]], list[tuple[str, bytes]]]:
        sends = []
        for r in decision.out:
            if isinstance(r, DeadLetter):
                src = r.input
                sends.append(letter(codec, Failure(src.topic, src.partition, src.offset, src.key, src.value,
                                                   r.stage, r.error)))
            else:
                value = encode(r.topic, r.value)
                if len(value) > MAX_OUTPUT_BYTES:
                    raise ValueError(f"a {r.topic} record of {len(value)} bytes (at most {MAX_OUTPUT_BYTES})")
                sends.append((r.topic, value, r.key))
        raws = [(table + SEP + key, check_value(value)) for (table, key), value in decision.writes.items()]
        return sends, raws

    out, prepared = fold_guarded(state, inp, config, prepare)
    if prepared is None:
        dead = out[0]
        assert isinstance(dead, DeadLetter)
        log.error("fold failed on %s[%s]@%s: %s", inp.topic, inp.partition, inp.offset, dead.error)
        return [letter(codec, Failure(inp.topic, inp.partition, inp.offset, inp.key, inp.value, dead.stage,
                                      dead.error))]
    sends, raws = prepared
    if encoded is not None:
        encoded.update(raws)
    return sends


def fold_config(settings: Settings) -> FoldConfig:
    """The fold's configuration from the worker's settings (the serial reference of a test uses the same):
    the fallback of every tenant that has not set its own (SPEC 8, streams/core/fold.py `tenant_config`).

    No rewrite of duplicates' keys: a store's undo history (streams/state.py) already makes a changelog
    that fell behind catch up, by folding again from the committed offset."""
    top = settings.max_discount_percent
    return FoldConfig(default_tax_percent=Decimal(settings.tenant_default_tax), rewrite_duplicates=False,
                      late_count_horizon_ms=round(settings.late_count_horizon_days * DAY_MS),
                      dedup_horizon_ms=round(settings.dedup_horizon_days * DAY_MS),
                      max_discount_percent=None if top in (None, "") else Decimal(top))


class Folder:
    """The fold's shell: the partition stores of this worker and the step that folds a batch."""

    def __init__(self, p: Any, records: Any):
        self.p = p
        self.records = records  # faustfix.consumer.Feed of the tenant log
        # No rewrite of duplicates' keys: a store's undo history (streams/state.py) already makes a
        # changelog that fell behind catch up, by folding again from the committed offset.
        self.config = fold_config(p.settings)
        self.stores: dict[int, PartitionStore] = {}
        self._restoring: dict[int, asyncio.Task] = {}
        self.acks = Acks(records.ack)

    def store(self, partition: int) -> PartitionStore:
        s = self.stores.get(partition)
        if s is None:
            s = self.stores[partition] = PartitionStore(self.p.settings, self.p.datadir, partition,
                                                        self.p.log_topic, self.p.settings.app_id)
        return s

    # -- assignment ---------------------------------------------------------------------------
    def assigned(self, tps: Any) -> None:
        for tp in tps:
            if tp.topic == self.p.log_topic:
                store = self.store(tp.partition)
                store.end()
                old = self._restoring.get(tp.partition)
                if old is not None and not old.done():
                    old.cancel()
                self.p.admitted.drop(tp.partition)
                task = asyncio.ensure_future(self._begin(store))
                task.add_done_callback(self._restore_done)
                self._restoring[tp.partition] = task

    async def _begin(self, store: PartitionStore) -> None:
        """Restore a partition's state; then admit here may keep what it decodes for it (`Admitted.local`)."""
        await store.begin(self.p.worker_id, lambda m: log.warning("%s", m))
        self.p.admitted.local.add(store.partition)

    def _restore_done(self, task: asyncio.Task) -> None:
        """A restore that failed for good (`state.RestoreFailed`, or anything unforeseen) leaves its
        partition's `ready` clear, and the fold would wait on it for ever, its frames unacked: the fold
        agent is dead instead (/health 503, exit 70), and the next worker restores again."""
        if task.cancelled() or task.exception() is None or self.p.app.should_stop:
            return
        exc = task.exception()
        log.critical("fold cannot restore its state: %r", exc, exc_info=exc)
        self.p.vitals.died("fold", f"restoring its state: {exc!r}")

    def revoked(self, tps: Any) -> None:
        for tp in tps:
            if tp.topic == self.p.log_topic and tp.partition in self.stores:
                self.p.admitted.drop(tp.partition)
                self.stores[tp.partition].end()
                old = self._restoring.pop(tp.partition, None)
                if old is not None and not old.done():  # it must not make a revoked partition ready
                    old.cancel()

    def ready(self) -> bool:
        """Every tenant-log partition assigned here is restored."""
        consumer = self.p.app.consumer
        if consumer is None:
            return False
        mine = [tp.partition for tp in consumer.assignment() if tp.topic == self.p.log_topic]
        return all(p in self.stores and self.stores[p].ready.is_set() for p in mine)

    def local(self, partition: int) -> PartitionStore | None:
        """The store of `partition` if this worker serves it right now."""
        s = self.stores.get(partition)
        return s if s is not None and s.ready.is_set() else None

    # -- the step -----------------------------------------------------------------------------
    async def step(self, frames: list[Any]) -> None:
        """Fold a batch of tenant-log records (frames), partition by partition."""
        by_partition: dict[int, list[Any]] = {}
        for frame in frames:
            by_partition.setdefault(frame.partition, []).append(frame)
        track, topic = self.p.watchdog.track, self.p.log_topic
        for partition, part in by_partition.items():
            track(topic, partition, part[-1].offset)
            await self.apply(partition, part)

    async def apply(self, partition: int, frames: list[Any]) -> None:
        p = self.p
        store = self.store(partition)
        await store.ready.wait()
        session = store.session
        if not store.started:
            store.first_frame(frames[0].offset)
        todo = [f for f in frames if f.offset >= store.next]
        if not todo:  # read again after a buffer clear: applied in this session already, and acked
            # only after the batch that applied them is in Kafka (the acks chain keeps that order)
            await self.acks.after(p.outbox.batch(), frames)
            return
        view, started = View(store), time.perf_counter()
        sends: list[tuple[str, bytes, Any]] = []  # (topic, value, key), in the order they must leave
        codec, config, folded, admitted = p.codec, self.config, 0, p.admitted
        for frame in todo:
            for entry in entries(frame.value):
                record = admitted.take(entry)  # decoded by this worker's admit, or decoded here
                if record is None:
                    try:
                        record = await decode(codec, entry.value)
                    except Exception as exc:  # admitted, so it decoded once: a defect of ours, this entry alone
                        log.exception("fold cannot decode %s[%s]@%s", entry.topic, entry.partition, entry.offset)
                        sends.append(letter(codec, Failure(entry.topic, entry.partition, entry.offset, entry.key,
                                                           entry.value, RULE, internal_error(exc))))
                        continue
                inp = Input(entry.topic, entry.partition, entry.offset, entry.key, entry.value, record)
                sends += fold_entry(view, inp, config, codec, view.encoded)
                folded += 1
        if store.session != session:
            return
        outbox = p.outbox
        batch = outbox.batch()
        metrics = p.metrics
        for topic, value, key in sends:
            if topic.endswith(DLQ_SUFFIX):
                metrics.dead_lettered.labels(topic[:-len(DLQ_SUFFIX)]).inc()
            outbox.produce(batch, topic, value, key)
        # Faust commits what was acked every second; history entries older than that go at the next write.
        committed = committed_offset(p.app, p.log_topic, partition)
        if committed is not None:
            store.committed = max(store.committed, min(committed, store.next))
        store.write(outbox, batch, todo[-1].offset + 1, view.changes, view.encoded)
        store.next = todo[-1].offset + 1
        metrics.folded.inc(folded)
        metrics.fold_batch.observe(time.perf_counter() - started)

        async def settle() -> bool:
            """The batch is in Kafka: ack it, unless the partition moved meanwhile."""
            if store.session != session:
                return False
            store.delivered(batch)
            return True

        await self.acks.after(batch, frames, settle)

def install(p: Any) -> Folder:
    folder = Folder(p, feed(p.app, p.log_topic))  # frames skip Faust's streams: whole fetched runs

    @p.app.agent(p.log_topic_obj, name="fold")
    async def fold_agent(stream: Any) -> None:  # the stream subscribes the topic; it never has an event
        async def loop() -> None:
            while True:
                await folder.step(await folder.records.take(BATCH, WITHIN))
        await p.vitals.guard("fold", loop)
    return folder
