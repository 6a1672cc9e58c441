"""The Faust application: topics, tables and the shared pieces every agent and view uses.

Values cross Kafka as raw bytes and are decoded by the one codec inside the agents, so a record
that does not decode reaches the dead-letter queue instead of crashing the agent. Keys are plain
UTF-8 `<tenant>:<id>` strings; Faust's murmur2 partitioner matches the producers' (`murmur2_random`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import faust
from aiokafka.partitioner import murmur2
from faust.transport.producer import ProducerBuffer
from faust.types import EventT

from stockledger.config import Settings
from stockledger.topics import BY_NAME, DLQ_SUFFIX, internal_topic
from streams.codec import Codec, DecodeError, RegistryUnavailable
from streams.consumer import install as install_ordered_consumer
from streams.jsonconv import format_timestamp
from streams.metrics import Metrics

log = logging.getLogger("stockledger.worker")


@dataclass
class Pipeline:
    """Everything the agents and views share; built once per worker by `create_app`."""

    settings: Settings
    app: faust.App
    codec: Codec
    metrics: Metrics = field(default_factory=Metrics)
    topics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    taken: dict[tuple[str, int], int] = field(default_factory=dict)
    _stalled: dict[tuple[str, int], tuple[float, tuple[int, int]]] = field(default_factory=dict)

    def topic(self, name: str, internal: bool = False, json_values: bool = False) -> Any:
        """One Faust topic object per name; raw bytes unless the topic is internal JSON."""
        t = self.topics.get(name)
        if t is None:
            t = self.app.topic(name, key_type=str, key_serializer="raw",
                               value_type=None if json_values else bytes,
                               value_serializer="json" if json_values else "raw",
                               internal=internal, partitions=self.settings.partitions)
            self.topics[name] = t
        return t

    def internal_topic(self, name: str) -> Any:
        """One of this group's JSON topics (`stockledger.topics.INTERNAL`)."""
        return self.topic(internal_topic(self.settings.app_id, name), internal=True, json_values=True)

    def table(self, name: str) -> Any:
        t = self.tables.get(name)
        if t is None:
            schema = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")
            t = self.app.Table(name, schema=schema, partitions=self.settings.partitions, default=None)
            self.tables[name] = t
        return t

    async def emit(self, topic: str, key: str, record: dict) -> None:
        """Encode with the one codec and send; Faust flushes before it commits the input offset."""
        await self.topic(topic).send(key=key, value=self.codec.encode(topic, record))

    async def dead_letter(self, event: EventT, error: str, stage: str, source: str | None = None) -> None:
        """Keep the original key and bytes with the reason; the agent carries on with the next record.

        `source` names the contract topic whose DLQ gets it when the event came from an internal topic.
        """
        msg = event.message
        source = source or msg.topic
        key = msg.key if isinstance(msg.key, (bytes, type(None))) else str(msg.key).encode()
        value = msg.value if isinstance(msg.value, (bytes, type(None))) else json.dumps(event.value).encode()
        record = {"key": key, "value": value, "topic": msg.topic, "partition": msg.partition,
                  "offset": msg.offset, "error": error, "stage": stage, "failed_at": int(time.time() * 1000)}
        self.metrics.dead_lettered[source] += 1
        log.warning("dead letter %s[%s]@%s: %s", source, msg.partition, msg.offset, error)
        await self.topic(source + DLQ_SUFFIX).send(
            key=key.decode("utf-8", "replace") if key is not None else None,
            value=self.codec.encode(source + DLQ_SUFFIX, record))

    async def admit(self, event: EventT, event_types: tuple[str, ...],
                    validate: Callable[[dict], list[str]]) -> dict | None:
        """The first step of every input agent: count, re-route, decode, check the envelope and the
        rules. Returns the record, or None when the event went elsewhere (its partition, the DLQ)."""
        self.observe(event)
        if await self.misrouted(event):
            return None
        try:
            record = await self.decode(event)
        except DecodeError as exc:
            await self.dead_letter(event, str(exc), "decode")
            return None
        if record.get("event_type") not in event_types or not isinstance(record.get("data"), dict):
            await self.dead_letter(event, f"expected {' or '.join(event_types)}, got {record.get('event_type')!r}",
                                   "validate")
            return None
        if not record.get("tenant_id") or not record.get("event_id"):
            await self.dead_letter(event, "tenant_id and event_id must not be empty", "validate")
            return None
        reasons = validate(record["data"])
        if reasons:
            await self.dead_letter(event, "; ".join(reasons), "rule")
            return None
        return record

    async def misrouted(self, event: EventT) -> bool:
        """Forward a record a producer put on another partition than murmur2 of its key says.

        State is kept by key in the partition murmur2 picks (Faust's and Java's partitioner); a
        producer with another partitioner (librdkafka's default is CRC32) would split one SKU's
        stock over two partitions. Such a record is re-published to its right partition and
        processed there; the copy left behind is skipped here.
        """
        msg = event.message
        if msg.key is None:
            return False
        right = (murmur2(msg.key) & 0x7FFFFFFF) % self.settings.partitions
        if right == msg.partition:
            return False
        self.metrics.misrouted[msg.topic] += 1
        await self.topic(msg.topic).send(key=msg.key.decode("utf-8", "replace"), value=msg.value, partition=right)
        return True

    async def decode(self, event: EventT) -> dict:
        """The event's record; while the registry is down, wait (a record is never dead-lettered for that)."""
        delay = 0.5
        while True:
            try:
                return self.codec.decode(event.message.value)
            except RegistryUnavailable as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def observe(self, event: EventT) -> None:
        msg = event.message
        self.metrics.observe(msg.topic, time.time() - msg.timestamp)
        self.track(event)

    def track(self, event: EventT) -> None:
        """The last offset an agent took per partition, for the stall watchdog."""
        msg = event.message
        self.taken[(msg.topic, msg.partition)] = msg.offset

    async def unstall(self, after: float = 30.0) -> list[tuple[str, int, int]]:
        """Read again partitions whose commits stopped below what the agents took.

        The last resort behind `streams.consumer`, which reads again every record Faust is known to
        drop: a record lost after delivery some other way is never processed nor acked, and the
        partition's commits stop there. A partition whose committed offset stays below the last
        offset its agent took, with neither moving for `after` seconds, is sought back to its
        committed offset; idempotency makes the records read twice harmless, but the lost record is
        then processed after later ones, so each firing is logged as a warning. Runs from a timer,
        never inside an agent.
        """
        consumer = self.app.consumer
        if consumer is None or self.app.rebalancing:
            return []
        now = time.monotonic()
        moved = []
        for tp in list(consumer.assignment()):
            key = (tp.topic, tp.partition)
            taken = self.taken.get(key)
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001 (Faust has no public accessor)
            if taken is None or committed is None or committed > taken:
                self._stalled.pop(key, None)
                continue
            mark = (committed, taken)
            first = self._stalled.get(key)
            if first is None or first[1] != mark:
                self._stalled[key] = (now, mark)
                continue
            if now - first[0] >= after:
                log.warning("%s[%s]: commits stuck at %s while agents took up to %s; reading again from %s (%s)",
                            tp.topic, tp.partition, committed, taken, committed, consumer.describe(tp))
                self._stalled.pop(key, None)
                self.metrics.rereads[tp.topic] += 1
                await consumer.seek(tp, committed)
                moved.append((tp.topic, tp.partition, committed))
        return moved

    def forget_positions(self, assigned: Any) -> None:
        """A new assignment: another worker may have moved a partition on meanwhile."""
        for tp in assigned:
            self.taken.pop((tp.topic, tp.partition), None)

    def register_schemas(self) -> None:
        """Every schema this worker writes, registered before the first event (no HTTP on the hot path)."""
        for name in BY_NAME:
            self.codec.register(name)


def create_app(settings: Settings, datadir: Path, web_port: int) -> Pipeline:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=web_port,
        web_bind="127.0.0.1",
        canonical_url=f"http://127.0.0.1:{web_port}",
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        # A killed worker's partitions move after this long; Faust's default (60 s) makes every
        # crash-restart wait a minute for the dead member to expire.
        broker_session_timeout=10.0,
        # Batches instead of one produce request per table write or output: the changelogs and
        # outputs of a busy partition go out together.
        producer_linger_ms=10,
        producer_max_batch_size=1_000_000,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset="earliest",
        producer_partitioner=None,
        stream_wait_empty=False,
        table_standby_replicas=0,
        web_transport="tcp://",
    )
    # Faust flushes its producer every 100 buffered sends by default (one table write and one output
    # per event fill that fast); a larger buffer keeps the event loop on events. Flushes before commits
    # are unaffected, so at-least-once holds.
    ProducerBuffer.max_messages = 5000
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    pipeline = Pipeline(settings, app, Codec(settings.schema_registry_url))
    install_ordered_consumer(app, on_rewind=lambda topic: pipeline.metrics.rereads.update((topic,)),
                             drop_every=settings.fault_drop_every, clear_every=settings.fault_clear_every)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        pipeline.forget_positions(assigned)

    @app.timer(10.0)
    async def watchdog() -> None:
        await pipeline.unstall()

    return pipeline


def to_iso(millis: int | None) -> str | None:
    return None if not millis else format_timestamp(millis)


__all__ = ["Pipeline", "create_app", "DecodeError", "to_iso"]
