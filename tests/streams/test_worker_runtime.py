"""The worker's process settings (streams/worker.py): the cyclic collector's thresholds and glibc's arenas."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

from streams.worker import GC_THRESHOLDS, MALLOC_ARENAS, tune_gc


def test_tune_gc_sets_the_workers_thresholds_and_collection_still_frees_cycles():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS == (50_000, 20, 20)

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2  # a cycle is still found (here on demand)
    finally:
        gc.set_threshold(*before)


def test_limit_malloc_arenas_applies_unless_the_environment_says_otherwise():
    code = "from streams.worker import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    ours = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    theirs = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "4"},
                            capture_output=True, text=True, check=True)
    assert (ours.stdout.strip(), theirs.stdout.strip(), MALLOC_ARENAS) == ("True", "False", 2)


_FRAGMENT = """
import re
from pathlib import Path
from streams.worker import trim_heap

def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024

blocks = [bytearray(2000) for _ in range(50_000)]  # ~100 MB from the heap (below glibc's mmap threshold)
kept = blocks[::10]  # one block in ten stays: the freed ones lie between live blocks, not at the heap's top
del blocks
before = rss()
trimmed = trim_heap()
print(trimmed, (before - rss()) // 2**20, len(kept))
"""


def test_trim_heap_gives_the_free_pages_between_live_blocks_back():
    """glibc keeps freed memory resident when live blocks lie after it; malloc_trim(0), once a minute in a
    worker, releases those pages: here at least 50 of the ~90 MiB freed."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _FRAGMENT], env=env, capture_output=True, text=True, check=True)
    trimmed, released, kept = out.stdout.split()
    assert (trimmed, kept) == ("True", "5000") and int(released) >= 50, out.stdout
