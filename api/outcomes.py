"""The pipeline's answers, awaited by the request that published the event.

Each API process reads `sales.outcomes` (and the dead letters of the topics it publishes sales,
refunds and payments to) from where they ended when it started: every partition assigned, no
consumer group, nothing committed. A request registers (its tenant, its event id) before publishing;
the first outcome or dead letter of that tenant naming that event id resolves it. Event ids are
chosen by callers on the signed doors, so one tenant's id never reaches another tenant's waiter.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from stockledger.codec import Codec, DecodeError
from stockledger.config import Settings

OUTCOMES = "sales.outcomes"
DEAD_LETTERS = ("sales.dlq", "refunds.dlq", "payments.dlq")
log = logging.getLogger("stockledger.api.outcomes")


@dataclass(frozen=True)
class Outcome:
    """A `sales.outcomes` record (dead_letter None), or the error of a dead-lettered event."""

    record: dict | None = None
    dead_letter: str | None = None


class OutcomeWaiter:
    def __init__(self, settings: Settings, codec: Codec):
        self.settings = settings
        self.codec = codec
        self._waiting: dict[tuple[str, str], asyncio.Future] = {}  # (tenant, event id) -> future
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.consumer = Consumer({**settings.kafka_config(),
                                  "group.id": f"{settings.app_id}-api-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "enable.partition.eof": False,
                                  "fetch.wait.max.ms": 20, "client.id": "stockledger-api-outcomes"})

    def start(self, loop: asyncio.AbstractEventLoop) -> OutcomeWaiter:
        """Assign every partition at its current end (positions fixed now, before any publish)."""
        self._loop = loop
        tps = []
        for topic in (OUTCOMES, *DEAD_LETTERS):
            meta = self.consumer.list_topics(topic, timeout=15).topics[topic]
            for p in meta.partitions:
                high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)[1]
                tps.append(TopicPartition(topic, p, high))
        self.consumer.assign(tps)
        self._thread = threading.Thread(target=self._run, name="api-outcomes", daemon=True)
        self._thread.start()
        return self

    def expect(self, tenant: str, event_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[(tenant, event_id)] = fut
        return fut

    def forget(self, tenant: str, event_id: str, fut: asyncio.Future | None = None) -> None:
        """Drop the waiter (only `fut` itself when given: a later request's waiter stays)."""
        with self._lock:
            if fut is None or self._waiting.get((tenant, event_id)) is fut:
                self._waiting.pop((tenant, event_id), None)

    async def wait(self, fut: asyncio.Future, tenant: str, event_id: str, timeout: float) -> Outcome | None:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        finally:
            self.forget(tenant, event_id, fut)

    def _resolve(self, tenant: str, event_id: str, outcome: Outcome) -> None:
        with self._lock:
            fut = self._waiting.pop((tenant, event_id), None)
        if fut is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_set, fut, outcome)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.consumer.consume(500, 0.2)
            except Exception as exc:  # a broker hiccup: the next poll retries
                log.warning("outcomes consumer: %s", exc)
                continue
            for msg in messages:
                if msg.error() or not self._waiting:
                    continue
                try:
                    self._handle(msg.topic(), msg.value())  # type: ignore[arg-type]
                except (DecodeError, KeyError, TypeError) as exc:
                    log.warning("undecodable record on %s: %s", msg.topic(), exc)

    def _handle(self, topic: str, value: bytes) -> None:
        record = self.codec.decode(value)
        if topic == OUTCOMES:
            self._resolve(record["tenant_id"], record["event_id"], Outcome(record=record))
            return
        original: Any = record.get("value")
        try:
            event = self.codec.decode(original)
        except DecodeError:
            return
        self._resolve(event.get("tenant_id", ""), event.get("event_id", ""),
                      Outcome(dead_letter=record.get("error") or "rejected"))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.consumer.close()


def _set(fut: asyncio.Future, value: Outcome) -> None:
    if not fut.done():
        fut.set_result(value)
