"""Flat cost (issue 17): is a worker as fast after 30,000 sales of the same 20 SKUs as at their start?

One tenant, a catalog of 20 SKUs with one count each (stock_quantity), applied by a worker that is then
stopped; then N POS sales (default 30,000; one line of quantity 1, paid) on those 20 SKUs, no further
count, published while no worker runs, so they wait as a backlog; then the worker starts again. From the
outcomes' own timestamps (CreateTime, stamped by the worker's producer): the rate of the first fifth
and of the last fifth of the sales, and last / first (aim >= 0.9). A fold step sends its outcomes together
at its end, so the outcomes come in clusters, one per step: a step's rate is its outcomes over the time
since the previous step's end, and a fifth's rate is that of the steps ending in it (the first step,
with no step before it, is left out). Give enough sales for several steps in a fifth (a step folds up to
a few thousand).

Then the bytes the run's state holds: the newest value of every key of its state changelog (what a
compacted changelog keeps, and what the worker's RocksDB holds), per table, and per sale.

    .venv/bin/python benchmarks/flat.py [-n 30000] [--skus 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import end_offsets, fresh_run, load, read_records, say, start_worker, wait_caught_up  # noqa: E402

from cli.testing import WorkerProcess, read_topic  # noqa: E402
from stockledger.produce import prepare, publish  # noqa: E402
from stockledger.topics import state_topic  # noqa: E402

AIM_RATIO = 0.9


def setup(tenant: str, skus: list[str]) -> list[dict]:
    variants = [{"sku": s, "display_name": s, "price": "10.00", "stock_quantity": 10_000_000} for s in skus]
    return [{"event_id": "flat-cat", "event_type": "catalog.update", "tenant_id": tenant,
             "timestamp": 1_700_000_000_000, "data": {"product_group_id": "F", "group_name": "F", "tax_rate": "16",
                                                      "variants": variants}}]


def sales(tenant: str, n: int, skus: list[str]) -> list[dict]:
    return [{"event_id": f"F{i}", "event_type": "sale.completed", "tenant_id": tenant,
             "timestamp": 1_700_000_100_000 + i,
             "data": {"sale_id": f"F{i}", "channel": "POS", "currency": "KES", "payment_terms": "PAID",
                      "line_items": [{"sku": skus[i % len(skus)], "quantity": 1}]}} for i in range(n)]


def state_bytes(settings, tenant: str) -> dict[str, tuple[int, int]]:  # noqa: ANN001
    """table -> (keys, bytes of their newest values) of `tenant` in the run's state changelog."""
    newest: dict[bytes, int] = {}
    mark = f"\x1f{tenant}:".encode()
    for msg in read_topic(settings, state_topic(settings.app_id)):
        key = msg.key()
        if mark in key:
            value = msg.value()
            if value is None:
                newest.pop(key, None)
            else:
                newest[key] = len(key) + len(value)
    tables: dict[str, tuple[int, int]] = {}
    for key, size in newest.items():
        table = key.split(b"\x1f", 1)[0].decode()
        keys, total = tables.get(table, (0, 0))
        tables[table] = (keys + 1, total + size)
    return tables


STEP_GAP = 0.05  # seconds: outcomes closer than this to the one before are of the same fold step


def fifth_rates(times: list[float]) -> tuple[float, float, int]:
    """The rates of the first and last fifths of the outcomes (sorted times), step by step (see the module)."""
    steps: list[list[float]] = []  # [end, outcomes]
    for ts in times:
        if steps and ts - steps[-1][0] <= STEP_GAP:
            steps[-1][0], steps[-1][1] = ts, steps[-1][1] + 1
        else:
            steps.append([ts, 1])
    if len(steps) < 6:
        raise SystemExit(f"only {len(steps)} fold steps: give more sales (-n) for a rate per fifth")
    fifth, done = len(times) / 5, 0.0
    firsts, lasts = [0.0, 0.0], [0.0, 0.0]  # outcomes, seconds
    for before, (end, count) in zip(steps, steps[1:], strict=False):
        done += count
        into = firsts if done <= fifth or not firsts[0] else lasts if done > 4 * fifth else None
        if into is not None:
            into[0] += count
            into[1] += end - before[0]
    return firsts[0] / firsts[1], lasts[0] / lasts[1], len(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="POS sales (default 100000: several fold steps a fifth)")
    ap.add_argument("--skus", type=int, default=20, help="SKUs they sell (default 20)")
    ap.add_argument("--web-port", type=int, default=16066, help="the worker's HTTP port: first free from this")
    args = ap.parse_args()
    run_id, settings, codec = fresh_run()
    tenant = f"flat-{run_id}"
    worker = WorkerProcess(settings, f"bench-{run_id}", args.web_port)
    skus = [f"F{n:02d}" for n in range(args.skus)]
    try:
        say(f"applying the catalog (app id {settings.app_id})")
        start_worker(worker, args.web_port)
        publish(settings, "catalog.updates", prepare("catalog.updates", "<bench>", setup(tenant, skus)), codec=codec)
        wait_caught_up(settings, 300, "catalog")
        worker.stop()
        out_start = end_offsets(settings, "sales.outcomes")
        say(f"publishing {args.n} sales (no worker running)")
        publish(settings, "sales", prepare("sales", "<bench>", sales(tenant, args.n, skus)), codec=codec)
        say("starting the worker on the backlog")
        t = time.monotonic()
        start_worker(worker, args.web_port)
        wait_caught_up(settings, max(600, args.n / 10), "sales backlog")
        say(f"  caught up {time.monotonic() - t:.0f}s after its start")
        worker_load = load()
    finally:
        worker.stop()
    outcomes = [(ts, rec) for ts, rec in read_records(settings, codec, "sales.outcomes", tenant, out_start)
                if rec["kind"] == "SALE"]
    times = sorted(ts for ts, _ in outcomes)
    accepted = sum(1 for _, rec in outcomes if rec["outcome"] == "ACCEPTED")
    first, last, steps = fifth_rates(times)
    ratio = last / first
    print(f"flat cost, {args.n} POS sales on {args.skus} SKUs after one count, one worker "
          f"({accepted}/{args.n} accepted; {worker_load}):")
    print(f"  first fifth {first:>8,.0f} sales/s, last fifth {last:>8,.0f} sales/s, last/first {ratio:.2f} "
          f"({steps} fold steps)  "
          f"[aim >= {AIM_RATIO}: {'met' if ratio >= AIM_RATIO else 'MISSED'}]")
    tables = state_bytes(settings, tenant)
    total = sum(b for _, b in tables.values())
    print(f"  state of the tenant after the run: {total:,} bytes, {total / args.n:,.0f} bytes per sale; " +
          ", ".join(f"{t} {k:,} keys {b:,} B" for t, (k, b) in sorted(tables.items())))


if __name__ == "__main__":
    main()
