"""streams/faustfix/fetch.py: a worker's consumer waits at most FETCH_MAX_WAIT_MS at the broker, where Faust's
waits 1.5 s (and the fold, whose tenant log a request in flight leaves out, waits with it)."""

from __future__ import annotations

import asyncio

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams.faustfix.consumer import OrderedTransport
from streams.faustfix.fetch import FETCH_MAX_WAIT_MS, FetchingThread


def test_the_worker_consumer_waits_at_most_fetch_max_wait_ms_where_fausts_waits_1500():
    async def scenario() -> tuple[type, int, int]:
        app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:9", web_enabled=False)
        transport = OrderedTransport(app.conf.broker_consumer, app)
        app.transport = transport
        transport.feeds = {}
        consumer = app.consumer
        thread = consumer._new_consumer_thread()
        ours = thread._create_worker_consumer(transport)
        fausts = AIOKafkaConsumerThread._create_worker_consumer(thread, transport)
        return type(thread), ours._fetch_max_wait_ms, fausts._fetch_max_wait_ms

    kind, ours, fausts = asyncio.run(scenario())
    assert kind is FetchingThread
    assert (ours, fausts) == (FETCH_MAX_WAIT_MS, 1500) == (20, 1500)
