"""Pieces every benchmark script shares: positions, record counting, the bare baseline loop, percentiles."""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Producer, TopicPartition  # noqa: E402

from cli.testing import WorkerProcess, end_offsets, free_port, stream_lag  # noqa: E402,F401 (imported from here)
from stockledger.codec import Codec  # noqa: E402
from stockledger.config import Settings  # noqa: E402
from stockledger.produce import producer_config  # noqa: E402

TOPIC = "inventory.changes"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load() -> str:
    """The machine's 1-minute load average, printed beside each figure: the cores are shared."""
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()} cores"


def start_worker(worker: WorkerProcess, first_port: int, timeout: float = 300) -> WorkerProcess:
    """Start `worker` on the first free web port from `first_port` and wait until it is ready."""
    worker.web_port = free_port(first_port, first_port + 100)
    return worker.start().wait_ready(timeout)


def position_group_at(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `group` at `offsets` of `topic`: its next consumer starts there."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def position_group_at_end(settings: Settings, group: str, topics: list[str]) -> None:
    """Commit the group at the current end of its inputs: the worker starts with nothing to do."""
    for topic in topics:
        position_group_at(settings, group, topic, end_offsets(settings, topic))


def record_time(msg) -> tuple[float, bool]:  # noqa: ANN001
    """A record's Kafka timestamp in epoch seconds: CreateTime, set by the worker's producer when it sent
    the record (librdkafka and aiokafka both stamp the send call). The local receive time instead when
    the timestamp is not wall-clock time (a producer that copies event times into records), with True."""
    kind, ts = msg.timestamp()
    now = time.time()
    if kind == TIMESTAMP_NOT_AVAILABLE or not 0 <= now - ts / 1000 < 3600:
        return now, True
    return ts / 1000, False


def read_records(settings: Settings, codec: Codec, topic: str, tenant: str, start: dict[int, int],
                 timeout: float = 120) -> list[tuple[float, dict]]:
    """Every record of `tenant` (key `tenant:...`) in `topic` from `start` to the current end, as
    (record time, decoded value), in partition order. Read after the run, so the reader never takes
    CPU from the worker it measures (the record times are the producer's, not the reader's)."""
    end = end_offsets(settings, topic)
    todo = {p: o for p, o in end.items() if o > start.get(p, 0)}
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
    prefix = f"{tenant}:".encode()
    out: list[tuple[float, dict]] = []
    local = 0
    deadline = time.monotonic() + timeout
    try:
        while todo and time.monotonic() < deadline:
            for msg in c.consume(1000, 0.5):
                if msg.error() or not (msg.key() or b"").startswith(prefix):
                    continue
                ts, was_local = record_time(msg)
                local += was_local
                out.append((ts, codec.decode(msg.value())))
            # By position, not by the last record's offset: a transaction marker may end a partition.
            for tp in c.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= todo[tp.partition]:
                    del todo[tp.partition]
    finally:
        c.close()
    if todo:
        raise TimeoutError(f"{topic}: partitions {sorted(todo)} not read to their end in {timeout}s")
    if local:
        say(f"  note: {local} {topic} records carried no wall-clock timestamp; their receive time was used")
    return out


def wait_caught_up(settings: Settings, timeout: float, what: str) -> float:
    """Until the worker group has consumed and committed everything on every topic it reads (contract
    inputs and its internal topics, `stockledger.topics.stream_inputs`), twice a commit interval
    apart; returns the time it took. Polls lightly (one offsets query per second)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    note = t0 + 10
    zero_since = None
    while True:
        lag = stream_lag(settings)
        now = time.monotonic()
        if lag == 0:
            if zero_since is not None and now - zero_since >= 1.2:
                return now - t0
            zero_since = zero_since or now
        else:
            zero_since = None
        if now > deadline:
            raise TimeoutError(f"{what}: the worker still has {lag} records to consume after {timeout:.0f}s")
        if now > note:
            say(f"  ... {what}: {lag} records still to consume")
            note = now + 10
        time.sleep(1.0)


def visible_times(events: list[tuple[str, str]], outputs: list[tuple[str, str, float]]) -> dict[str, float]:
    """When each event's effect became visible. `events`: (event id, key) in publication order;
    `outputs`: (key, id of the last event the record reflects, record time). An event is visible at
    the earliest output of its key that reflects it or a later event of that key, so a worker that
    folds several events of a key into one record is measured as fairly as one that emits each."""
    pos = {eid: i for i, (eid, _) in enumerate(events)}
    by_key: dict[str, list[tuple[int, float]]] = {}
    for key, eid, ts in outputs:
        if eid in pos:
            by_key.setdefault(key, []).append((pos[eid], ts))
    seen: dict[str, float] = {}
    events_by_key: dict[str, list[tuple[int, str]]] = {}
    for i, (eid, key) in enumerate(events):
        events_by_key.setdefault(key, []).append((i, eid))
    for key, evs in events_by_key.items():
        outs = sorted(by_key.get(key, []))
        if not outs:
            continue
        suffix_min = [0.0] * len(outs)
        best = float("inf")
        for j in range(len(outs) - 1, -1, -1):
            best = min(best, outs[j][1])
            suffix_min[j] = best
        positions = [o[0] for o in outs]
        for i, eid in evs:
            j = bisect.bisect_left(positions, i)
            if j < len(outs):
                seen[eid] = suffix_min[j]
    return seen


def latency_line(lat: list[float], total: int) -> str:
    if not lat:
        return f"no event measured (0/{total})"
    return (f"p50 {percentile(lat, 0.5) * 1000:,.0f} ms, p99 {percentile(lat, 0.99) * 1000:,.0f} ms, "
            f"max {max(lat) * 1000:,.0f} ms ({len(lat)}/{total} measured)")


def verdict(value: float, aim: float, floor: float | None = None, higher_is_better: bool = True,
            what: str = "", unit: str = "") -> str:
    """The `[aim p99 <= 250 ms: met]` note printed next to a figure."""
    op = ">=" if higher_is_better else "<="

    def ok(limit: float) -> bool:
        return value >= limit if higher_is_better else value <= limit
    text = f"aim {what}{' ' if what else ''}{op} {aim:,.0f}{unit}" + (
        f" (at least {floor:,.0f})" if floor is not None else "")
    if ok(aim):
        state = "met"
    elif floor is not None and ok(floor):
        state = "minimum met, aim missed"
    else:
        state = "MISSED"
    return f"[{text}: {state}]"


def bare_loop(settings: Settings, codec: Codec, topic: str, start: dict[int, int], n: int,
              timeout: float = 300) -> float:
    """consume -> decode -> fold -> encode -> produce over `n` records of `topic` from `start`: the floor
    any Kafka stream job stands on. The fold keeps a per-key count and emits a stock.levels record per
    input. Seconds from the first record received to the last output delivered (flush)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-bare-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    p = Producer(producer_config(settings))
    counts: dict[bytes, int] = {}
    done = 0
    t0 = 0.0
    deadline = time.monotonic() + timeout
    while done < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bare loop: {done}/{n} records of {topic} after {timeout}s")
        for msg in c.consume(1000, 1.0):
            if msg.error():
                continue
            if not done:
                t0 = time.perf_counter()
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


def faust_ceiling(settings: Settings, topic: str, start_offsets: dict[int, int], n: int,
                  timeout: float = 300) -> float:
    """The Faust ceiling: seconds an empty faust-streaming agent (`_faust_empty.py`, its own process and
    group, create_app's broker settings, memory store, raw bytes) takes from the first to the `n`-th
    event of `topic` read from `start_offsets`. Start-up (Faust boot, group join, first fetch) is
    excluded and reported on stderr. The process exits by itself after `n` events or `timeout`, and is
    killed (its whole process group) if it is still there after that."""
    group = f"bench-faust-empty-{uuid.uuid4().hex[:6]}"
    position_group_at(settings, group, topic, start_offsets)
    argv = [sys.executable, str(Path(__file__).resolve().parent / "_faust_empty.py"),
            "--bootstrap", settings.bootstrap_servers, "--topic", topic, "--app-id", group,
            "--partitions", str(len(start_offsets)), "--datadir", str(settings.home / "workers" / group),
            "-n", str(n), "--timeout", str(timeout)]
    log = settings.home / "workers" / f"{group}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        out = b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Faust's terminal spinner may write escape codes before the line.
    lines = [line[line.index('{"'):] for line in out.decode(errors="replace").splitlines() if '{"' in line]
    result = json.loads(lines[-1]) if lines else {}
    if "first_to_last_s" not in result:
        raise RuntimeError(f"the empty Faust agent did not finish: {result or 'no result'} (exit "
                           f"{proc.returncode}); log {log}")
    say(f"  empty Faust agent: first event {result['start_to_first_s']:.1f}s after its process started")
    return result["first_to_last_s"]


QUIX_PINS = ("quixstreams==3.28.1", "fastavro==1.13.1")  # the peer's side venv (a benchmark dependency only)
BENCH_VENV = Path(__file__).resolve().parent.parent / ".cache" / "bench-venv"


def bench_venv() -> Path:
    """The side venv with Quix Streams (created on first use, from PyPI): its python."""
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / "pins.txt"
    if not python.exists() or not stamp.exists() or stamp.read_text() != "\n".join(QUIX_PINS):
        say(f"creating the benchmark venv {BENCH_VENV} ({', '.join(QUIX_PINS)})")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *QUIX_PINS], check=True)
        stamp.write_text("\n".join(QUIX_PINS))
    return python


def quix_peer(settings: Settings, codec: Codec, topic: str, start_offsets: dict[int, int], n: int, tenant: str,
              timeout: float = 600) -> tuple[float, float, int]:
    """The same stock fold in Quix Streams (`_quix_stock.py`, exactly-once, RocksDB state with changelog) over
    `n` records of `topic` from `start_offsets`, in its own process and group, timed inside it from its
    first record to its n-th folded (its output handed to its producer, as our worker's record times are
    taken when its producer is handed the record; Quix stamps outputs with the input's timestamp).
    Returns (seconds first to n-th, seconds first to its final commit, outputs counted on its topic)."""
    from stockledger.codec import schema_text
    from stockledger.topics import ensure_topics

    python = bench_venv()
    group = f"bench-quix-{uuid.uuid4().hex[:6]}"
    out_topic = f"{group}-levels"
    ensure_topics(settings.bootstrap_servers, len(start_offsets), [out_topic])
    position_group_at(settings, group, topic, start_offsets)
    work = settings.home / "workers" / group
    work.mkdir(parents=True, exist_ok=True)
    schemas = {}
    for stem in ("inventory_change", "stock_level"):
        schemas[stem] = work / f"{stem}.avsc"
        schemas[stem].write_text(schema_text(stem))
    argv = [str(python), str(Path(__file__).resolve().parent / "_quix_stock.py"), "--bootstrap",
            settings.bootstrap_servers, "--topic", topic, "--group", group, "--out-topic", out_topic,
            "--in-schema", str(schemas["inventory_change"]), "--out-schema", str(schemas["stock_level"]),
            "--out-schema-id", str(codec.register("stock.levels")), "--state-dir", str(work / "state"),
            "-n", str(n)]
    log = settings.home / "workers" / f"{group}.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith('{"n"')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the Quix Streams peer did not finish (exit {proc.returncode}); log {log}")
    result = json.loads(lines[-1])
    say(f"  Quix Streams: first event {result['start_to_first_s']:.1f}s after its process started")
    outputs = read_records(settings, codec, out_topic, tenant, {p: 0 for p in start_offsets})
    return result["first_to_last_s"], result["first_to_committed_s"], len(outputs)


def fresh_run() -> tuple[str, Settings, Codec]:
    """A run of its own: a fresh app id (group and tables) positioned at the end of every input topic."""
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
    Give a `producer` already connected (see `warm_producer`) so the first records do not wait for it.
    Its own is not idempotent: an idempotent producer first gets a producer id from the broker, and now and
    then its first records waited 0.4-0.6 s for it, which set the p99 of a whole latency run (sales.py: 3 of
    7 runs; none of 4 without idempotence)."""
    if producer is None:
        producer = Producer({**producer_config(settings), "linger.ms": 0, "enable.idempotence": False})
        producer.list_topics(topic, timeout=30)  # connected (metadata, leader) before the clock starts
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
