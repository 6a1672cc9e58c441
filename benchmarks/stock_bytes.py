"""Bytes of a hot SKU (issue 17, item 1): its stored values and what each sale writes, after 1k/10k/100k sales
with no count, chunked (the fold's default, FoldConfig.stock_chunk) and unchunked (every delta in the head: the
stock value before issue 17). The pure core only, no broker: the SKU's values as JSON, as the state stores them.

A sale writes its SKU's head (and, every STOCK_CHUNK sales, one closed chunk; a few deletions of dead chunks).
The store writes each changed key once per batch, with the value before it as an undo copy until the batch is
committed (streams/state.py), so a changelog record is up to about twice the value.

    .venv/bin/python benchmarks/stock_bytes.py [--sales 1000,10000,100000] [--gap-ms 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.core.fold import DAY_MS  # noqa: E402
from streams.core.stock import STOCK_CHUNK, Chunking, StockState, apply_delta  # noqa: E402

T0 = 1_767_225_600_000
H = 7 * DAY_MS


def size(value: object) -> int:
    return len(orjson.dumps(value))


def chunked(n: int, gap: int, k: int) -> dict[str, float]:
    chunks: dict[int, dict] = {}
    state = StockState("t1", "A")
    chunking = Chunking(k, chunks.get)
    written = heads = last = 0
    biggest = 0
    t = time.perf_counter()
    for i in range(n):
        r = apply_delta(state, -1, T0 + i * gap, f"e-{i:06d}", "LOC-1", "sale", horizon=H, chunking=chunking)
        state = r.state
        head = size(state.to_dict())
        heads = max(heads, head)
        last = head
        for c, chunk in r.chunks:
            if chunk is None:
                chunks.pop(c, None)
            else:
                chunks[c] = chunk
                last += size(chunk)
                biggest = max(biggest, size(chunk))
        written += last
    elapsed = time.perf_counter() - t
    stored = size(state.to_dict()) + sum(size(c) for c in chunks.values())
    return {"head": size(state.to_dict()), "max head": heads, "max chunk": biggest, "chunks": len(chunks),
            "stored": stored, "last": last, "written/sale": written / n, "us/sale": elapsed / n * 1e6}


def unchunked(n: int, gap: int) -> dict[str, float]:
    """The head after n sales in order, as the unchunked state keeps it (every delta within the horizon); a sale
    writes the whole head, so the n-th sale writes this many bytes, and the mean is that of the first and the
    n-th head (the head grows by one delta a sale until the horizon is full)."""
    return {**_unchunked_head(n, gap), "written/sale": (_unchunked_head(1, gap)["head"] + _unchunked_head(n, gap)[
        "head"]) / 2 if n <= H // gap + 1 else float("nan")}


def _unchunked_head(n: int, gap: int) -> dict[str, float]:
    kept = min(n, H // gap + 1)
    first = n - kept
    state = StockState("t1", "A", -n, deltas=tuple((T0 + i * gap, -1) for i in range(first, n)),
                       updated_at=T0 + (n - 1) * gap, last_event_id=f"e-{n - 1:06d}", location_id="LOC-1",
                       reason="SALE", base_ts=T0 + (first - 1) * gap if first else None, base_qty=-first)
    head = size(state.to_dict())
    return {"head": head, "max head": head, "max chunk": 0, "chunks": 0, "stored": head, "last": head}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sales", default="1000,10000,100000", help="after how many sales (comma separated)")
    ap.add_argument("--gap-ms", type=int, default=1000, help="event time between sales (1 s: 100k within 7 days)")
    ap.add_argument("-k", type=int, default=STOCK_CHUNK, help=f"chunk size (default {STOCK_CHUNK})")
    args = ap.parse_args()
    print(f"one SKU, sales {args.gap_ms} ms apart, no count, lateness horizon 7 days, chunk {args.k}:")
    print(f"  {'sales':>7}  {'mode':<9} {'head B':>9} {'max chunk B':>11} {'chunks':>6} {'stored B':>10} "
          f"{'B written by the last sale':>26} {'B written per sale (mean)':>25}")
    for n in (int(x) for x in args.sales.split(",")):
        before = unchunked(n, args.gap_ms)
        after = chunked(n, args.gap_ms, args.k)
        for mode, r in (("unchunked", before), ("chunked", after)):
            print(f"  {n:>7,}  {mode:<9} {r['head']:>9,} {r['max chunk']:>11,} {r['chunks']:>6,} {r['stored']:>10,} "
                  f"{r['last']:>26,} {r['written/sale']:>25,.0f}")
        print(f"  {'':>7}  chunked: largest head {after['max head']:,} B, "
              f"{after['us/sale']:.1f} us per sale in the core")


if __name__ == "__main__":
    main()
