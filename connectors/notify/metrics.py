"""The notifier's Prometheus metrics (served on --metrics-port, loopback) and the quantiles that
`stockledger webhook stats` reads back from them.

- `stockledger_webhook_deliveries_total{tenant}`: 2xx answers;
- `stockledger_webhook_failures_total{tenant,class}`: server_error (500/502/503/504), timeout,
  connection, client_error (4xx), unexpected_status, circuit_open (not sent: breaker open), config
  (no signing secret);
- `stockledger_webhook_dead_letters_total{tenant}`;
- `stockledger_webhook_pending{tenant}`, `stockledger_webhook_retries_pending{tenant}`: levels
  waiting (of which after a failure), read from PostgreSQL every few seconds (the same table-wide
  figure on every notifier: take the max, not the sum);
- `stockledger_webhook_breaker_state{endpoint}`: 0 closed, 1 half-open, 2 open;
- `stockledger_webhook_delivery_latency_seconds{tenant}`: from the stock.levels record's timestamp
  to the 2xx of the level it carried (retries included);
- `stockledger_webhook_request_seconds`: one HTTP try, from sending to the answer (or the error).
"""

from __future__ import annotations

import math
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from stockledger.ops import BATCH_BUCKETS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                   3600.0, 21600.0, 86400.0)
FAILURE_CLASSES = ("server_error", "timeout", "connection", "client_error", "unexpected_status", "circuit_open",
                   "config")


class NotifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter("stockledger_webhook_deliveries", "Webhook deliveries answered 2xx.", ["tenant"],
                                  registry=r)
        self.failures = Counter("stockledger_webhook_failures", "Webhook tries that failed, by class.",
                                ["tenant", "class"], registry=r)
        self.dead_letters = Counter("stockledger_webhook_dead_letters", "Deliveries given up after the maximum age.",
                                    ["tenant"], registry=r)
        self.pending = Gauge("stockledger_webhook_pending", "Levels waiting to be delivered (table-wide).", ["tenant"],
                             registry=r)
        self.retries_pending = Gauge("stockledger_webhook_retries_pending",
                                     "Levels waiting for a retry after a failure (table-wide).", ["tenant"], registry=r)
        self.breaker = Gauge("stockledger_webhook_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                             ["endpoint"], registry=r)
        self.latency = Histogram("stockledger_webhook_delivery_latency_seconds",
                                 "From the stock.levels record to the 2xx of its delivery.", ["tenant"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.request = Histogram("stockledger_webhook_request_seconds", "One webhook HTTP try, sent to answered.",
                                 buckets=BATCH_BUCKETS, registry=r)

    def set_pending(self, counts: dict[str, tuple[int, int]]) -> None:
        seen = {labels[0] for labels in list(self.pending._metrics)}  # noqa: SLF001 (labels seen so far)
        for tenant in seen - set(counts):
            self.pending.labels(tenant).set(0)
            self.retries_pending.labels(tenant).set(0)
        for tenant, (n, retries) in counts.items():
            self.pending.labels(tenant).set(n)
            self.retries_pending.labels(tenant).set(retries)


def scrape(texts: list[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name across the scraped pages of several notifiers."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for page in texts:
        for family in text_string_to_metric_families(page):
            for s in family.samples:
                out[s.name].append((dict(s.labels), s.value))
    return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile: linear interpolation inside the bucket holding the q-th observation.
    `buckets` are (upper bound, cumulative count), +Inf included."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def latency_buckets(samples: dict, tenant: str) -> list[tuple[float, float]]:
    """The tenant's latency histogram buckets, summed over every scraped notifier."""
    sums: dict[float, float] = defaultdict(float)
    for labels, value in samples.get("stockledger_webhook_delivery_latency_seconds_bucket", ()):
        if labels.get("tenant") == tenant:
            sums[float(labels["le"])] += value
    return sorted(sums.items())
