"""Sales benchmark (issues 4 and 10), against the stack from `stockledger stack up`.

The sales: one tenant, 200 SKUs with ample stock, 2-4 lines each, half POS sales (paid), half web
orders (half of those on account for one customer), as in issue 4.

1. Throughput over the same N sales records, three ways:
   - our worker: the catalog and the customer are applied first by a worker that is then stopped;
     the N sales are published while no worker runs, so they wait as a backlog; then the worker
     starts again. Its rate is N / (time of its last `sales.outcomes` record - time of its first),
     from the records' own timestamps (CreateTime, stamped by the worker's producer at send), so
     neither publication nor start-up counts, and the outputs are read only after the worker has
     caught up. Outcomes are counted by kind (ACCEPTED, REFUSED...), and the journal entries too;
   - the Faust ceiling: an empty faust-streaming agent (`async for event in stream.events()`, raw
     bytes, create_app's broker settings, memory store, its own process and group committed at the
     records' start), from its first event to its N-th (start-up excluded);
   - the bare loop: confluent-kafka consume -> fastavro decode -> fold -> encode -> produce over the
     sales records, from the first record received to the last output flushed.
   Both baselines read the backlog before the worker starts, so the three never share the CPU.
   Printed: the three rates, worker/ceiling and worker/bare, and the aims.
2. Latency at a steady rate (default 500 sales/s for 20 s) from a sale's publication (the produce()
   call) to its outcome on `sales.outcomes` (record time as above): p50, p99, max; aim p99 <= 250 ms.

Each run uses a fresh app id (its own group and tables) positioned at the end of the inputs. With the
defaults a run takes about 2 minutes on a worker that meets the aims.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    bare_loop,
    end_offsets,
    faust_ceiling,
    fresh_run,
    latency_line,
    load,
    percentile,
    publish_at_rate,
    read_records,
    say,
    start_worker,
    verdict,
    wait_caught_up,
)

from cli.testing import WorkerProcess  # noqa: E402
from stockledger.produce import prepare, publish  # noqa: E402

SKUS = [f"B{n:03d}" for n in range(200)]
AIM_RATE, FLOOR_RATE, AIM_P99_MS = 3_000, 1_000, 250


def setup_events(tenant: str) -> dict[str, list[dict]]:
    variants = [{"sku": s, "display_name": s, "price": f"{10 + n}.50", "stock_quantity": 10_000_000}
                for n, s in enumerate(SKUS)]
    return {
        "catalog.updates": [{"event_id": "bench-cat", "event_type": "catalog.update", "tenant_id": tenant,
                             "timestamp": 1_700_000_000_000, "data": {"product_group_id": "BG", "group_name": "BG",
                                                                      "tax_rate": "16", "variants": variants}}],
        "customers": [{"event_id": "bench-cust", "event_type": "customer.credit", "tenant_id": tenant,
                       "timestamp": 1_700_000_000_000,
                       "data": {"customer_ref": "BC", "credit_limit": "0", "on_hold": False}}],
    }


def sales(tenant: str, n: int, prefix: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pos = i % 2 == 0
        lines = [{"sku": rng.choice(SKUS), "quantity": rng.randint(1, 3)} for _ in range(rng.choice([2, 3, 4]))]
        data = {"sale_id": f"{prefix}{i}", "channel": "POS" if pos else "WEB", "currency": "KES",
                "payment_terms": "PAID" if pos or i % 4 == 1 else "ON_ACCOUNT", "line_items": lines}
        if data["payment_terms"] == "ON_ACCOUNT":
            data["customer_ref"] = "BC"
        out.append({"event_id": f"{prefix}{i}", "event_type": "sale.completed" if pos else "order.placed",
                    "tenant_id": tenant, "timestamp": 1_700_000_100_000 + i, "data": data})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="sales for the throughput run (default 20000)")
    ap.add_argument("--rate", type=int, default=500, help="sales/s for the latency run (default 500)")
    ap.add_argument("--seconds", type=int, default=20, help="length of the latency run (default 20)")
    ap.add_argument("--web-port", type=int, default=16066,
                    help="the worker's HTTP port: the first free one from this (default 16066)")
    args = ap.parse_args()
    run_id, settings, codec = fresh_run()
    tenant = f"bench-{run_id}"
    worker = WorkerProcess(settings, f"bench-{run_id}", args.web_port)
    try:
        run(args, settings, codec, tenant, worker)
    finally:
        worker.stop()


def by_outcome(outcomes: list[tuple[float, dict]]) -> str:
    counts: dict[str, int] = {}
    for _, rec in outcomes:
        counts[str(rec["outcome"])] = counts.get(str(rec["outcome"]), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def run(args: argparse.Namespace, settings, codec, tenant: str, worker: WorkerProcess) -> None:  # noqa: ANN001
    say(f"applying the catalog and the customer (app id {settings.app_id})")
    start_worker(worker, args.web_port)
    for topic, events in setup_events(tenant).items():
        publish(settings, topic, prepare(topic, "<bench>", events), codec=codec)
    wait_caught_up(settings, 300, "catalog and customer")
    worker.stop()

    # 1. throughput: the backlog first, then the baselines over it, then the worker
    out_start = end_offsets(settings, "sales.outcomes")
    journal_start = end_offsets(settings, "ledger.journal")
    sales_start = end_offsets(settings, "sales")
    batch = sales(tenant, args.n, "A", 1)
    say(f"publishing {args.n} sales (no worker running)")
    t = time.monotonic()
    publish(settings, "sales", prepare("sales", "<bench>", batch), codec=codec)
    say(f"  published in {time.monotonic() - t:.1f}s")
    say("bare loop over the same sales records")
    bare_s = bare_loop(settings, codec, "sales", sales_start, args.n)
    bare_load = load()
    say("empty Faust agent over the same sales records")
    ceiling_s = faust_ceiling(settings, "sales", sales_start, args.n, timeout=max(120, args.n / 500))
    ceiling_load = load()
    say("starting the worker on the backlog")
    start_worker(worker, args.web_port)
    wait_caught_up(settings, max(300, args.n / 20), "throughput backlog")
    worker_load = load()
    outcomes = [o for o in read_records(settings, codec, "sales.outcomes", tenant, out_start)
                if o[1]["kind"] == "SALE"]
    journal = read_records(settings, codec, "ledger.journal", tenant, journal_start)
    decided = len({rec["id"] for _, rec in outcomes})
    times = [ts for ts, _ in outcomes]
    span = max(times) - min(times) if times else float("nan")
    worker_rate = args.n / span if times else 0.0
    books = (f"last journal entry {max(ts for ts, _ in journal) - min(times):.2f}s after the first outcome, "
             f"{len(journal)} entries" if journal and times else "no journal entry")
    ceiling_rate, bare_rate = args.n / ceiling_s, args.n / bare_s
    print(f"sales throughput, {args.n} sales (2-4 lines, half POS, half web orders), one tenant, one worker:")
    print(f"  worker        {worker_rate:>8,.0f} sales/s  (first to last outcome {span:.2f}s; {decided}/{args.n} "
          f"sales decided: {by_outcome(outcomes)}; {books}; {worker_load})  "
          f"{verdict(worker_rate, AIM_RATE, FLOOR_RATE, unit=' sales/s')}")
    print(f"  Faust ceiling {ceiling_rate:>8,.0f} sales/s  (empty agent, first to last event {ceiling_s:.2f}s; "
          f"{ceiling_load})")
    print(f"  bare loop     {bare_rate:>8,.0f} sales/s  (consume-decode-fold-encode-produce, {bare_s:.2f}s; "
          f"{bare_load})")
    print(f"  ratios: worker/ceiling {worker_rate / ceiling_rate:.3f}, worker/bare {worker_rate / bare_rate:.3f}")

    # 2. latency at a steady rate
    total = args.rate * args.seconds
    say(f"latency: {total} sales at {args.rate}/s")
    lat_sales = sales(tenant, total, "L", 3)
    encoded = [(e["data"]["sale_id"], p.key, codec.encode("sales", p.record))
               for e, p in zip(lat_sales, prepare("sales", "<bench>", lat_sales), strict=True)]
    out_start = end_offsets(settings, "sales.outcomes")
    sent = publish_at_rate(settings, "sales", encoded, args.rate)
    wait_caught_up(settings, max(300, total / 20), "latency run")
    lat_load = load()
    seen: dict[str, float] = {}
    outcomes = read_records(settings, codec, "sales.outcomes", tenant, out_start)
    for ts, rec in outcomes:
        if rec["kind"] == "SALE":
            seen[rec["id"]] = min(ts, seen.get(rec["id"], ts))
    lat = [seen[k] - sent[k] for k in sent if k in seen]
    p99 = percentile(lat, 0.99) * 1000 if lat else float("inf")
    print(f"sales latency, publication -> sales.outcomes at {args.rate:,} sales/s for {args.seconds}s: "
          f"{latency_line(lat, total)}; {lat_load}  "
          f"{verdict(p99, AIM_P99_MS, higher_is_better=False, what='p99', unit=' ms')}")


if __name__ == "__main__":
    main()
