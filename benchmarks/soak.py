"""Soak (issue 17): N minutes of the mixed load at a steady rate on few SKUs, no counts. Does anything grow?

One tenant, a catalog of `--skus` SKUs (default 10) without stock_quantity (so no count ever), then for
`--minutes` (default 30) at `--rate` events/s (default 1,000), stamped with the wall clock: 60% POS sales
(1-2 lines, paid), 30% inventory changes (+2, no count), 10% web orders (paid; refused when short of
stock). One worker folds them while they are published.

Per minute: p50 and p99 from publication (the produce() call) to the outcome on `sales.outcomes` (sales
and orders; record time = CreateTime, stamped by the worker's producer), the worker's RSS and the bytes
of its state folder (RocksDB) at the minute's end, and whether the worker kept up: the events published in
the minute against those it folded (`stockledger_events_folded_total` on its /metrics, read at the minute's
end) and the sales published against the sale outcomes whose record time falls in the minute. Then the last
minute against the first, and against the second: the first minute holds start-up and warm-up (caches and
RocksDB's memtables and block cache filling to their caps, streams/state.py), so last / second compares like
with like. With `--probe FILE` the worker appends what its memory holds to FILE every 30 s (streams/memprobe.py).

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 1000] [--skus 10] [--probe FILE]
"""

from __future__ import annotations

import argparse
import bisect
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from _common import end_offsets, fresh_run, load, percentile, read_records, say, start_worker, wait_caught_up  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from cli.testing import WorkerProcess  # noqa: E402
from stockledger.produce import prepare, producer_config, publish  # noqa: E402


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def folded_total(url: str) -> int | None:
    """The worker's `stockledger_events_folded_total` (None if /metrics does not answer)."""
    try:
        text = requests.get(url + "/metrics", timeout=10).text
    except requests.RequestException:
        return None
    m = re.search(r"^stockledger_events_folded_total ([0-9.e+]+)$", text, re.M)
    return int(float(m.group(1))) if m else None


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def event(tenant: str, i: int, rng: random.Random, skus: list[str]) -> tuple[str, dict]:
    now = int(time.time() * 1000)
    r = rng.random()
    if r < 0.3:
        return "inventory.changes", {"event_id": f"i{i}", "event_type": "inventory.change", "tenant_id": tenant,
                                     "timestamp": now, "data": {"sku": rng.choice(skus), "quantity_change": 2}}
    pos = r < 0.9
    lines = [{"sku": rng.choice(skus), "quantity": 1} for _ in range(rng.choice([1, 2]))]
    return "sales", {"event_id": f"s{i}", "event_type": "sale.completed" if pos else "order.placed",
                     "tenant_id": tenant, "timestamp": now,
                     "data": {"sale_id": f"s{i}", "channel": "POS" if pos else "WEB", "currency": "KES",
                              "payment_terms": "PAID", "line_items": lines}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=30, help="length of the soak (default 30)")
    ap.add_argument("--rate", type=int, default=1000, help="events/s (default 1000)")
    ap.add_argument("--skus", type=int, default=10, help="SKUs (default 10)")
    ap.add_argument("--web-port", type=int, default=16066, help="the worker's HTTP port: first free from this")
    ap.add_argument("--probe", help="a file the worker appends its memory figures to every 30 s (a debug aid)")
    args = ap.parse_args()
    run_id, settings, codec = fresh_run()
    tenant = f"soak-{run_id}"
    skus = [f"K{n:02d}" for n in range(args.skus)]
    worker = WorkerProcess(settings, f"bench-{run_id}", args.web_port)
    if args.probe:
        worker.env = {"STOCKLEDGER_MEMPROBE": str(Path(args.probe).resolve()), "STOCKLEDGER_MEMPROBE_EVERY": "30"}
    rng = random.Random(17)
    minutes: list[tuple[float, float, int, int]] = []  # (minute start, end, rss, state bytes)
    counts: list[tuple[int, int, int | None]] = []  # per minute: events and sales published, events folded
    sent: dict[str, float] = {}
    try:
        start_worker(worker, args.web_port)
        catalog = {"event_id": "soak-cat", "event_type": "catalog.update", "tenant_id": tenant,
                   "timestamp": int(time.time() * 1000) - 60_000,
                   "data": {"product_group_id": "K", "group_name": "K", "tax_rate": "16",
                            "variants": [{"sku": s, "display_name": s, "price": "5.00"} for s in skus]}}
        publish(settings, "catalog.updates", prepare("catalog.updates", "<bench>", [catalog]), codec=codec)
        wait_caught_up(settings, 300, "catalog")
        out_start = end_offsets(settings, "sales.outcomes")
        producer = Producer({**producer_config(settings), "linger.ms": 1})
        producer.list_topics("sales", timeout=30)
        state_dir = settings.home / "workers" / worker.worker_id
        say(f"soak: {args.minutes} min at {args.rate}/s on {args.skus} SKUs (app id {settings.app_id})")
        i = 0
        folded_before = folded_total(worker.url)
        t0 = time.perf_counter()
        for minute in range(args.minutes):
            m_start = time.time()
            i_start, sales_start = i, len(sent)
            end = t0 + (minute + 1) * 60
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                due = int((now - t0) * args.rate)
                while i < due:
                    topic, ev = event(tenant, i, rng, skus)
                    p = prepare(topic, "<bench>", [ev])[0]
                    if topic == "sales":
                        sent[ev["event_id"]] = time.time()
                    while True:
                        try:
                            producer.produce(topic, codec.encode(topic, p.record), p.key)
                            break
                        except BufferError:
                            producer.poll(0.01)
                    i += 1
                producer.poll(0)
                time.sleep(0.002)
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.proc.returncode}) in minute {minute + 1}; "
                                   f"log {worker.logfile}")
            minutes.append((m_start, time.time(), rss_bytes(worker.proc.pid), folder_bytes(state_dir)))
            folded_now = folded_total(worker.url)
            folded = None if folded_now is None or folded_before is None else folded_now - folded_before
            folded_before = folded_now
            counts.append((i - i_start, len(sent) - sales_start, folded))
            say(f"  minute {minute + 1}: {i} events sent; {folded} folded in the minute; worker RSS "
                f"{minutes[-1][2] / 2**20:.0f} MiB; {load()}")
        producer.flush(30)
        wait_caught_up(settings, 600, "soak")
        soak_load = load()
    finally:
        worker.stop()
    seen: dict[str, float] = {}
    for ts, rec in read_records(settings, codec, "sales.outcomes", tenant, out_start, timeout=600):
        if rec["kind"] == "SALE":
            seen[rec["id"]] = min(ts, seen.get(rec["id"], ts))
    outcome_times = sorted(seen.values())
    print(f"soak, {args.minutes} min at {args.rate:,} events/s (60% POS sales, 30% inventory changes, 10% orders) "
          f"on {args.skus} SKUs, no counts, one worker ({soak_load} at the end):")
    rows = []
    for n, (m_start, m_end, rss, state) in enumerate(minutes, start=1):
        lat = [seen[k] - t for k, t in sent.items() if m_start <= t < m_end and k in seen]
        p50 = percentile(lat, 0.5) * 1000 if lat else float("nan")
        p99 = percentile(lat, 0.99) * 1000 if lat else float("nan")
        rows.append((p50, p99, rss, state))
        print(f"  minute {n:>3}: sale -> outcome p50 {p50:>7,.0f} ms, p99 {p99:>7,.0f} ms ({len(lat)} sales); "
              f"worker RSS {rss / 2**20:>6,.1f} MiB; state {state / 2**20:>7,.1f} MiB")
        published, sales, folded = counts[n - 1]
        outcomes = bisect.bisect_left(outcome_times, m_end) - bisect.bisect_left(outcome_times, m_start)
        kept_up = folded is not None and folded >= 0.98 * published
        print(f"              kept up: {published:,} events published, {'?' if folded is None else f'{folded:,}'} "
              f"folded ({ratio(folded or 0, published):.2f}); {sales:,} sales published, {outcomes:,} sale outcomes "
              f"({ratio(outcomes, sales):.2f}) [{'yes' if kept_up else 'NO: a backlog grew'}]")
    missing = sum(1 for k in sent if k not in seen)
    first, last = rows[0], rows[-1]
    print(f"  last minute / first: p50 {last[0] / first[0]:.2f}, p99 {last[1] / first[1]:.2f}, "
          f"RSS {last[2] / first[2]:.2f} [aim <= 1.1: {'met' if last[2] / first[2] <= 1.1 else 'MISSED'}], "
          f"state {last[3] / first[3]:.2f}; {missing} sales without an outcome")
    if len(rows) >= 3:  # the first minute holds start-up and warm-up: the second against the last is like with like
        second = rows[1]
        print(f"  worker RSS at minute 2: {second[2] / 2**20:,.1f} MiB; last minute / second: "
              f"RSS {last[2] / second[2]:.2f} [aim <= 1.1: {'met' if last[2] / second[2] <= 1.1 else 'MISSED'}], "
              f"p50 {last[0] / second[0]:.2f}, p99 {last[1] / second[1]:.2f}")
    behind = [n for n, (published, _, folded) in enumerate(counts, start=1)
              if folded is None or folded < 0.98 * published]
    print(f"  the worker kept up (folded >= 98% of what was published) in {len(counts) - len(behind)} of "
          f"{len(counts)} minutes" + (f"; not in minutes {behind}" if behind else ""))


if __name__ == "__main__":
    main()
