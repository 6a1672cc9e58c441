"""Faust's fetch wait (faust-streaming 0.15.3 hard-codes `fetch_max_wait_ms=1500` for a worker's consumer).

aiokafka sends one fetch request per broker at a time, and leaves out of it every partition whose
records are still buffered. A worker's admit folds its input into the tenant log, which the same
consumer reads: when the input is drained, the request in flight (input partitions only, their
records consumed; the tenant log's left out, its previous run still buffered) waits at the broker
up to 1.5 s for input that does not come, while the tenant log's next frames wait behind it. The
fold sat idle 0.5-1 s at a time on a backlog (stock benchmark). A worker's consumer waits at most
FETCH_MAX_WAIT_MS instead: an idle worker asks each broker again that often.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 20


class FetchingThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose worker consumer waits at most FETCH_MAX_WAIT_MS at the broker."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its Fetcher, made when it starts
        return consumer


__all__ = ["FETCH_MAX_WAIT_MS", "FetchingThread"]
