"""Request rate limits: a token bucket per key (a tenant, or a client's address) in each API process.

`rate` requests per second with bursts of `burst`; with N processes behind a load balancer a tenant
gets up to N times the rate (the README says so). `rate` 0 turns the limit off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.rate = rate
        self.max_keys = max_keys
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they equal a new one), so memory stays bounded."""
        self._buckets = {k: (t, at) for k, (t, at) in self._buckets.items()
                         if t + (now - at) * self.rate < self.burst}

    def take(self, tenant: str) -> int:
        """0 if the request may go on, else the whole seconds to wait (for `Retry-After`)."""
        if self.rate <= 0:
            return 0
        now = self.clock()
        if len(self._buckets) >= self.max_keys and tenant not in self._buckets:
            self._forget_full(now)
        tokens, at = self._buckets.get(tenant, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[tenant] = (tokens - 1, now)
            return 0
        self._buckets[tenant] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.rate))
