"""Seed 001's circuit breaker, one per endpoint (URL): open after N consecutive failures, half-open
after a pause (one probe goes through), closed on a success. Pure: the caller passes the clock.

Only failures of the endpoint count (5xx it is retried on, timeouts, connection errors); an answer
that is the data's fault (4xx) shows the endpoint is up and counts as a success.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, HALF_OPEN, OPEN = "closed", "half-open", "open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the metric's value


@dataclass
class Breaker:
    failures_to_open: int
    open_for: float
    state: str = CLOSED
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    probing: bool = False  # half-open: the one probe is in flight

    def allow(self, now: float) -> bool:
        """Whether a request may go now; in half-open, True once (the probe) until it reports."""
        if self.state == OPEN and now - self.opened_at >= self.open_for:
            self.state, self.probing = HALF_OPEN, False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> str | None:
        """Record a success; returns the state left if it changed (closed from half-open or open)."""
        self.failures = 0
        self.probing = False
        if self.state != CLOSED:
            old, self.state = self.state, CLOSED
            return old
        return None

    def failure(self, now: float) -> bool:
        """Record a failure; True when this one opened the breaker."""
        self.failures += 1
        self.probing = False
        if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.failures_to_open):
            self.state, self.opened_at = OPEN, now
            return True
        return False
