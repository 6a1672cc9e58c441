"""Worker metrics in the Prometheus text format: counts per topic, DLQ records, lag, latency histogram."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.n += 1


@dataclass
class Metrics:
    """Counters a worker keeps in memory; /metrics renders them, lag is read at scrape time."""

    processed: Counter = field(default_factory=Counter)  # topic -> events handled
    dead_lettered: Counter = field(default_factory=Counter)  # source topic -> DLQ records
    folded: int = 0  # events applied by the fold (duplicates included: the core recognises them)
    rereads: Counter = field(default_factory=Counter)  # topic -> partitions read again (records dropped, commits stuck)
    latency: dict[str, Histogram] = field(default_factory=dict)  # topic -> produce-to-processed

    def observe(self, topic: str, seconds: float) -> None:
        self.processed[topic] += 1
        hist = self.latency.get(topic)
        if hist is None:
            hist = self.latency[topic] = Histogram()
        hist.observe(max(seconds, 0.0))

    def render(self, lag: Iterable[tuple[str, int, int]] = ()) -> str:
        out = [
            "# HELP stockledger_events_processed_total Events handled per input topic.",
            "# TYPE stockledger_events_processed_total counter",
        ]
        out += [f'stockledger_events_processed_total{{topic="{t}"}} {n}' for t, n in sorted(self.processed.items())]
        out += ["# HELP stockledger_dlq_records_total Records sent to a dead-letter queue, per source topic.",
                "# TYPE stockledger_dlq_records_total counter"]
        out += [f'stockledger_dlq_records_total{{topic="{t}"}} {n}' for t, n in sorted(self.dead_lettered.items())]
        out += ["# HELP stockledger_events_folded_total Events the fold applied to tenant state.",
                "# TYPE stockledger_events_folded_total counter", f"stockledger_events_folded_total {self.folded}"]
        out += ["# HELP stockledger_rereads_total Partitions read again from a record the consumer dropped "
                "or a commit that stopped.",
                "# TYPE stockledger_rereads_total counter"]
        out += [f'stockledger_rereads_total{{topic="{t}"}} {n}' for t, n in sorted(self.rereads.items())]
        out += ["# HELP stockledger_consumer_lag Records not yet read, per assigned partition.",
                "# TYPE stockledger_consumer_lag gauge"]
        out += [f'stockledger_consumer_lag{{topic="{t}",partition="{p}"}} {n}' for t, p, n in sorted(lag)]
        out += ["# HELP stockledger_processing_latency_seconds From a record's Kafka timestamp to its processing.",
                "# TYPE stockledger_processing_latency_seconds histogram"]
        for topic, h in sorted(self.latency.items()):
            running = 0
            for bound, count in zip(h.buckets, h.counts, strict=False):  # counts has one more: above the last
                running += count
                out.append(f'stockledger_processing_latency_seconds_bucket{{topic="{topic}",le="{bound}"}} {running}')
            out.append(f'stockledger_processing_latency_seconds_bucket{{topic="{topic}",le="+Inf"}} {h.n}')
            out.append(f'stockledger_processing_latency_seconds_sum{{topic="{topic}"}} {h.total:.6f}')
            out.append(f'stockledger_processing_latency_seconds_count{{topic="{topic}"}} {h.n}')
        return "\n".join(out) + "\n"
