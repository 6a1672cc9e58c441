"""The sink's throughput and latency, against a bare psycopg2 batch insert of the same rows, in one run.

1. Throughput: N invoices with 3 lines and their journal entries (3 lines) are published, then a
   `stockledger sink` worker writes them (8 rows per invoice: header, 3 lines, entry,
   3 lines) into a fresh database; timed from its partition assignment to its stored offsets
   reaching the end. Baseline: the same rows, pre-built as tuples, inserted with psycopg2's
   execute_values into another fresh database with the same schema (constraints, balance trigger),
   one transaction per batch of the same size. Best of two baseline runs.
2. Latency: records published at --rate records/s (invoices and entries alternating) while the
   worker runs; a record is visible when the sink's stored offset passes it (offsets commit in the
   same transaction as the rows). Publication = the produce() call.
Needs the stack: `stockledger stack up` (or STOCKLEDGER_* variables pointing at one).
"""

from __future__ import annotations

import argparse
import bisect
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from psycopg2.extras import execute_values  # noqa: E402

from connectors import store  # noqa: E402
from connectors.rows import LEDGER_TOPICS, TABLE_ORDER, to_rows  # noqa: E402
from connectors.sink import DEFAULT_BATCH_MS, DEFAULT_BATCH_SIZE  # noqa: E402
from stockledger.codec import Codec  # noqa: E402
from stockledger.config import Settings  # noqa: E402
from stockledger.db import migrate  # noqa: E402
from stockledger.produce import producer_config  # noqa: E402
from stockledger.topics import ensure_topics  # noqa: E402
from tests.connectors.support import invoice, invoice_entry  # noqa: E402

ROWS_PER_INVOICE = 8


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def records(tenant: str, n: int, start: int = 0) -> list[tuple[str, dict]]:
    out = []
    for i in range(start, start + n):
        inv = invoice(tenant, i, lines=3)
        out += [("ledger.invoices", inv), ("ledger.journal", invoice_entry(inv))]
    return out


class Databases:
    """Fresh databases for this run, dropped at the end."""

    def __init__(self, settings: Settings):
        self.port = settings.pg_port
        self.names: list[str] = []

    def _admin(self):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        return conn

    def new(self) -> str:
        name = f"sink_bench_{uuid.uuid4().hex[:8]}"
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        self.names.append(name)
        engine = store.engine_for(self.url(name))
        migrate.upgrade(engine)
        engine.dispose()
        return name

    def url(self, name: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def connect(self, name: str):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=name)

    def drop_all(self) -> None:
        conn = self._admin()
        with conn.cursor() as cur:
            for name in self.names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def publish(settings: Settings, codec: Codec, prefix: str, recs: list[tuple[str, dict]]) -> None:
    producer = Producer(producer_config(settings))
    for contract, rec in recs:
        key = f"{rec['tenant_id']}:{rec.get('invoice_id') or rec['entry_id']}".encode()
        while True:
            try:
                producer.produce(prefix + contract, codec.encode(contract, rec), key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def stored(conn, group: str) -> dict[tuple[str, int], int]:
    with conn.cursor() as cur:
        cur.execute("SELECT topic, partition, next_offset FROM sink_offsets WHERE group_id = %s", (group,))
        rows = cur.fetchall()
    conn.commit()
    return {(t, p): o for t, p, o in rows}


def baseline(dbs: Databases, recs: list[tuple[str, dict]], batch: int) -> float:
    """Seconds to insert the rows of `recs` with bare execute_values, one transaction per `batch` records."""
    name = dbs.new()
    rows_by_batch = []
    for i in range(0, len(recs), batch):
        per_table: dict[str, list[tuple]] = {}
        cols: dict[str, list[str]] = {}
        for contract, rec in recs[i:i + batch]:
            for table, rows in to_rows(contract, rec).rows.items():
                cols.setdefault(table, list(rows[0]))
                per_table.setdefault(table, []).extend(tuple(r[c] for c in cols[table]) for r in rows)
        rows_by_batch.append([(t, cols[t], per_table[t]) for t in TABLE_ORDER if t in per_table])
    conn = dbs.connect(name)
    cur = conn.cursor()
    start = time.perf_counter()
    for tables in rows_by_batch:
        for table, cs, values in tables:
            execute_values(cur, f"INSERT INTO {table} ({', '.join(cs)}) VALUES %s ON CONFLICT DO NOTHING",
                           values, page_size=store.PAGE_ROWS)
        conn.commit()
    took = time.perf_counter() - start
    conn.close()
    return took


def spawn_sink(settings: Settings, url: str, prefix: str, group: str, batch: int, batch_ms: int,
               log: Path) -> subprocess.Popen:
    env = {**os.environ, "STOCKLEDGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "STOCKLEDGER_SCHEMA_REGISTRY_URL": settings.schema_registry_url}
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "cli.main", "sink", "--database-url", url, "--topic-prefix",
                             prefix, "--group", group, "--batch-size", str(batch), "--batch-ms", str(batch_ms),
                             "--metrics-port", "0"],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise SystemExit(f"sink exited with {proc.returncode} while {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.005)


def latency(settings: Settings, codec: Codec, prefix: str, conn, group: str, rate: int, seconds: float,
            tenant: str, start_n: int) -> list[float]:
    """Publication -> visibility, per record, at `rate` records/s for `seconds`."""
    n = int(rate * seconds)
    recs = records(tenant, (n + 1) // 2, start_n)[:n]
    published: dict[tuple[str, int, int], float] = {}
    pub_at: list[float] = [0.0] * n
    observed: dict[tuple[str, int], list[tuple[int, float]]] = {}
    done = threading.Event()

    def observe() -> None:
        last: dict[tuple[str, int], int] = {}
        while not done.is_set():
            now = time.perf_counter()
            for k, off in stored(conn, group).items():
                if last.get(k) != off:
                    observed.setdefault(k, []).append((off, now))
                    last[k] = off
            time.sleep(0.002)

    def delivered(i: int):
        def cb(err, msg) -> None:
            if err is None:
                published[(msg.topic(), msg.partition(), msg.offset())] = pub_at[i]
        return cb

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    producer = Producer({**producer_config(settings), "linger.ms": 1})
    t0 = time.perf_counter()
    for i, (contract, rec) in enumerate(recs):
        due = t0 + i / rate
        while (now := time.perf_counter()) < due:
            producer.poll(min(due - now, 0.005))
        key = f"{rec['tenant_id']}:{rec.get('invoice_id') or rec['entry_id']}".encode()
        pub_at[i] = time.perf_counter()
        producer.produce(prefix + contract, codec.encode(contract, rec), key, on_delivery=delivered(i))
        if i and i % (rate * 5) == 0:
            say(f"  latency run: {i}/{n} records published")
    producer.flush(30)
    deadline = time.monotonic() + 60
    ends: dict[tuple[str, int], int] = {}
    for (t, p, o) in published:
        ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
    while any(not observed.get(k) or observed[k][-1][0] < v for k, v in ends.items()):
        if time.monotonic() > deadline:
            raise SystemExit("latency run: sink did not catch up")
        time.sleep(0.01)
    done.set()
    observer.join()
    out = []
    for (t, p, o), at in published.items():
        seen = observed[(t, p)]
        i = bisect.bisect_right([off for off, _ in seen], o)
        out.append(seen[i][1] - at)
    return sorted(out)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="invoices for the throughput run (x2 records, x8 rows)")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    ap.add_argument("--batch-ms", type=int, default=DEFAULT_BATCH_MS)
    ap.add_argument("--rate", type=int, default=500, help="records/s of the latency run")
    ap.add_argument("--seconds", type=float, default=20, help="length of the latency run")
    args = ap.parse_args()

    settings = Settings()
    codec = Codec(settings.schema_registry_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topics = [prefix + t for t in LEDGER_TOPICS]
    ensure_topics(settings.bootstrap_servers, settings.partitions, topics + [t + ".dlq" for t in topics])
    dbs = Databases(settings)
    group = "bench-sink"
    log = Path(tempfile.gettempdir()) / f"stockledger-{prefix}sink.log"  # kept only if the run fails
    proc = None
    try:
        tenant = "bench"
        recs = records(tenant, args.n)
        rows = args.n * ROWS_PER_INVOICE
        say(f"{len(recs):,} records ({args.n:,} invoices with 3 lines + their journal entries) = {rows:,} rows; "
            f"batch {args.batch_size} records / {args.batch_ms} ms")

        say("baseline: bare psycopg2 execute_values of the same rows ...")
        base = [baseline(dbs, recs, args.batch_size)]

        t = time.perf_counter()
        publish(settings, codec, prefix, recs)
        say(f"published in {time.perf_counter() - t:.1f}s; starting the sink ...")
        name = dbs.new()
        conn = dbs.connect(name)
        proc = spawn_sink(settings, dbs.url(name), prefix, group, args.batch_size, args.batch_ms, log)
        wait_for(lambda: len(stored(conn, group)) == len(topics) * settings.partitions, 120, "joining", proc)
        start = time.perf_counter()
        total = len(recs)
        last_note = start
        while sum(stored(conn, group).values()) < total:
            if proc.poll() is not None:
                raise SystemExit(f"sink exited with {proc.returncode}; log {log}")
            if time.perf_counter() - last_note > 2:
                last_note = time.perf_counter()
                say(f"  sink: {sum(stored(conn, group).values()):,}/{total:,} records written")
            time.sleep(0.005)
        sink_s = time.perf_counter() - start

        say("baseline again ...")
        base.append(baseline(dbs, recs, args.batch_size))
        base_s = min(base)

        say(f"latency: {args.rate} records/s for {args.seconds:.0f}s ...")
        lat = latency(settings, codec, prefix, conn, group, args.rate, args.seconds, "bench-lat", args.n)
        conn.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        dbs.drop_all()
        admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
        for fut in admin.delete_topics(topics + [t + ".dlq" for t in topics], operation_timeout=30).values():
            fut.result()
    log.unlink(missing_ok=True)

    print(f"sink (Kafka -> decode -> rows + offsets, one transaction per batch): {rows / sink_s:,.0f} rows/s "
          f"({total / sink_s:,.0f} records/s, {sink_s:.2f}s)")
    print(f"bare psycopg2 execute_values, same rows and batches, best of 2: {rows / base_s:,.0f} rows/s "
          f"({base_s:.2f}s)")
    print(f"ratio sink/bare: {base_s / sink_s:.2f} (aim: >= 0.5)")
    print(f"latency publication -> row visible at {args.rate} records/s (batch {args.batch_ms} ms): "
          f"p50 {pct(lat, 0.5) * 1000:.0f} ms, p99 {pct(lat, 0.99) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
          f"over {len(lat):,} records")


if __name__ == "__main__":
    main()
