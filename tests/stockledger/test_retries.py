"""The one retry policy (stockledger.retries) and the one "produce to a full queue" helper.

The policy's tests call plain functions that fail a given number of times and record the delays they
would sleep (no clock); the producer's test fills a real librdkafka queue of one message against the
test stack's Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest

from stockledger.retries import RetriesExhausted, RetryPolicy, aproduce, first_line, produce, retrying_on


class Outage(Exception):
    pass


def failing(times: int, exc: Exception | None = None):
    """A function that raises `exc` (an Outage) `times` times, then returns the number of calls."""
    calls = [0]

    def fn() -> int:
        calls[0] += 1
        if calls[0] <= times:
            raise exc if exc is not None else Outage(f"down\nsecond line {calls[0]}")
        return calls[0]
    return fn


def test_delays_double_from_first_up_to_the_cap():
    policy = RetryPolicy(retrying_on(Outage), first=0.5, cap=30.0)
    assert [policy.delay(n) for n in range(1, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert [RetryPolicy(retrying_on(Outage)).delay(n) for n in (1, 2, 5, 6)] == [1.0, 2.0, 16.0, 30.0]


def test_jitter_stays_within_its_fraction():
    policy = RetryPolicy(retrying_on(Outage), first=10.0, cap=10.0, jitter=0.1)
    delays = [policy.delay(3) for _ in range(500)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 1


def test_call_retries_a_retriable_failure_logs_and_counts_each_retry(caplog):
    slept: list[float] = []
    counted: list[BaseException] = []
    policy = RetryPolicy(retrying_on(Outage), first=1.0, cap=4.0)
    with caplog.at_level(logging.WARNING, logger="stockledger.retries"):
        assert policy.call(failing(4), "writing", sleep=slept.append, on_retry=counted.append) == 5
    assert slept == [1.0, 2.0, 4.0, 4.0]
    assert [str(e) for e in counted] == [f"down\nsecond line {n}" for n in (1, 2, 3, 4)]
    assert [r.getMessage() for r in caplog.records] == [
        f"writing failed (Outage: down); retry in {d:.1f} s" for d in (1.0, 2.0, 4.0, 4.0)]


def test_a_failure_the_predicate_refuses_is_raised_at_once():
    slept: list[float] = []
    policy = RetryPolicy(lambda e: isinstance(e, Outage) and "fatal" not in str(e))
    with pytest.raises(Outage, match="fatal"):
        policy.call(failing(1, Outage("fatal")), "x", sleep=slept.append)
    with pytest.raises(KeyError):
        policy.call(failing(1, KeyError("k")), "x", sleep=slept.append)
    assert slept == []


def test_attempts_bound_the_tries():
    slept: list[float] = []
    with pytest.raises(RetriesExhausted) as raised:
        RetryPolicy(retrying_on(Outage), attempts=3).call(failing(5), "x", sleep=slept.append)
    assert slept == [1.0, 2.0]
    assert isinstance(raised.value.__cause__, Outage)
    assert RetryPolicy(retrying_on(Outage), attempts=3).call(failing(2), "x", sleep=slept.append) == 3


def test_a_sleep_that_raises_stops_the_retries():
    class Stop(Exception):
        pass

    def stop(_delay: float) -> None:
        raise Stop

    with pytest.raises(Stop):
        RetryPolicy(retrying_on(Outage)).call(failing(1), "x", sleep=stop)


def test_async_forms_wait_with_the_given_coroutine():
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    policy = RetryPolicy(retrying_on(Outage), first=0.5)
    assert asyncio.run(policy.acall(failing(2), "x", sleep=sleep)) == 3
    fn = failing(3)

    async def coro() -> int:
        return fn()

    assert asyncio.run(policy.acall_async(coro, "x", sleep=sleep)) == 4
    assert slept == [0.5, 1.0, 0.5, 1.0, 2.0]
    slept.clear()  # a first try the caller made (a fast path) counts as the first failure
    assert asyncio.run(policy.acall(failing(1), "x", sleep=sleep, failed=Outage("down"))) == 2
    assert slept == [0.5, 1.0]
    with pytest.raises(KeyError):
        asyncio.run(policy.acall(failing(0), "x", sleep=sleep, failed=KeyError("k")))


def test_first_line():
    assert first_line(Outage("  a\nb ")) == "a"
    assert first_line(Outage()) == ""


def test_produce_waits_while_the_local_queue_is_full(stack, settings):
    """A queue of one message: every produce after the first meets BufferError until the broker has it."""
    from confluent_kafka import Consumer, Producer

    from stockledger.produce import producer_config
    from stockledger.topics import ensure_topics

    topic = f"test-retries-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka_config(), 1, [topic])
    config = {**producer_config(settings), "queue.buffering.max.messages": 1}
    producer = Producer(config)
    full = [0]
    real_poll = producer.poll

    def wait() -> None:
        full[0] += 1
        real_poll(0.05)

    for n in range(20):
        produce(producer, topic, f"v{n}".encode(), f"k{n}".encode(), wait)
    assert producer.flush(30) == 0
    assert full[0] > 0  # the queue was full at least once

    async def publish_async() -> None:  # as the API does: a producer polled by a thread of its own
        threaded = Producer(config)
        stop = threading.Event()

        def poller() -> None:
            while not stop.is_set():
                threaded.poll(0.05)

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        try:
            for n in range(20, 30):
                await aproduce(threaded, topic, f"v{n}".encode(), f"k{n}".encode())
            assert threaded.flush(30) == 0
        finally:
            stop.set()
            thread.join(5)

    asyncio.run(publish_async())
    consumer = Consumer({**settings.kafka_config(), "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: list[bytes] = []
    for _ in range(300):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            seen.append(msg.value())
        if len(seen) >= 30:
            break
    consumer.close()
    assert seen == [f"v{n}".encode() for n in range(30)]


def test_the_outbox_waits_while_its_local_queue_is_full_and_delivers_every_record_in_order(stack, settings):
    """The worker's Outbox takes the fast path (positional produce) until librdkafka's queue is full, then the
    one retry for BufferError; every record of the batch is in Kafka when `sent()` returns, in order, keyed
    and partitioned as asked. Only the records sent `tracked` have their offsets in `batch.offsets`."""
    from confluent_kafka import Consumer

    from stockledger.topics import ensure_topics
    from streams.outbox import Outbox

    topic = f"test-outbox-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka_config(), 2, [topic])
    outbox = Outbox(settings, {"queue.buffering.max.messages": 1})

    async def send() -> dict:
        batch = outbox.batch()
        for n in range(30):
            outbox.produce(batch, topic, f"v{n}".encode(), f"k{n}".encode(), n % 2, n >= 28)  # the last two tracked
        outbox.produce(batch, topic, b"unpartitioned", b"k-any")  # not tracked: its offset (15) is not kept
        await batch.sent()
        return dict(batch.offsets)

    try:
        offsets = asyncio.run(send())
    finally:
        assert outbox.close() == 0
    assert offsets == {(topic, 0): 14, (topic, 1): 14}
    consumer = Consumer({**settings.kafka_config(), "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.partition.eof": False})
    consumer.subscribe([topic])
    got: dict[int, list[tuple[bytes, bytes]]] = {0: [], 1: []}
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < 31 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got[msg.partition()].append((msg.key(), msg.value()))
    consumer.close()
    assert [v for k, v in got[0] if k != b"k-any"] == [f"v{n}".encode() for n in range(0, 30, 2)]
    assert [v for k, v in got[1] if k != b"k-any"] == [f"v{n}".encode() for n in range(1, 30, 2)]
    assert sum(k == b"k-any" for part in got.values() for k, _ in part) == 1
