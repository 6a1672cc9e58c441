"""The idempotent producer of the API: acks=all, and a request is answered only after the broker
acknowledged every record it published (the delivery report resolves a future on the event loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer

from api.problems import Problem
from stockledger.codec import Codec
from stockledger.config import Settings
from stockledger.produce import Prepared, producer_config
from stockledger.retries import aproduce

DELIVERY_TIMEOUT_MS = 30_000  # a record not acknowledged by then fails the request (503, not stored)


class PublishError(Exception):
    pass


class Publisher:
    def __init__(self, settings: Settings, codec: Codec):
        self.codec = codec
        self.producer = Producer({**producer_config(settings), "linger.ms": 2,
                                  "message.timeout.ms": DELIVERY_TIMEOUT_MS})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="api-producer", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    async def publish(self, records: Iterable[tuple[str, Prepared]]) -> None:
        """Publish (topic, prepared) records; return when all are acknowledged, raise PublishError if not.
        Every record is encoded before the first is sent: one that does not encode (a value its schema
        cannot hold) is a 400 and nothing of the request is published."""
        loop = asyncio.get_running_loop()
        futures = []
        encoded = []
        for topic, item in records:
            try:
                encoded.append((topic, item, self.codec.encode(topic, item.record)))
            except (OverflowError, ValueError, TypeError) as exc:
                raise Problem(400, f"the request maps to an event its schema cannot hold "
                                   f"({exc.__class__.__name__})") from None
        for topic, item, value in encoded:
            fut = loop.create_future()

            def report(err, _msg, fut=fut) -> None:
                loop.call_soon_threadsafe(_settle, fut, err)

            try:
                await aproduce(self.producer, topic, value, item.key, on_delivery=report)
            except KafkaException as exc:
                raise PublishError(str(exc)) from None
            futures.append(fut)
        errors = [e for e in await asyncio.gather(*futures) if e is not None]
        if errors:
            raise PublishError(str(errors[0]))

    def close(self) -> None:
        self.producer.flush(10)
        self._stop.set()
        self._thread.join(5)


def _settle(fut: asyncio.Future, err: object) -> None:
    if not fut.done():
        fut.set_result(err)
