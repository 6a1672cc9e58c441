"""Fold: one Faust agent applies the pure core to each tenant's state, in tenant-log order.

For every batch of frames of one tenant-log partition: wait until the partition's state is restored
(`streams.state`), decode each event again, call `streams.core.fold.fold` (the same function the
tests' serial reference runs), then send the outputs and dead letters, write each changed key once
(RocksDB and changelog), wait until Kafka has all of it, ack the frames and commit. The outputs of
an event are sent after the state it changed is decided, and only after a batch is fully in Kafka
does its offset commit, so a payment sent after its sale's outcome always meets the sale's invoice.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from faust.types import TP

from streams.admit import decode
from stockledger.config import Settings
from streams.core.fold import DAY_MS, DeadLetter, FoldConfig, Input, fold
from streams.deadletter import Failure, dead_letter, dlq_topic
from streams.outbox import Acks
from streams.state import PartitionStore, View
from streams.tenantlog import entries

log = logging.getLogger("stockledger.worker")

BATCH, WITHIN = 500, 0.005  # frames per fold step, and how long a step waits to fill


def fold_config(settings: Settings) -> FoldConfig:
    """The fold's configuration from the worker's settings (the serial reference of a test uses the same).

    No rewrite of duplicates' keys: a store's undo history (streams/state.py) already makes a changelog
    that fell behind catch up, by folding again from the committed offset."""
    return FoldConfig(default_tax_percent=Decimal(settings.tenant_default_tax), rewrite_duplicates=False,
                      late_count_horizon_ms=round(settings.late_count_horizon_days * DAY_MS),
                      dedup_horizon_ms=round(settings.dedup_horizon_days * DAY_MS))


class Folder:
    """The fold's shell: the partition stores of this worker and the step that folds a batch."""

    def __init__(self, p: Any):
        self.p = p
        self.config = fold_config(p.settings)
        self.stores: dict[int, PartitionStore] = {}
        self._restoring: dict[int, asyncio.Task] = {}
        self.acks = Acks()

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
                self._restoring[tp.partition] = asyncio.ensure_future(
                    store.begin(self.p.worker_id, lambda m: log.warning("%s", m)))

    def revoked(self, tps: Any) -> None:
        for tp in tps:
            if tp.topic == self.p.log_topic and tp.partition in self.stores:
                self.stores[tp.partition].end()

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
    async def step(self, events: list[Any]) -> None:
        by_partition: dict[int, list[Any]] = {}
        track = self.p.watchdog.track
        for event in events:
            track(event.message.topic, event.message.partition, event.message.offset)
            by_partition.setdefault(event.message.partition, []).append(event)
        for partition, evs in by_partition.items():
            await self.apply(partition, evs)

    async def apply(self, partition: int, events: list[Any]) -> None:
        p = self.p
        store = self.store(partition)
        await store.ready.wait()
        session = store.session
        if not store.started:
            store.first_frame(events[0].message.offset)
        todo = [e for e in events if e.message.offset >= store.next]
        if not todo:  # read again after a buffer clear: applied in this session already, and acked
            # only after the batch that applied them is in Kafka (the acks chain keeps that order)
            await self.acks.after(p.outbox.batch(), events)
            return
        view = View(store)
        results: list[tuple[Input, list]] = []
        codec, config = p.codec, self.config
        for event in todo:
            for entry in entries(event.message.value):
                record = await decode(codec, entry.value)
                inp = Input(entry.topic, entry.partition, entry.offset, entry.key, entry.value, record)
                try:  # the core applies an event's writes only once it is decided whole
                    out = fold(view, inp, config)
                except Exception as exc:  # a defect of ours must not stop the stream: dead-letter it
                    log.exception("fold failed on %s[%s]@%s", entry.topic, entry.partition, entry.offset)
                    out = [DeadLetter(inp, f"INTERNAL_ERROR: {exc!r}", "rule")]
                results.append((inp, out))
        if store.session != session:
            return
        outbox = p.outbox
        batch = outbox.batch()
        metrics = p.metrics
        for inp, out in results:
            for r in out:
                if isinstance(r, DeadLetter):
                    src = r.input
                    metrics.dead_lettered[src.topic] += 1
                    log.warning("dead letter %s[%s]@%s: %s", src.topic, src.partition, src.offset, r.error)
                    failure = Failure(src.topic, src.partition, src.offset, src.key, src.value, r.stage, r.error)
                    outbox.produce(batch, dlq_topic(src.topic), codec.encode(dlq_topic(src.topic), dead_letter(failure)),
                                   src.key)
                else:
                    outbox.produce(batch, r.topic, codec.encode(r.topic, r.value), r.key)
        # Faust commits what was acked every second; history entries older than that go at the next write.
        committed = p.app.consumer._committed_offset.get(TP(p.log_topic, partition))  # noqa: SLF001
        if committed is not None:
            store.committed = max(store.committed, min(committed, store.next))
        store.write(outbox, batch, todo[-1].message.offset + 1, view.changes)
        store.next = todo[-1].message.offset + 1
        metrics.folded += len(results)

        async def settle() -> bool:
            """The batch is in Kafka: ack it, unless the partition moved meanwhile."""
            if store.session != session:
                return False
            store.delivered(batch)
            return True

        await self.acks.after(batch, events, settle)

def install(p: Any) -> Folder:
    folder = Folder(p)

    @p.app.agent(p.log_topic_obj, name="fold")
    async def fold_agent(stream: Any) -> None:
        async for events in stream.noack_take(BATCH, within=WITHIN):
            await folder.step(list(events))
    return folder
