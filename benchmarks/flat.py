"""Flat cost (issue 17): is a worker as fast after 30,000 sales of the same 20 SKUs as at their start?

One tenant, a catalog of 20 SKUs with one count each (stock_quantity), applied by a worker that is then
stopped; then N POS sales (default 30,000; one line of quantity 1, paid) on those 20 SKUs, no further
count, published while no worker runs, so they wait as a backlog; then the worker starts again. From the
outcomes' own timestamps (CreateTime, stamped by the worker's producer) in the order they were sent:
the rate of the first fifth and of the last fifth, and last / first (aim >= 0.9).

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30_000, help="POS sales (default 30000)")
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
    fifth = len(times) // 5
    first = fifth / (times[fifth - 1] - times[0])
    last = fifth / (times[-1] - times[-fifth])
    ratio = last / first
    print(f"flat cost, {args.n} POS sales on {args.skus} SKUs after one count, one worker "
          f"({accepted}/{args.n} accepted; {worker_load}):")
    print(f"  first fifth {first:>8,.0f} sales/s, last fifth {last:>8,.0f} sales/s, last/first {ratio:.2f}  "
          f"[aim >= {AIM_RATIO}: {'met' if ratio >= AIM_RATIO else 'MISSED'}]")
    tables = state_bytes(settings, tenant)
    total = sum(b for _, b in tables.values())
    print(f"  state of the tenant after the run: {total:,} bytes, {total / args.n:,.0f} bytes per sale; " +
          ", ".join(f"{t} {k:,} keys {b:,} B" for t, (k, b) in sorted(tables.items())))


if __name__ == "__main__":
    main()
