"""`stockledger produce` throughput for N inventory.change records against a bare confluent-kafka loop
publishing the same pre-encoded bytes, in the same run. Needs the stack: `stockledger stack up`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer  # noqa: E402

from cli import demo  # noqa: E402
from stockledger.codec import Codec  # noqa: E402
from stockledger.config import Settings  # noqa: E402
from stockledger.produce import prepare, produce_file, producer_config, read_json_records  # noqa: E402
from stockledger.topics import ensure_topics  # noqa: E402

TOPIC = "inventory.changes"


def bare_publish(settings: Settings, payload: list[tuple[str, bytes]]) -> float:
    producer = Producer(producer_config(settings))
    start = time.perf_counter()
    for key, value in payload:
        while True:
            try:
                producer.produce(TOPIC, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100_000)
    args = ap.parse_args()
    settings = Settings()
    ensure_topics(settings.bootstrap_servers, settings.partitions, [TOPIC])
    events = list(demo.inventory_changes(args.n, groups=2000, tenant="bench", seed=int(time.time())))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
        print(f"{args.n} records, {path.stat().st_size / 1e6:.1f} MB of JSON lines", file=sys.stderr)

        codec = Codec(settings.schema_registry_url)
        prepared = prepare(TOPIC, str(path), read_json_records(str(path)))
        payload = [(p.key, codec.encode(TOPIC, p.record)) for p in prepared]
        bare = bare_publish(settings, payload)  # warms the broker connection too
        print(f"bare loop (pre-encoded bytes): {args.n / bare:,.0f} records/s ({bare:.2f}s)", file=sys.stderr)

        stages = {}
        t = time.perf_counter()
        raws = read_json_records(str(path))
        stages["read JSON"] = time.perf_counter() - t
        t = time.perf_counter()
        prepare(TOPIC, str(path), raws)
        stages["validate+convert"] = time.perf_counter() - t

        start = time.perf_counter()
        n = produce_file(settings, TOPIC, str(path))
        full = time.perf_counter() - start
        assert n == args.n
        bare2 = bare_publish(settings, payload)
        bare_best = min(bare, bare2)
    print(f"stockledger produce (parse, validate, encode, publish): {args.n / full:,.0f} records/s ({full:.2f}s)")
    print(f"bare loop, best of 2: {args.n / bare_best:,.0f} records/s ({bare_best:.2f}s)")
    print("stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in stages.items()))
    print(f"ratio produce/bare time: {full / bare_best:.2f}x (aim: <= 2x)")


if __name__ == "__main__":
    main()
