"""Pieces every benchmark script shares: positions, record counting, the bare baseline loop, percentiles."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from stockledger.config import Settings  # noqa: E402
from stockledger.produce import producer_config  # noqa: E402
from stockledger.testing import end_offsets  # noqa: E402,F401 (the benchmarks import it from here)
from streams.codec import Codec  # noqa: E402

TOPIC = "inventory.changes"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def position_group_at_end(settings: Settings, group: str, topics: list[str]) -> None:
    """Commit the group at the current end of its inputs: the worker starts with nothing to do."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p, o) for t in topics for p, o in end_offsets(settings, t).items()]
        c.commit(offsets=tps, asynchronous=False)
    finally:
        c.close()


def count_records(settings: Settings, codec: Codec, topic: str, tenant: str, want: int, start: dict[int, int],
                  timeout: float, latencies: dict[str, int] | None = None, id_field: str = "last_event_id"
                  ) -> tuple[int, float]:
    """Read `topic` from `start` until `want` records of `tenant`; returns (count, last record time).
    With `latencies`, remember each record's timestamp under its `id_field`."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
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
                    latencies[codec.decode(msg.value())[id_field]] = ts
            if time.monotonic() > next_note:
                say(f"  ... {n}/{want} {topic} records")
                next_note = time.monotonic() + 5
    finally:
        c.close()
    return n, last_ts


def bare_loop(settings: Settings, codec: Codec, topic: str, start: dict[int, int], n: int) -> float:
    """consume -> decode -> fold -> encode -> produce over `n` records of `topic`: the floor any Kafka
    stream job stands on. The fold keeps a per-key count and emits a stock.levels record per input."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-bare-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    p = Producer(producer_config(settings))
    counts: dict[bytes, int] = {}
    done = 0
    t0 = time.perf_counter()
    while done < n:
        for msg in c.consume(1000, 1.0):
            if msg.error():
                continue
            rec = codec.decode(msg.value())
            key = msg.key()
            count = counts.get(key, 0) + 1
            counts[key] = count
            out = codec.encode("stock.levels", {"tenant_id": rec["tenant_id"], "sku": key.decode(), "on_hand": count,
                                                "reserved": 0, "available": count, "updated_at": rec["timestamp"],
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


def fresh_run() -> tuple[str, Settings, Codec]:
    """A run of its own: a fresh app id (group and tables) positioned at the end of every input topic."""
    import os

    from stockledger.topics import INPUTS, ensure_topics

    run_id = uuid.uuid4().hex[:6]
    os.environ["STOCKLEDGER_APP_ID"] = f"bench-{run_id}"
    settings = Settings()
    ensure_topics(settings.bootstrap_servers, settings.partitions)
    ensure_topics(settings.bootstrap_servers, settings.partitions, ["bench-bare-levels"])
    position_group_at_end(settings, settings.app_id, [t.name for t in INPUTS])
    return run_id, settings, Codec(settings.schema_registry_url)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]




def publish_at_rate(settings: Settings, topic: str, records: list[tuple[str, str, bytes]], rate: int,
                    producer: Producer | None = None) -> dict[str, float]:
    """Publish (id, key, value) records at a steady `rate` per second; returns each id's send time.
    Give a `producer` already connected (see `warm_producer`) so the first records do not wait for it."""
    producer = producer or Producer({**producer_config(settings), "linger.ms": 0})
    sent: dict[str, float] = {}
    t_start = time.perf_counter()
    for i, (ident, key, value) in enumerate(records):
        delay = t_start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[ident] = time.time()
        producer.produce(topic, value, key)
        producer.poll(0)
    producer.flush(30)
    return sent


def warm_producer(settings: Settings, topic: str, key: bytes, value: bytes) -> Producer:
    """A latency run's producer, connected: one record sent and acknowledged before the clock starts."""
    producer = Producer({**producer_config(settings), "linger.ms": 0})
    producer.produce(topic, value, key)
    producer.flush(30)
    return producer
