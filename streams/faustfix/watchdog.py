"""The last resort behind `consumer.OrderedConsumer`: read again partitions whose commits stopped.

A record lost after delivery in some way the ordered consumer does not know of is never processed
nor acked, and its partition's commits stop there. A partition whose committed offset stays below
the last offset its agent took, with neither moving for `after` seconds, is sought back to its
committed offset. Idempotency makes the records read twice harmless (admit forwards a frame again,
the fold skips what its session applied and recognises event ids), but the lost record is then
processed after later ones, so each firing is logged as a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("stockledger.worker")


def awaiting(task: asyncio.Task) -> list[str]:
    """Where `task` waits: its chain of awaits, outermost first (`Task.get_stack` gives only one frame
    of a suspended coroutine), ending with the future it is parked on."""
    chain: list[str] = []
    obj: Any = task.get_coro()
    while obj is not None and len(chain) < 64:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(obj, "ag_frame", None)
        if frame is None:
            chain.append(repr(obj)[:200])
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_qualname}")
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None) or getattr(obj, "ag_await", None)
    return chain


def our_waits() -> str:
    """The await chains of the tasks that run our code (the agents' steps, restores): where each waits."""
    out = []
    for task in asyncio.all_tasks():
        chain = awaiting(task)
        if any("/streams/" in step and "/faustfix/" not in step for step in chain):
            out.append(f"{task.get_name()}: " + " -> ".join(chain))
    return "; ".join(out) or "none"


class Watchdog:
    def __init__(self, app: Any, on_reread: Any):
        self.app = app
        self.on_reread = on_reread
        self.taken: dict[tuple[str, int], int] = {}
        self._stalled: dict[tuple[str, int], tuple[float, tuple[int, int]]] = {}

    def track(self, topic: str, partition: int, offset: int) -> None:
        self.taken[(topic, partition)] = offset

    def forget(self, assigned: Any) -> None:
        """A new assignment: another worker may have moved a partition on meanwhile."""
        for tp in assigned:
            self.taken.pop((tp.topic, tp.partition), None)

    async def check(self, after: float = 30.0) -> list[tuple[str, int, int]]:
        consumer = self.app.consumer
        if consumer is None or self.app.rebalancing:
            return []
        now = time.monotonic()
        moved = []
        for tp in list(consumer.assignment()):
            key = (tp.topic, tp.partition)
            taken = self.taken.get(key)
            committed = consumer._committed_offset.get(tp)  # noqa: SLF001 (Faust has no public accessor)
            if taken is None or committed is None or committed > taken:
                self._stalled.pop(key, None)
                continue
            mark = (committed, taken)
            first = self._stalled.get(key)
            if first is None or first[1] != mark:
                self._stalled[key] = (now, mark)
                continue
            if now - first[0] >= after:
                log.warning("%s[%s]: commits stuck at %s while agents took up to %s; reading again from %s (%s); "
                            "our tasks wait at: %s", tp.topic, tp.partition, committed, taken, committed,
                            consumer.describe(tp), our_waits())
                self._stalled.pop(key, None)
                self.on_reread(tp.topic)
                await consumer.seek(tp, committed)
                moved.append((tp.topic, tp.partition, committed))
        return moved
