"""Stock worker benchmark (issue 3), against the stack from `stockledger stack up`.

1. Throughput: N inventory.change events from the input topic to `stock.levels` through one worker,
   against a bare confluent-kafka consume -> fastavro decode -> encode -> produce loop over the
   same records in the same run (ratio).
2. Latency from an event's publication to its `stock.levels` record at a steady 1,000 events/s.
3. Restart time of a worker holding 100k SKUs killed with SIGKILL (warm: its RocksDB kept), and
   a cold restore from the changelog (state folder wiped) for comparison.

Each run uses its own consumer group and tables (a fresh app id), positioned at the end of the input
topic, so earlier data on the stack does not count.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (fresh_run, TOPIC, bare_loop, count_records, end_offsets, percentile,  # noqa: E402
                     publish_at_rate, say)
from stockledger.produce import prepare, publish  # noqa: E402
from stockledger.testing import WorkerProcess  # noqa: E402


def events(tenant: str, n: int, skus: int, start_ms: int) -> list[dict]:
    return [{"event_id": f"b{i}", "event_type": "inventory.change", "tenant_id": tenant, "timestamp": start_ms + i,
             "data": {"sku": f"S{i % skus:06d}", "quantity_change": 1 if i % 3 else -1}} for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="events for the throughput run")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--skus", type=int, default=100_000, help="SKUs held by the worker for the restart run")
    args = ap.parse_args()

    run_id, settings, codec = fresh_run()
    app_id = settings.app_id
    worker = WorkerProcess(settings, f"bench-{run_id}", 16066)
    say(f"starting worker (app id {app_id})")
    worker.start().wait_ready(180)
    time.sleep(3)

    # 1. throughput
    tenant = f"bench-{run_id}"
    levels_start = end_offsets(settings, "stock.levels")
    input_start = end_offsets(settings, TOPIC)
    batch = events(tenant, args.n, 5000, 1_700_000_000_000)
    prepared = prepare(TOPIC, "<bench>", batch)
    say(f"publishing {args.n} events")
    t0 = time.time()
    publish(settings, TOPIC, prepared, codec=codec)
    got, last = count_records(settings, codec, "stock.levels", tenant, args.n, levels_start, 600)
    worker_s = last - t0
    say("bare loop over the same records")
    bare_s = bare_loop(settings, codec, TOPIC, input_start, args.n)
    print(f"throughput: worker {got / worker_s:,.0f} events/s ({got} in {worker_s:.1f}s, publish included), "
          f"bare loop {args.n / bare_s:,.0f} events/s ({bare_s:.1f}s); ratio {bare_s / worker_s:.2f} (aim >= 0.5)")

    # 2. latency at a steady rate
    tenant2 = f"{tenant}-lat"
    levels_start = end_offsets(settings, "stock.levels")
    total = args.rate * args.seconds
    say(f"latency: {total} events at {args.rate}/s")
    lat_events = events(tenant2, total, 2000, 1_700_100_000_000)
    encoded = [(e["event_id"], p.key, codec.encode(TOPIC, p.record))
               for e, p in zip(lat_events, prepare(TOPIC, "<bench>", lat_events))]
    sent = publish_at_rate(settings, TOPIC, encoded, args.rate)
    arrivals: dict[str, int] = {}
    count_records(settings, codec, "stock.levels", tenant2, total, levels_start, 120, arrivals)
    lat = [arrivals[k] / 1000 - sent[k] for k in sent if k in arrivals]
    print(f"latency at {args.rate} events/s over {args.seconds}s: p50 {percentile(lat, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(lat, 0.99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms ({len(lat)}/{total} measured)")

    # 3. restart with many SKUs
    tenant3 = f"{tenant}-skus"
    levels_start = end_offsets(settings, "stock.levels")
    say(f"loading {args.skus} SKUs")
    many = [{"event_id": f"m{i}", "event_type": "inventory.change", "tenant_id": tenant3,
             "timestamp": 1_700_200_000_000 + i, "data": {"sku": f"M{i:06d}", "new_quantity": i % 100}}
            for i in range(args.skus)]
    publish(settings, TOPIC, prepare(TOPIC, "<bench>", many), codec=codec)
    count_records(settings, codec, "stock.levels", tenant3, args.skus, levels_start, 900)
    time.sleep(3)  # a commit interval, so the kill loses at most what a crash loses
    worker.kill()
    t = time.monotonic()
    worker.start().wait_ready(600)
    warm = time.monotonic() - t
    probe = worker.get(f"/stock/M{args.skus - 1:06d}", tenant=tenant3).json()["on_hand"]
    worker.kill()
    shutil.rmtree(settings.home / "workers" / worker.worker_id, ignore_errors=True)
    t = time.monotonic()
    worker.start().wait_ready(900)
    cold = time.monotonic() - t
    probe2 = worker.get(f"/stock/M{args.skus - 1:06d}", tenant=tenant3).json()["on_hand"]
    worker.stop()
    assert probe == probe2 == (args.skus - 1) % 100
    print(f"restart after SIGKILL holding {args.skus} SKUs: {warm:.1f}s with its RocksDB (tail restore), "
          f"{cold:.1f}s from the changelog alone (state folder wiped)")


if __name__ == "__main__":
    main()
