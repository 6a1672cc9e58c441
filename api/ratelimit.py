"""Per-tenant request rate limit: a token bucket per tenant in each API process.

`rate` requests per second with bursts of `burst`; with N processes behind a load balancer a tenant
gets up to N times the rate (the README says so). `rate` 0 turns the limit off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def take(self, tenant: str) -> int:
        """0 if the request may go on, else the whole seconds to wait (for `Retry-After`)."""
        if self.rate <= 0:
            return 0
        now = self.clock()
        tokens, at = self._buckets.get(tenant, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[tenant] = (tokens - 1, now)
            return 0
        self._buckets[tenant] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.rate))
