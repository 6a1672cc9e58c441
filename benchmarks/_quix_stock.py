"""The peer: the same stock fold written in Quix Streams, run as its own process in the side venv.

    .cache/bench-venv/bin/python benchmarks/_quix_stock.py --bootstrap HOST:PORT --topic T --group G \
        --out-topic O --in-schema inventory_change.avsc --out-schema stock_level.avsc --out-schema-id N \
        --state-dir DIR -n N

Quix Streams with its RocksDB state and changelog topics, exactly-once (Kafka transactions), 1 s
commits. Per record (key `<tenant>:<sku>`, so the state is per SKU as in our worker): fastavro decode
(the confluent wire format), a per-event dedup by event_id and a fingerprint of the business content
(sha256 of its canonical JSON), then the stock rule of `streams/core/stock.py` (the latest count plus the
deltas stamped after it, kept sorted, one per timestamp), and one stock.levels record encoded in Avro
with the registry's schema id, sent to `--out-topic`. It stops after `-n` records (Quix's own `count`,
which commits what it processed) and prints one JSON line: {"n": N, "start_to_first_s": ...,
"first_to_last_s": ..., "first_to_committed_s": ...}: seconds from process start to the first record, from
the first record to the N-th one folded (its output handed to the producer), and to the end of the final
commit. (Quix stamps its outputs with the input records' timestamps, so their CreateTime cannot be used.)

Quix Streams is a benchmark dependency only (`benchmarks/stock.py` creates the side venv); nothing of
stockledger is imported here.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import io
import json
import struct
import time

T_START = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("--bootstrap", "--topic", "--group", "--out-topic", "--in-schema", "--out-schema", "--state-dir"):
        ap.add_argument(name, required=True)
    ap.add_argument("--out-schema-id", type=int, required=True)
    ap.add_argument("-n", type=int, required=True)
    args = ap.parse_args()

    import fastavro
    from quixstreams import Application

    reader = fastavro.parse_schema(json.load(open(args.in_schema)))
    writer = fastavro.parse_schema(json.load(open(args.out_schema)))
    header = struct.pack(">bI", 0, args.out_schema_id)
    first = {"t": 0.0, "count": 0, "last": 0.0}

    def fold(value: bytes, key: bytes, timestamp: int, headers, state):  # noqa: ANN001
        if not first["t"]:
            first["t"] = time.perf_counter()
        first["count"] += 1
        if first["count"] == args.n:
            first["last"] = time.perf_counter()
        rec = fastavro.schemaless_reader(io.BytesIO(value[5:]), reader, None)
        data = rec["data"]
        fp = hashlib.sha256(json.dumps([rec["event_type"], rec["tenant_id"],
                                        {k: v for k, v in data.items() if v is not None}],
                                       sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        seen_key = "seen:" + rec["event_id"]
        seen = state.get(seen_key)
        if seen is not None:
            return None  # a duplicate (same fingerprint) or a conflict: nothing to send here
        state.set(seen_key, fp)
        ts = rec["timestamp"]
        ts = ts if isinstance(ts, int) else int(ts.timestamp() * 1000)
        stock = state.get("stock") or {"on_hand": 0, "absolute_ts": None, "deltas": []}
        if data.get("new_quantity") is not None:
            if stock["absolute_ts"] is not None and ts < stock["absolute_ts"]:
                return None
            kept = [d for d in stock["deltas"] if d[0] > ts]
            stock = {"on_hand": data["new_quantity"] + sum(q for _, q in kept), "absolute_ts": ts, "deltas": kept}
        else:
            if stock["absolute_ts"] is not None and ts <= stock["absolute_ts"]:
                return None
            qty = data["quantity_change"]
            deltas = [list(d) for d in stock["deltas"]]
            i = bisect.bisect_left(deltas, [ts])
            if i < len(deltas) and deltas[i][0] == ts:
                deltas[i][1] += qty
            else:
                deltas.insert(i, [ts, qty])
            stock = {"on_hand": stock["on_hand"] + qty, "absolute_ts": stock["absolute_ts"], "deltas": deltas}
        state.set("stock", stock)
        level = {"tenant_id": rec["tenant_id"], "sku": data["sku"], "on_hand": stock["on_hand"], "reserved": 0,
                 "available": stock["on_hand"], "updated_at": ts, "last_event_id": rec["event_id"],
                 "location_id": data.get("location_id"), "reason": data.get("reason")}
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, writer, level)
        return buf.getvalue()

    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      processing_guarantee="exactly-once", commit_interval=1.0, state_dir=args.state_dir,
                      loglevel="WARNING")
    source = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.out_topic, key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(source)
    sdf = sdf.apply(fold, stateful=True, metadata=True).filter(lambda v: v is not None)
    sdf.to_topic(sink)
    app.run(count=args.n)
    done = time.perf_counter()
    print(json.dumps({"n": args.n, "start_to_first_s": first["t"] - T_START,
                      "first_to_last_s": first["last"] - first["t"], "first_to_committed_s": done - first["t"]}),
          flush=True)


if __name__ == "__main__":
    main()
