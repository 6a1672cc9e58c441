"""What a worker's memory holds, measured from inside: a debug aid for soaks (off unless asked for).

With `STOCKLEDGER_MEMPROBE=<file>` the worker appends one JSON line to `<file>` every
`STOCKLEDGER_MEMPROBE_EVERY` seconds (default 60): its RSS, glibc's heap figures (mallinfo2: bytes in use
and free inside the heap, so fragmentation shows), Python's allocated blocks, the object counts per type
that changed most, the sizes of the structures the worker keeps (each store's decoded-value cache and
RocksDB's memtables, block cache and table readers; the records admit keeps for the fold; the ordered
consumer's per-partition bookkeeping; the outbox's queue), and, with `STOCKLEDGER_MEMPROBE_TRACE=1`, the
20 source lines whose allocations grew most since the last line (tracemalloc, which slows the worker).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROCKSDB_PROPERTIES = ("rocksdb.cur-size-all-mem-tables", "rocksdb.block-cache-usage",
                      "rocksdb.block-cache-pinned-usage", "rocksdb.estimate-table-readers-mem",
                      "rocksdb.estimate-num-keys")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    """glibc's heap: `arena` bytes taken from the system by brk/arenas, `uordblks` in use, `fordblks` free
    inside them, `hblkhd` in mmapped chunks. Empty where glibc has no mallinfo2."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {k: int(getattr(info, k)) for k in ("arena", "hblkhd", "uordblks", "fordblks")}


def rss_kib() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
            name, value = line.split(":", 1)
            out[name] = int(value.split()[0])
    return out


class MemProbe:
    def __init__(self, path: str, pipeline: Any, folder: Any, trace: bool = False):
        self.path = path
        self.p = pipeline
        self.folder = folder
        self.trace = trace
        self._types: Counter[str] = Counter()
        self._snapshot: Any = None
        self._t0 = time.monotonic()
        if trace:
            tracemalloc.start(1)

    def structures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"admitted": len(self.p.admitted)}
        for n, store in sorted(self.folder.stores.items()):
            props = {}
            for name in ROCKSDB_PROPERTIES:
                try:
                    props[name.split(".", 1)[1]] = store.db.property_int_value(name)
                except Exception:  # noqa: BLE001 (a closed store, or a property this build lacks)
                    props[name.split(".", 1)[1]] = None
            out[f"store{n}"] = {"cache": len(store._cache), "deleted": len(store._deleted), **props}  # noqa: SLF001
        consumer = self.p.app.consumer
        if consumer is not None:
            sizes = {}
            for name in ("_owed", "_rewinding", "_idle", "_first_read", "_runs", "_journal", "_dense",
                         "_unacked_messages", "_acked", "_acked_index", "_read_offset", "_committed_offset",
                         "_gap", "_buffered_partitions", "_active_partitions"):
                value = getattr(consumer, name, None)
                if value is None:
                    continue
                try:
                    sizes[name] = len(value)
                    if isinstance(value, dict):
                        inner = [len(v) for v in value.values() if hasattr(v, "__len__")]
                        if inner:
                            sizes[name + "_inner"] = sum(inner)
                except TypeError:
                    pass
            out["consumer"] = sizes
            feeds = getattr(self.p.app.transport, "feeds", {})
            out["feeds"] = {t: f._bundles.qsize() for t, f in feeds.items()}  # noqa: SLF001
        out["outbox_queue"] = len(self.p.outbox.producer)
        out["acks_inflight"] = len(self.folder.acks._inflight)  # noqa: SLF001
        return out

    def line(self) -> dict[str, Any]:
        types = Counter(type(o).__name__ for o in gc.get_objects())
        grew = {k: v - self._types.get(k, 0) for k, v in types.items()}
        top = sorted(grew.items(), key=lambda kv: -abs(kv[1]))[:20]
        self._types = types
        rec: dict[str, Any] = {"t": round(time.monotonic() - self._t0, 1), **rss_kib(), "malloc": mallinfo(),
                               "py_blocks": sys.getallocatedblocks(), "gc_objects": sum(types.values()),
                               "types_changed": top, **self.structures()}
        if self.trace:
            snap = tracemalloc.take_snapshot()
            if self._snapshot is not None:
                rec["trace_top"] = [str(s) for s in snap.compare_to(self._snapshot, "lineno")[:20]]
            rec["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
            self._snapshot = snap
        return rec

    def write(self) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(self.line(), default=str) + "\n")


def install(pipeline: Any, folder: Any) -> None:
    """Probe the worker's memory if `STOCKLEDGER_MEMPROBE` names a file (a debug aid; off by default)."""
    path = os.environ.get("STOCKLEDGER_MEMPROBE")
    if not path:
        return
    probe = MemProbe(path, pipeline, folder, trace=os.environ.get("STOCKLEDGER_MEMPROBE_TRACE") == "1")
    every = float(os.environ.get("STOCKLEDGER_MEMPROBE_EVERY", "60"))

    @pipeline.app.timer(every)
    async def memprobe() -> None:
        probe.write()
