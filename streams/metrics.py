"""Worker metrics with prometheus-client: counts per topic, DLQ records, lag, latency histograms.

Each worker (Pipeline) has its own registry; `/metrics` renders it (streams/web.py), lag is read at
scrape time from Faust's monitor.

- `stockledger_events_processed_total{topic}`, `stockledger_dlq_records_total{topic}`,
  `stockledger_events_folded_total`, `stockledger_rereads_total{topic}`;
- `stockledger_consumer_lag{topic,partition}` (gauge, at scrape time);
- `stockledger_processing_latency_seconds{topic}`: from a record's Kafka timestamp to its admission;
- `stockledger_admit_batch_seconds`, `stockledger_fold_batch_seconds`: one admit step / one fold of a
  tenant-log partition's batch, from its first record decoded to its outputs and writes queued.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Lag:
    """A collector of the lag last handed to `Metrics.render` (partitions come and go with assignments)."""

    def __init__(self) -> None:
        self.values: list[tuple[str, int, int]] = []

    def collect(self):
        g = GaugeMetricFamily("stockledger_consumer_lag", "Records not yet read, per assigned partition.",
                              labels=["topic", "partition"])
        for topic, partition, n in sorted(self.values):
            g.add_metric([topic, str(partition)], n)
        yield g


class Metrics:
    """What a worker counts; `render` gives the Prometheus text."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.processed = Counter("stockledger_events_processed", "Events handled per input topic.", ["topic"],
                                 registry=r)
        self.dead_lettered = Counter("stockledger_dlq_records",
                                     "Records sent to a dead-letter queue, per source topic.", ["topic"], registry=r)
        self.folded = Counter("stockledger_events_folded", "Events the fold applied to tenant state.", registry=r)
        self.rereads = Counter("stockledger_rereads", "Partitions read again from a record the consumer dropped or "
                                                      "a commit that stopped.", ["topic"], registry=r)
        self.latency = Histogram("stockledger_processing_latency_seconds",
                                 "From a record's Kafka timestamp to its processing.", ["topic"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.admit_batch = Histogram("stockledger_admit_batch_seconds", "One admit step: decode, check, forward.",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.fold_batch = Histogram("stockledger_fold_batch_seconds",
                                    "One fold of a tenant-log batch: decode, apply, outputs and writes queued.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self._lag = _Lag()
        r.register(self._lag)

    def observe(self, topic: str, seconds: float) -> None:
        self.processed.labels(topic).inc()
        self.latency.labels(topic).observe(max(seconds, 0.0))

    def reread(self, topic: str) -> None:
        self.rereads.labels(topic).inc()

    def render(self, lag: Iterable[tuple[str, int, int]] = ()) -> str:
        self._lag.values = list(lag)
        return generate_latest(self.registry).decode()
