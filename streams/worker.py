"""`stockledger worker`: one Faust worker process; start several to share the tenants' partitions."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from stockledger import logs
from stockledger.config import Settings
from stockledger.topics import ensure_topics, internal_topics
from streams import admit, fold, memprobe, web
from streams.app import Pipeline, create_app
from streams.faustfix.vitals import EXIT_AGENT_DIED
from streams.web import LOOPBACK


def build(settings: Settings, datadir: Path, web_port: int, worker_id: str = "1",
          web_host: str = "127.0.0.1") -> Pipeline:
    """The app with every step and view installed (tests and the CLI build it the same way)."""
    p = create_app(settings, datadir, web_port, worker_id, web_host)
    admit.install(p)
    folder = fold.install(p)
    web.install(p, folder)
    memprobe.install(p, folder)  # off unless STOCKLEDGER_MEMPROBE names a file

    @p.app.timer(TRIM_EVERY)
    async def trim() -> None:
        trim_heap()

    @p.app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        p.watchdog.forget(assigned)
        folder.assigned(assigned)

    @p.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        folder.revoked(revoked)

    return p


MALLOC_ARENAS = 2  # glibc malloc arenas of a worker process (glibc's default: 8 per core)
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def limit_malloc_arenas() -> bool:
    """At most MALLOC_ARENAS glibc arenas, as MALLOC_ARENA_MAX=2 would set (unless MALLOC_ARENA_MAX is set):
    the worker's threads (librdkafka's, RocksDB's, the executor's) otherwise each get an arena of their own,
    and their freed memory stays resident in them. Issue 17's soak at 1,000 events/s, minute 6: heap 113 MiB
    of which 54 free, RSS 217 MiB; with 2 arenas 87 MiB, 29 free, RSS 184 MiB. Called before any thread
    starts; False where there is no glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):
        return False


TRIM_EVERY = 60.0  # seconds between two `trim_heap` of a worker


def trim_heap() -> bool:
    """Give glibc's free heap pages back to the system (malloc_trim(0), which also releases the free pages
    inside the heap, not only its top). Freed memory otherwise stays resident between live blocks: the 30-minute
    soak at 1,000 events/s had 8 MiB free inside the heap in its first minute and 27 MiB after 5 (RSS 1.29 of
    the first minute at minute 30). A few milliseconds, once a minute. False where there is no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


GC_THRESHOLDS = (50_000, 20, 20)  # the cyclic collector's: Python's default is (700, 10, 10)


def tune_gc() -> None:
    """Run the cyclic collector far less often: a worker's state and records are acyclic dicts and tuples, and a
    full collection walks every object the store's cache and the admitted records keep (50-130 ms each, about
    ten in an 8 s sales backlog: a tenth of the time). Cycles are still collected, every 50,000 net
    allocations at the youngest generation. Objects alive once the worker is built are frozen out of every
    collection (`gc.freeze`). Measured: sales 3,200-3,830 -> 3,431-4,965 sales/s, stock 20,072-20,292 ->
    21,304-23,452 events/s (2 runs each, interleaved)."""
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings, worker_id: str, web_port: int | None = None, datadir: Path | None = None,
        loglevel: str = "warning", web_host: str | None = None, log_format: str = "text") -> None:
    from streams.faustfix.spinner import Worker

    limit_malloc_arenas()
    web_port = web_port or settings.web_port
    web_host = web_host or settings.web_host
    if web_host not in LOOPBACK and not settings.operator_token:
        print(f"refusing to serve the operators' HTTP port on {web_host} without STOCKLEDGER_OPERATOR_TOKEN "
              "(bind to 127.0.0.1, or set a token)", file=sys.stderr)
        raise SystemExit(2)
    datadir = datadir or settings.home / "workers" / worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings.kafka_config(), settings.partitions)
    internal = internal_topics(settings.app_id)
    ensure_topics(settings.kafka_config(), settings.partitions, list(internal),
                  compacted=tuple(t for t, c in internal.items() if c))
    p = build(settings, datadir, web_port, worker_id, web_host)
    p.register_schemas()
    tune_gc()
    gc.freeze()
    logging.getLogger("stockledger").setLevel(loglevel.upper())
    try:
        Worker(p.app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
               logging_config=logs.dict_config(loglevel, log_format)).execute_from_commandline()
    except SystemExit as exc:
        if p.vitals.dead:  # an agent died: the worker stopped itself, and says so in its exit status
            print(f"worker {worker_id}: agents died: {p.vitals.dead}", file=sys.stderr)
            raise SystemExit(EXIT_AGENT_DIED) from exc
        raise
    finally:
        p.outbox.close()
