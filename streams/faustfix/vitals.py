"""A worker whose agent died says so and exits, instead of idling with a green /health.

faust-streaming 0.15.3 runs each agent under mode's OneForOneSupervisor: an exception out of the
agent's loop is logged and the agent is started again on the same stream. The records the dead
agent had taken (`noack_take`, or a feed's `take`) are neither acked nor delivered again, so the partition's commits
stop there while `/health` keeps answering ok; when the supervisor gives up (100 restarts a second)
it raises SystemExit inside its own task. Either way nothing tells the operator.

So every agent body runs under `Vitals.guard`: an exception out of it (or its loop ending while the
app runs) marks the agent dead (`/health` answers 503 naming it) and stops the worker, which exits
with EXIT_AGENT_DIED. A supervisor (systemd, Kubernetes, docker restart) starts a fresh worker that
reads again from the committed offsets: nothing is lost, since nothing of the failed batch was acked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("stockledger.worker")

EXIT_AGENT_DIED = 70  # EX_SOFTWARE
STOP_DELAY = 2.0  # seconds /health answers 503 before the worker stops (probes see why it went)
STOP_GRACE = 30.0  # seconds a graceful stop may take before the process exits anyway


class Vitals:
    def __init__(self, app: Any, delay: float | None = None, grace: float = STOP_GRACE,
                 stop: Callable[[], None] | None = None):
        self.app = app
        self.delay = STOP_DELAY if delay is None else delay
        self.grace = grace
        self.stop = stop or self._terminate
        self.dead: dict[str, str] = {}  # agent name -> why it died

    async def guard(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run one agent's loop; its death is recorded and stops the worker (never a silent restart)."""
        try:
            await body()
        except asyncio.CancelledError:  # the worker stops, or Faust restarts the agent at a rebalance
            raise
        except Exception as exc:  # noqa: BLE001 (whatever kills the loop, the worker must say so)
            if self.app.should_stop:  # the worker is stopping anyway: a loop cut short is no death
                log.info("agent %s ended while stopping: %r", name, exc)
                return
            log.critical("agent %s died: %r", name, exc, exc_info=exc)
            self.died(name, repr(exc))
        else:
            if not self.app.should_stop:
                self.died(name, "its loop ended while the worker runs")

    def died(self, name: str, why: str) -> None:
        first = not self.dead
        self.dead.setdefault(name, why[:500])
        if not first:
            return
        log.critical("stopping the worker: agent %s died (%s); exit status %d", name, why, EXIT_AGENT_DIED)
        asyncio.get_running_loop().call_later(self.delay, self.stop)

    def _terminate(self) -> None:
        """mode's Worker stops gracefully on SIGTERM; `streams.worker.run` turns its exit into EXIT_AGENT_DIED."""
        timer = threading.Timer(self.grace, os._exit, (EXIT_AGENT_DIED,))  # a stop that hangs ends anyway
        timer.daemon = True
        timer.start()
        os.kill(os.getpid(), signal.SIGTERM)
