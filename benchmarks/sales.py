"""Sales benchmark (issue 4), against the stack from `stockledger stack up`.

1. Sales per second end to end (3 lines on average, half POS sales, half web orders) from `sales`
   to the last ledger document (the journal entry), with one worker and with two, against the bare
   consume -> decode -> encode -> produce loop over the same records in the same run (ratio).
2. Latency from a sale's publication to its `sales.outcomes` record at a steady 200 sales/s.

Each run uses a fresh app id (its own group and tables) positioned at the end of the inputs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (fresh_run, bare_loop, count_records, end_offsets, percentile,  # noqa: E402
                     publish_at_rate, say)
from stockledger.config import Settings  # noqa: E402
from stockledger.produce import prepare, publish  # noqa: E402
from stockledger.topics import internal_topic  # noqa: E402
from stockledger.testing import WorkerProcess, committed_lag, wait_for  # noqa: E402
from streams.codec import Codec  # noqa: E402

SKUS = [f"B{n:03d}" for n in range(200)]


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


def run_throughput(settings: Settings, codec: Codec, tenant: str, n: int, prefix: str, seed: int) -> float:
    """Seconds from the start of publishing to the last journal entry of `n` sales."""
    start = end_offsets(settings, "ledger.journal")
    batch = prepare("sales", "<bench>", sales(tenant, n, prefix, seed))
    t0 = time.time()
    publish(settings, "sales", batch, codec=codec)
    got, last = count_records(settings, codec, "ledger.journal", tenant, n, start, 1200)
    assert got == n, f"{got}/{n} journal entries"
    return last - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=4000, help="sales per throughput run")
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    run_id, settings, codec = fresh_run()
    app_id = settings.app_id
    tenant = f"bench-{run_id}"
    w1 = WorkerProcess(settings, f"bench-{run_id}-1", 16066).start().wait_ready(180)
    w2 = WorkerProcess(settings, f"bench-{run_id}-2", 16067)
    try:
        for topic, events in setup_events(tenant).items():
            publish(settings, topic, prepare(topic, "<bench>", events), codec=codec)
        inputs = ["catalog.updates", "customers", internal_topic(app_id, "catalog-items")]
        wait_for(lambda: committed_lag(settings, app_id, inputs) == 0, 300, "the catalog to be applied")

        sales_start = end_offsets(settings, "sales")
        say(f"one worker: {args.n} sales")
        one = run_throughput(settings, codec, tenant, args.n, "A", 1)
        say("bare loop over the same sales records")
        bare = bare_loop(settings, codec, "sales", sales_start, args.n)
        say(f"two workers: {args.n} sales")
        w2.start().wait_ready(180)
        time.sleep(5)  # the rebalance settles
        two = run_throughput(settings, codec, tenant, args.n, "B", 2)
        print(f"sales end to end (sales -> journal entry), {args.n} sales, ~3 lines, half POS half orders:")
        print(f"  one worker  {args.n / one:,.0f} sales/s ({one:.1f}s)")
        print(f"  two workers {args.n / two:,.0f} sales/s ({two:.1f}s)")
        print(f"  bare consume-decode-encode-produce loop {args.n / bare:,.0f} records/s ({bare:.2f}s); "
              f"ratio one worker {bare / one:.3f}, two workers {bare / two:.3f}")

        say(f"latency: {args.rate * args.seconds} sales at {args.rate}/s")
        lat_sales = sales(tenant, args.rate * args.seconds, "L", 3)
        encoded = [(e["data"]["sale_id"], p.key, codec.encode("sales", p.record))
                   for e, p in zip(lat_sales, prepare("sales", "<bench>", lat_sales))]
        out_start = end_offsets(settings, "sales.outcomes")
        sent = publish_at_rate(settings, "sales", encoded, args.rate)
        arrivals: dict[str, int] = {}
        count_records(settings, codec, "sales.outcomes", tenant, len(encoded), out_start, 600, arrivals, "id")
        lat = [arrivals[k] / 1000 - sent[k] for k in sent if k in arrivals]
        print(f"latency publish -> sales.outcomes at {args.rate} sales/s (two workers): "
              f"p50 {percentile(lat, 0.5) * 1000:.0f} ms, p99 {percentile(lat, 0.99) * 1000:.0f} ms "
              f"({len(lat)}/{len(encoded)} measured)")
    finally:
        w2.stop()
        w1.stop()


if __name__ == "__main__":
    main()
