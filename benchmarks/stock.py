"""Stock worker benchmark (issues 3 and 10), against the stack from `stockledger stack up`.

1. Throughput over the same N inventory.change records (5,000 SKUs, one tenant), three ways:
   - our worker: the records are published first, while no worker runs (the run's group is
     committed at the end of the inputs before publishing, so the records wait as a backlog); then
     one worker starts. Its rate is N / (time of its last stock.levels record - time of its first),
     from the records' own timestamps (CreateTime, stamped by the worker's producer at send), so
     neither publication nor the worker's start-up and recovery count, and the records are read only
     after the worker has caught up (no reader competes with it for the two cores);
   - the Faust ceiling: an empty faust-streaming agent (`async for event in stream.events()`, raw
     bytes, create_app's broker settings, memory store, its own process and group committed at the
     records' start), from its first event to its N-th (start-up excluded);
   - the bare loop: confluent-kafka consume -> fastavro decode -> fold -> encode -> produce, from the
     first record received to the last output flushed;
   - the peer: the same stock fold written in Quix Streams (`_quix_stock.py`: RocksDB state with its
     changelog, per-event dedup, exactly-once), installed in a side venv this script creates under
     .cache/bench-venv (pinned in `_common.QUIX_PINS`; not a runtime dependency), timed inside its
     process from its first record to its N-th folded (the final commit shown apart), since it stamps
     its outputs with the inputs' timestamps. `--no-quix` skips it.
   The baselines read the backlog before the worker starts, so none of them share the CPU.
   Printed: the rates, worker/ceiling, worker/bare and worker/Quix Streams, and the aims.
2. Latency at a steady rate (default 1,000 events/s for 15 s, 2,000 SKUs): from an event's
   publication (the produce() call) to its effect on `stock.levels` (the first record of its SKU
   reflecting it or a later event of that SKU; record time as above). p50, p99, max; aim p99 <= 250 ms.
3. Optional (--restart-skus N, 0 skips): restart of a worker holding N SKUs, SIGKILLed (warm: its
   RocksDB kept), and a cold restore from the changelog (state folder wiped). Issue 3 used 100,000.

Each run uses its own app id (consumer group, tables), positioned at the end of the input topics, so
earlier data on the stack does not count. With the defaults a run takes about 2 minutes on a worker
that meets the aims.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    TOPIC,
    bare_loop,
    end_offsets,
    faust_ceiling,
    fresh_run,
    latency_line,
    load,
    percentile,
    publish_at_rate,
    quix_peer,
    read_records,
    say,
    start_worker,
    verdict,
    visible_times,
    wait_caught_up,
)

from cli.testing import WorkerProcess  # noqa: E402
from stockledger.produce import prepare, publish  # noqa: E402

AIM_RATE, FLOOR_RATE, AIM_P99_MS = 10_000, 5_000, 250


def events(tenant: str, n: int, skus: int, start_ms: int, prefix: str = "b") -> list[dict]:
    return [{"event_id": f"{prefix}{i}", "event_type": "inventory.change", "tenant_id": tenant,
             "timestamp": start_ms + i, "data": {"sku": f"S{i % skus:06d}", "quantity_change": 1 if i % 3 else -1}}
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="events for the throughput run (default 50000)")
    ap.add_argument("--rate", type=int, default=1000, help="events/s for the latency run (default 1000)")
    ap.add_argument("--seconds", type=int, default=15, help="length of the latency run (default 15)")
    ap.add_argument("--no-quix", action="store_true", help="skip the Quix Streams peer")
    ap.add_argument("--throughput-only", action="store_true", help="skip the latency run")
    ap.add_argument("--restart-skus", type=int, default=0,
                    help="SKUs held by the worker for the restart run; 0 (default) skips it")
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


def run(args: argparse.Namespace, settings, codec, tenant: str, worker: WorkerProcess) -> None:  # noqa: ANN001
    # 1. throughput: the backlog first, then the baselines over it, then the worker
    levels_start = end_offsets(settings, "stock.levels")
    input_start = end_offsets(settings, TOPIC)
    batch = events(tenant, args.n, 5000, 1_700_000_000_000)
    say(f"publishing {args.n} events (no worker running yet)")
    t = time.monotonic()
    publish(settings, TOPIC, prepare(TOPIC, "<bench>", batch), codec=codec)
    say(f"  published in {time.monotonic() - t:.1f}s")
    say("bare loop over the same records")
    bare_s = bare_loop(settings, codec, TOPIC, input_start, args.n)
    bare_load = load()
    say("empty Faust agent over the same records")
    ceiling_s = faust_ceiling(settings, TOPIC, input_start, args.n, timeout=max(120, args.n / 500))
    ceiling_load = load()
    if not args.no_quix:
        say("the same fold in Quix Streams over the same records")
        quix_span, quix_commit, quix_n = quix_peer(settings, codec, TOPIC, input_start, args.n, tenant,
                                      timeout=max(600, args.n / 50))
        quix_load = load()
    say(f"starting the worker (app id {settings.app_id}) on the backlog")
    start_worker(worker, args.web_port)
    wait_caught_up(settings, max(300, args.n / 100), "throughput backlog")
    worker_load = load()
    outputs = read_records(settings, codec, "stock.levels", tenant, levels_start)
    reflected = {rec["last_event_id"] for _, rec in outputs}
    finals = {e["event_id"] for e in batch[-5000:]}  # each SKU's last event
    missing = len(finals - reflected)
    times = [ts for ts, _ in outputs]
    span = max(times) - min(times) if times else float("nan")
    worker_rate = args.n / span if times else 0.0
    ceiling_rate, bare_rate = args.n / ceiling_s, args.n / bare_s
    print(f"stock throughput, {args.n} inventory.change events, 5,000 SKUs, one tenant, one worker:")
    print(f"  worker       {worker_rate:>9,.0f} events/s  ({len(outputs)} stock.levels records, first to last "
          f"{span:.2f}s{f'; {missing} SKUs missing their last event' if missing else ''}; {worker_load})  "
          f"{verdict(worker_rate, AIM_RATE, FLOOR_RATE, unit=' events/s')}")
    print(f"  Faust ceiling {ceiling_rate:>8,.0f} events/s  (empty agent, first to last event {ceiling_s:.2f}s; "
          f"{ceiling_load})")
    print(f"  bare loop    {bare_rate:>9,.0f} events/s  (consume-decode-fold-encode-produce, {bare_s:.2f}s; "
          f"{bare_load})")
    ratios = f"  ratios: worker/ceiling {worker_rate / ceiling_rate:.3f}, worker/bare {worker_rate / bare_rate:.3f}"
    if not args.no_quix:
        quix_rate = args.n / quix_span
        print(f"  Quix Streams {quix_rate:>9,.0f} events/s  (same fold, RocksDB + changelog, exactly-once; "
              f"{quix_n} records out, first to N-th folded {quix_span:.2f}s, to its final commit "
              f"{quix_commit:.2f}s; {quix_load})")
        ratios += f", worker/Quix Streams {worker_rate / quix_rate:.3f}  " + verdict(
            worker_rate / quix_rate, 1.0, what="worker/Quix Streams")
    print(ratios)
    if args.throughput_only:
        return

    # 2. latency at a steady rate
    tenant2 = f"{tenant}-lat"
    levels_start = end_offsets(settings, "stock.levels")
    total = args.rate * args.seconds
    say(f"latency: {total} events at {args.rate}/s")
    lat_events = events(tenant2, total, 2000, 1_700_100_000_000, "L")
    prepared = prepare(TOPIC, "<bench>", lat_events)
    encoded = [(e["event_id"], p.key, codec.encode(TOPIC, p.record)) for e, p in zip(lat_events, prepared, strict=True)]
    sent = publish_at_rate(settings, TOPIC, encoded, args.rate)
    wait_caught_up(settings, max(120, total / 50), "latency run")
    lat_load = load()
    outputs = read_records(settings, codec, "stock.levels", tenant2, levels_start)
    seen = visible_times([(e["event_id"], e["data"]["sku"]) for e in lat_events],
                         [(rec["sku"], rec["last_event_id"], ts) for ts, rec in outputs])
    lat = [seen[k] - sent[k] for k in sent if k in seen]
    p99 = percentile(lat, 0.99) * 1000 if lat else float("inf")
    print(f"stock latency, publication -> stock.levels at {args.rate:,} events/s for {args.seconds}s: "
          f"{latency_line(lat, total)}; {lat_load}  "
          f"{verdict(p99, AIM_P99_MS, higher_is_better=False, what='p99', unit=' ms')}")

    # 3. restart with many SKUs (optional)
    if args.restart_skus <= 0:
        return
    skus = args.restart_skus
    tenant3 = f"{tenant}-skus"
    say(f"loading {skus} SKUs")
    many = [{"event_id": f"m{i}", "event_type": "inventory.change", "tenant_id": tenant3,
             "timestamp": 1_700_200_000_000 + i, "data": {"sku": f"M{i:06d}", "new_quantity": i % 100}}
            for i in range(skus)]
    publish(settings, TOPIC, prepare(TOPIC, "<bench>", many), codec=codec)
    wait_caught_up(settings, max(300, skus / 50), "loading SKUs")
    time.sleep(3)  # a commit interval, so the kill loses at most what a crash loses
    worker.kill()
    t = time.monotonic()
    start_worker(worker, args.web_port, 600)
    warm = time.monotonic() - t
    probe = worker.get(f"/stock/M{skus - 1:06d}", tenant=tenant3).json()["on_hand"]
    worker.kill()
    shutil.rmtree(settings.home / "workers" / worker.worker_id, ignore_errors=True)
    t = time.monotonic()
    start_worker(worker, args.web_port, 900)
    cold = time.monotonic() - t
    probe2 = worker.get(f"/stock/M{skus - 1:06d}", tenant=tenant3).json()["on_hand"]
    assert probe == probe2 == (skus - 1) % 100, (probe, probe2)
    print(f"stock restart after SIGKILL holding {skus:,} SKUs: {warm:.1f}s with its RocksDB (tail restore), "
          f"{cold:.1f}s from the changelog alone (state folder wiped)")


if __name__ == "__main__":
    main()
