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
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from stockledger.config import Settings  # noqa: E402
from stockledger.produce import prepare, producer_config, publish  # noqa: E402
from stockledger.testing import WorkerProcess  # noqa: E402
from stockledger.topics import ensure_topics  # noqa: E402
from streams.codec import Codec  # noqa: E402

TOPIC = "inventory.changes"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def events(tenant: str, n: int, skus: int, start_ms: int) -> list[dict]:
    return [{"event_id": f"b{i}", "event_type": "inventory.change", "tenant_id": tenant, "timestamp": start_ms + i,
             "data": {"sku": f"S{i % skus:06d}", "quantity_change": 1 if i % 3 else -1}} for i in range(n)]


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-probe"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def position_group_at_end(settings: Settings, group: str, topics: list[str]) -> None:
    """Commit the group at the current end of its inputs: the worker starts with nothing to do."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p, o) for t in topics for p, o in end_offsets(settings, t).items()]
        c.commit(offsets=tps, asynchronous=False)
    finally:
        c.close()


def count_levels(settings: Settings, codec: Codec, tenant: str, want: int, start: dict[int, int],
                 timeout: float, latencies: dict[str, int] | None = None) -> tuple[int, float]:
    """Read stock.levels from `start` until `want` records of `tenant`; returns (count, last append time)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("stock.levels", p, o) for p, o in start.items()])
    prefix = f"{tenant}:".encode()
    n, last_ts = 0, 0.0
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + 5
    try:
        while n < want and time.monotonic() < deadline:
            for msg in c.consume(1000, 0.5):
                if msg.error() or not msg.key().startswith(prefix):
                    continue
                n += 1
                ts = msg.timestamp()[1]
                last_ts = max(last_ts, ts / 1000)
                if latencies is not None:
                    latencies[codec.decode(msg.value())["last_event_id"]] = ts
            if time.monotonic() > next_note:
                say(f"  ... {n}/{want} stock.levels records")
                next_note = time.monotonic() + 5
    finally:
        c.close()
    return n, last_ts


def bare_loop(settings: Settings, codec: Codec, start: dict[int, int], n: int) -> float:
    """consume -> decode -> fold -> encode -> produce, the floor any Kafka stream job stands on."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-bare-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, p, o) for p, o in start.items()])
    p = Producer(producer_config(settings))
    stock: dict[str, int] = {}
    done = 0
    t0 = time.perf_counter()
    while done < n:
        for msg in c.consume(1000, 1.0):
            if msg.error():
                continue
            rec = codec.decode(msg.value())
            d = rec["data"]
            key = f"{rec['tenant_id']}:{d['sku']}"
            on_hand = stock.get(key, 0) + d["quantity_change"]
            stock[key] = on_hand
            out = codec.encode("stock.levels", {"tenant_id": rec["tenant_id"], "sku": d["sku"], "on_hand": on_hand,
                                                "reserved": 0, "available": on_hand, "updated_at": rec["timestamp"],
                                                "last_event_id": rec["event_id"], "location_id": None})
            while True:
                try:
                    p.produce("bench-bare-levels", out, key)
                    break
                except BufferError:
                    p.poll(0.05)
            done += 1
    p.flush(60)
    elapsed = time.perf_counter() - t0
    c.close()
    return elapsed


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="events for the throughput run")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--skus", type=int, default=100_000, help="SKUs held by the worker for the restart run")
    args = ap.parse_args()

    run_id = uuid.uuid4().hex[:6]
    app_id = f"bench-{run_id}"
    os.environ["STOCKLEDGER_APP_ID"] = app_id
    settings = Settings()
    ensure_topics(settings.bootstrap_servers, settings.partitions)
    ensure_topics(settings.bootstrap_servers, settings.partitions, ["bench-bare-levels"])
    codec = Codec(settings.schema_registry_url)
    inputs = ["inventory.changes", "catalog.updates"]
    position_group_at_end(settings, app_id, inputs)
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
    got, last = count_levels(settings, codec, tenant, args.n, levels_start, 600)
    worker_s = last - t0
    say("bare loop over the same records")
    bare_s = bare_loop(settings, codec, input_start, args.n)
    print(f"throughput: worker {got / worker_s:,.0f} events/s ({got} in {worker_s:.1f}s, publish included), "
          f"bare loop {args.n / bare_s:,.0f} events/s ({bare_s:.1f}s); ratio {bare_s / worker_s:.2f} (aim >= 0.5)")

    # 2. latency at a steady rate
    tenant2 = f"{tenant}-lat"
    levels_start = end_offsets(settings, "stock.levels")
    total = args.rate * args.seconds
    say(f"latency: {total} events at {args.rate}/s")
    lat_events = events(tenant2, total, 2000, 1_700_100_000_000)
    encoded = [(f"{tenant2}:{e['data']['sku']}", codec.encode(TOPIC, prepare(TOPIC, "<bench>", [e])[0].record))
               for e in lat_events]
    producer = Producer({**producer_config(settings), "linger.ms": 0})
    sent: dict[str, float] = {}
    t_start = time.perf_counter()
    for i, (key, value) in enumerate(encoded):
        target = t_start + i / args.rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[f"b{i}"] = time.time()
        producer.produce(TOPIC, value, key)
        producer.poll(0)
    producer.flush(30)
    arrivals: dict[str, int] = {}
    count_levels(settings, codec, tenant2, total, levels_start, 120, arrivals)
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
    count_levels(settings, codec, tenant3, args.skus, levels_start, 900)
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
