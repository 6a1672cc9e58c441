"""The worker's one producer: frames, outputs, state changelog and dead letters through librdkafka.

Faust's own `send` costs 40-60 us of Python per record; librdkafka's `produce` a few. Everything a
worker writes goes through one idempotent producer (acks=all, ordered per partition, retried without
end while the broker is away), and an agent waits for its batch's delivery reports (`Batch.sent`)
before it acks its input: nothing is committed that Kafka does not have.

A poller thread serves the delivery callbacks and hands them to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

from stockledger.config import Settings
from stockledger.produce import producer_config
from stockledger.retries import produce

log = logging.getLogger("stockledger.worker")


class DeliveryFailed(Exception):
    """Kafka refused a record for good (not a transient outage, which librdkafka retries)."""


class Batch:
    """The records one agent step produced; `sent()` waits until every one of them is in Kafka.

    Delivery reports are counted on the poller thread; the event loop is woken once per batch (when
    the last report arrives after `sent()` was called), not once per record. A record sent with
    `tracked` (the last of a store's changelog records in the batch) also has its offset remembered;
    the others only count (`delivered`): a delivery report costs the poller thread the GIL, and most
    records need no offset."""

    __slots__ = ("_loop", "_produced", "_acked", "_closed", "_done", "_error", "offsets", "delivered", "tracked")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._produced = 0  # event loop thread only
        self._acked = 0  # poller thread only
        self._closed = False
        self._done = loop.create_future()
        self._error: str | None = None
        self.offsets: dict[tuple[str, int], int] = {}  # highest delivered offset per (topic, partition)
        self.delivered = self._delivered  # the delivery callbacks, bound once
        self.tracked = self._tracked

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:  # on the poller thread
        if err is not None:
            self._error = self._error or f"{msg.topic()}[{msg.partition()}]: {err}"
        self._acked += 1
        if self._closed and self._acked == self._produced:
            self._loop.call_soon_threadsafe(self._finish)

    def _tracked(self, err: KafkaError | None, msg: Any) -> None:  # on the poller thread
        if err is None:
            key = (msg.topic(), msg.partition())
            offset = msg.offset()
            if offset > self.offsets.get(key, -1):
                self.offsets[key] = offset
        else:
            self._error = self._error or f"{msg.topic()}[{msg.partition()}]: {err}"
        self._acked += 1
        if self._closed and self._acked == self._produced:
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    async def sent(self) -> None:
        self._closed = True
        if self._acked != self._produced:
            await self._done
        if self._error is not None:
            raise DeliveryFailed(self._error)


class Outbox:
    def __init__(self, settings: Settings, extra: dict | None = None):
        # No compression: Faust's aiokafka reads the tenant log, and it has no lz4/zstd codec installed.
        config = {**producer_config(settings), "linger.ms": 5, "message.timeout.ms": 0,
                  "message.max.bytes": 16 * 1024 * 1024 + 4096, **(extra or {})}
        self.producer = Producer(config)
        self._stop = threading.Event()
        self._drain = lambda: self._stop.wait(0.01)  # the local queue is full: let the poller drain it
        self._thread = threading.Thread(target=self._poll, name="outbox-poller", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def batch(self) -> Batch:
        return Batch(asyncio.get_running_loop())

    def produce(self, batch: Batch, topic: str, value: bytes | None, key: bytes | str | None = None,
                partition: int | None = None, tracked: bool = False) -> None:
        """Send one record as part of `batch`; `tracked`: remember its offset in `batch.offsets` once delivered."""
        report = batch.tracked if tracked else batch.delivered
        try:  # positional arguments: a third of the cost of keywords, on the path of every record
            self.producer.produce(topic, value, key, -1 if partition is None else partition, report)
        except BufferError:  # the local queue is full: the one retry for it (stockledger.retries.produce)
            more: dict[str, Any] = {} if partition is None else {"partition": partition}
            produce(self.producer, topic, value, key, self._drain, on_delivery=report, **more)
        batch._produced += 1

    def close(self, timeout: float = 30.0) -> int:
        remaining = self.producer.flush(timeout)
        self._stop.set()
        self._thread.join(5)
        return remaining



class Acks:
    """Acks a step's input once its batch is in Kafka, while the step goes on with the next batch.

    At most `window` batches wait for Kafka at once (then the step waits: backpressure while the
    broker is away). Batches settle in the order they were produced; `settle` may say a batch must
    not be acked after all (its partition moved meanwhile: the next owner reads it again).
    """

    def __init__(self, ack: Callable[[list[Any]], None], window: int = 8):
        self.ack = ack  # acks a list of records (`faustfix.consumer.Feed.ack`)
        self.window = window
        self._tail: asyncio.Future | None = None
        self._inflight: set[asyncio.Future] = set()
        self.failed: DeliveryFailed | None = None

    async def after(self, batch: Batch, records: list[Any], settle: Any = None) -> None:
        """Ack `records` once `batch` is in Kafka. Raises, in the step, once a batch was refused for good:
        its input stays unacked and the agent dies (`faustfix.vitals`) rather than stall its partition."""
        if self.failed is not None:
            raise self.failed
        while len(self._inflight) >= self.window:
            await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
        previous = self._tail
        task = asyncio.ensure_future(self._ack(previous, batch, records, settle))
        self._tail = task
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _ack(self, previous: asyncio.Future | None, batch: Batch, records: list[Any], settle: Any) -> None:
        if previous is not None:
            try:
                await asyncio.shield(previous)
            except Exception:  # noqa: BLE001 (logged where it happened; order is all we wait for)
                pass
        try:
            await batch.sent()
        except DeliveryFailed as exc:  # not acked, and the step raises it at its next batch
            log.error("%s; %d records left unacked", exc, len(records))
            self.failed = self.failed or exc
            return
        if settle is not None and not await settle():
            return
        self.ack(records)
