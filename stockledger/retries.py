"""The one retry policy of the project (modelled on arroyo's `utils/retries.py`), and the one way to
produce to a full librdkafka queue.

A `RetryPolicy` calls a function until it returns, retrying only the exceptions its `retriable`
predicate accepts (an outage: the registry, PostgreSQL or Kafka away) and raising any other at once.
Between tries it waits `delay(n)` seconds: `first` doubling (`factor`) up to `cap`, with an optional
`jitter` (a fraction of the delay, drawn at random) so that many workers do not retry in step. Each retry
is logged (a warning naming what failed, the exception and the delay) and counted through `on_retry`.
`attempts` bounds the tries (None: until it works, the usual case for an outage that must not lose data:
the caller's `sleep` may raise to stop). `call` is the blocking form, `acall` the asyncio form (the
function itself stays synchronous; run blocking I/O with `asyncio.to_thread` inside it).

`produce` is "produce, and while librdkafka's local queue is full, let it drain and try again": the three
spin loops of the code before issue 18 (the tools' producers, the stream's outbox, the API's publisher).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("stockledger.retries")


class RetriesExhausted(Exception):
    """`attempts` tries failed; the last failure is the cause."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers' messages run over many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry `retriable` failures, waiting `first` * `factor`**n seconds (at most `cap`, +- `jitter`)."""

    retriable: Callable[[BaseException], bool]
    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.0  # a fraction of the delay: 0.1 waits 0.9 to 1.1 times it
    attempts: int | None = None  # None: until it works (or `sleep` raises)
    logger: logging.Logger = log

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1, 2, ...)."""
        base = min(self.first * self.factor ** (retry - 1), self.cap)
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)  # spreading retries, not security
        return base

    def _failed(self, exc: BaseException, retry: int, what: str, on_retry: Callable[[BaseException], Any] | None
                ) -> float:
        """The delay before the next try, after logging and counting the (retriable) failure."""
        if self.attempts is not None and retry >= self.attempts:
            raise RetriesExhausted(f"{what}: {self.attempts} tries failed") from exc
        delay = self.delay(retry)
        if on_retry is not None:
            on_retry(exc)
        self.logger.warning("%s failed (%s: %s); retry in %.1f s", what, type(exc).__name__, first_line(exc), delay)
        return delay

    def call(self, fn: Callable[[], T], what: str, *, sleep: Callable[[float], Any] = time.sleep,
             on_retry: Callable[[BaseException], Any] | None = None) -> T:
        """`fn()` until it returns. `sleep(delay)` waits between tries; it may raise to stop retrying."""
        retry = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not self.retriable(exc):
                    raise
                retry += 1
                delay = self._failed(exc, retry, what, on_retry)
            sleep(delay)

    async def acall(self, fn: Callable[[], T], what: str, *,
                    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                    on_retry: Callable[[BaseException], Any] | None = None, failed: Exception | None = None) -> T:
        """`call` for asyncio: waits with `await sleep(delay)`. `failed`: the first try was made by the caller
        (a fast path) and failed so; the policy goes on from its first retry."""
        async def once() -> T:
            return fn()

        return await self.acall_async(once, what, sleep=sleep, on_retry=on_retry, failed=failed)

    async def acall_async(self, fn: Callable[[], Awaitable[T]], what: str, *,
                          sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                          on_retry: Callable[[BaseException], Any] | None = None,
                          failed: Exception | None = None) -> T:
        """`acall` of a coroutine function (e.g. `lambda: asyncio.to_thread(blocking)`)."""
        retry = 0
        if failed is not None:
            if not self.retriable(failed):
                raise failed
            retry = 1
            await sleep(self._failed(failed, retry, what, on_retry))
        while True:
            try:
                return await fn()
            except Exception as exc:
                if not self.retriable(exc):
                    raise
                retry += 1
                delay = self._failed(exc, retry, what, on_retry)
            await sleep(delay)


def retrying_on(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    """The predicate "an instance of one of `types`"."""
    return lambda exc: isinstance(exc, types)


def produce(producer: Any, topic: str, value: bytes | None, key: bytes | str | None = None,
            wait: Callable[[], Any] | None = None, **kwargs: Any) -> None:
    """`producer.produce(topic, value, key, **kwargs)`; while librdkafka's local queue is full (BufferError),
    `wait()` (by default `producer.poll(0.05)`: serve delivery reports, which frees the queue) and try again.
    A producer polled by its own thread passes a `wait` that only sleeps."""
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            if wait is None:
                producer.poll(0.05)
            else:
                wait()


async def aproduce(producer: Any, topic: str, value: bytes | None, key: bytes | str | None = None,
                   pause: float = 0.01, **kwargs: Any) -> None:
    """`produce` for a producer polled by its own thread, from asyncio: on a full queue, `asyncio.sleep(pause)`."""
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            await asyncio.sleep(pause)
