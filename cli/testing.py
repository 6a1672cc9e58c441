"""Helpers for tests and benchmarks that drive real worker processes against a real stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from stockledger.config import Settings
from stockledger.retries import produce
from stockledger.topics import stream_inputs, tenant_log_topic


@dataclass
class WorkerProcess:
    """A `stockledger worker` subprocess with its own state folder and web port; or, with `command`,
    `port_flag` and `ready_path`, another long-running command (`api` with `--port`, `notify` with its
    metrics port), ready when `ready_path` answers 200."""

    settings: Settings
    worker_id: str
    web_port: int
    command: str = "worker"
    extra_args: list[str] = field(default_factory=list)
    port_flag: str = "--web-port"
    ready_path: str = "/health"  # answers 200 once the process is ready
    env: dict[str, str] = field(default_factory=dict)  # on top of this process's environment
    module: str = "cli.main"  # what `python -m` runs (tests may wrap the CLI with a fault of their own)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def logfile(self) -> Path:
        return self.settings.home / "workers" / f"{self.worker_id}.log"

    def start(self) -> WorkerProcess:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.logfile, "ab")
        argv = [sys.executable, "-m", self.module, self.command, "--id", self.worker_id,
                self.port_flag, str(self.web_port), "--loglevel", "warning", *self.extra_args]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float = 90) -> WorkerProcess:
        """Until `ready_path` answers 200 (a worker's /health answers 503 while recovering). A worker
        not ready in time is stopped, so a failed start never leaves a process holding its port."""
        try:
            return self._wait_ready(timeout)
        except TimeoutError:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.worker_id} exited {self.proc.returncode}; log {self.logfile}")
            try:
                if requests.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"worker {self.worker_id} not ready after {timeout}s; log {self.logfile}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def get(self, path: str, **params: str) -> requests.Response:
        return requests.get(self.url + path, params=params, timeout=30)


def free_port(low: int, high: int) -> int:
    """The first port in [low, high) loopback can bind now (nothing listens on or holds it; an outgoing
    connection may hold one). Tests keep their ports below the ephemeral range (32768 and up)."""
    for port in range(low, high):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high - 1}")


def spare_port() -> int:
    """A free port of this test run's own: from its PostgreSQL port + 100 on (each run has its own ports)."""
    base = int(os.environ.get("STOCKLEDGER_PG_PORT", "25432")) + 100
    return free_port(base, base + 100)


def committed_lag(settings: Settings, group: str, topics: Iterable[str]) -> int:
    """Records of `topics` not yet committed by `group` (what a restart would still process)."""
    admin = AdminClient(settings.kafka_config())
    consumer = Consumer({**settings.kafka_config(), "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = []
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            tps += [TopicPartition(topic, p) for p in parts]
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=15)}
        lag = 0
        for tp in tps:
            high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            done = committed[(tp.topic, tp.partition)]
            lag += high - (done if done >= 0 else 0)
        return lag
    finally:
        consumer.close()
        del admin


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset of every partition of `topic` (where a run that starts now begins)."""
    c = Consumer({**settings.kafka_config(), "group.id": "offsets-probe"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def stream_lag(settings: Settings) -> int:
    """What the worker group has not yet committed across every topic it consumes."""
    return committed_lag(settings, settings.app_id, stream_inputs(settings.app_id))


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def settle(settings: Settings, timeout: float = 180) -> None:
    """Every input and saga message consumed and committed by the worker group, twice in a row
    a commit interval apart (a saga step produces its next message before its offset commits)."""
    def idle() -> bool:
        if stream_lag(settings) != 0:
            return False
        time.sleep(1.2)
        return stream_lag(settings) == 0

    wait_for(idle, timeout, "the workers to catch up")


def inventory_event(tenant: str, event_id: str, sku: str, minute: int, **data: object) -> dict:
    return {"event_id": event_id, "event_type": "inventory.change", "tenant_id": tenant,
            "timestamp": f"2026-03-01T10:{minute:02d}:00Z", "data": {"sku": sku, **data}}


def stock_of(worker: WorkerProcess, tenant: str, sku: str) -> dict:
    r = worker.get(f"/stock/{sku}", tenant=tenant)
    if r.status_code != 200:
        raise AssertionError(f"GET /stock/{sku}: {r.status_code} {r.text}")
    return r.json()


def tenant_records(settings: Settings, topic: str, tenant: str) -> list[dict]:
    """A topic's records whose key belongs to `tenant`, in partition order."""
    from stockledger.consume import records

    return [r for r in records(settings, topic) if r["key"] and r["key"].startswith(f"{tenant}:")]


def read_topic(settings: Settings, topic: str) -> Iterable:
    """Every message of `topic` from the start up to its end as of the call (raw confluent messages,
    in order within each partition)."""
    import uuid

    c = Consumer({**settings.kafka_config(), "group.id": f"read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "fetch.max.bytes": 64 * 1024 * 1024})
    try:
        parts = sorted(c.list_topics(topic, timeout=15).topics[topic].partitions)
        todo = set()
        assign = []
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
            if high > low:
                todo.add(p)
                assign.append(TopicPartition(topic, p, low))
        if not todo:
            return
        c.assign(assign)
        while todo:
            for msg in c.consume(10_000, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == -191:  # _PARTITION_EOF
                        todo.discard(msg.partition())
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                yield msg
    finally:
        c.close()


class OutcomeFollower:
    """A thread that follows `sales.outcomes` from its end at `start()` and, for each record of
    `tenants`, publishes at once what `react(outcome)` returns ([(topic, contract event)]): a client
    that acts the moment it sees an outcome (a payment naming the sale's invoice).

    `sync()` returns once the thread has read every outcome on the topic at the time of the call and
    Kafka has everything it published for them; it returns how many events it has published so far.
    """

    def __init__(self, settings: Settings, tenants: Iterable[str],
                 react: Callable[[dict], list[tuple[str, dict]]]):
        import threading

        self.settings = settings
        self.prefixes = tuple(f"{t}:" for t in tenants)
        self.react = react
        self.published = 0
        self.seen = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._requests: list = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="outcome-follower", daemon=True)
        self._started = threading.Event()

    def start(self) -> OutcomeFollower:
        self._thread.start()
        if not self._started.wait(60):
            raise TimeoutError("the outcome follower did not start")
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        import uuid

        from confluent_kafka import Producer

        from stockledger.codec import Codec
        from stockledger.produce import prepare, producer_config

        topic = "sales.outcomes"
        codec = Codec(self.settings.schema_registry_url, auth=self.settings.registry_auth)
        producer = Producer({**producer_config(self.settings), "linger.ms": 1, "message.timeout.ms": 0})
        c = Consumer({**self.settings.kafka_config(),
                      "group.id": f"follower-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
        failures: list[str] = []

        def delivered(err, msg) -> None:
            if err is not None:
                failures.append(str(err))

        try:
            parts = sorted(c.list_topics(topic, timeout=15).topics[topic].partitions)
            positions = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)[1]
                         for p in parts}
            c.assign([TopicPartition(topic, p, o) for p, o in positions.items()])
            self._started.set()
            while not self._stop.is_set():
                msgs = c.consume(500, 0.1)
                for msg in msgs:
                    if msg.error() is not None:
                        continue
                    positions[msg.partition()] = msg.offset() + 1  # type: ignore[operator]
                    key = msg.key()
                    if key is None or not key.decode().startswith(self.prefixes):
                        continue
                    self.seen += 1
                    for out_topic, event in self.react(codec.decode(msg.value())):
                        item = prepare(out_topic, "<follower>", [event])[0]
                        produce(producer, out_topic, codec.encode(out_topic, item.record), item.key,
                                on_delivery=delivered)
                        self.published += 1
                producer.poll(0)
                if failures:
                    raise RuntimeError(f"the follower's publishing failed: {failures[:3]}")
                with self._lock:
                    requests, self._requests = self._requests, []
                waiting = []
                for marks, done in requests:
                    if all(positions.get(p, 0) >= m for p, m in marks.items()):
                        while producer.flush(1.0):
                            if self._stop.is_set():
                                return
                        done.set()
                    else:
                        waiting.append((marks, done))
                if waiting:
                    with self._lock:
                        self._requests = waiting + self._requests
        except BaseException as exc:  # noqa: BLE001 - reported by sync()
            self.error = exc
            self._started.set()
        finally:
            producer.flush(30)
            c.close()

    def sync(self, timeout: float = 300) -> int:
        import threading

        marks = end_offsets(self.settings, "sales.outcomes")
        done = threading.Event()
        with self._lock:
            self._requests.append((marks, done))
        deadline = time.monotonic() + timeout
        while not done.wait(0.2):
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the outcome follower did not catch up in {timeout}s")
        return self.published

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def tenant_log(settings: Settings, tenant: str) -> list:
    """Every event admitted for `tenant`, in its tenant-log order (`streams.tenantlog.Entry`)."""
    from streams import tenantlog
    from streams.web import tenant_partition

    topic = tenant_log_topic(settings.app_id)
    partition = tenant_partition(tenant, settings.partitions)
    c = Consumer({**settings.kafka_config(), "group.id": "tenant-log-probe",
                  "enable.auto.commit": False})
    try:
        high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1]
        out: list = []
        if high <= 0:
            return out
        c.assign([TopicPartition(topic, partition, 0)])
        key = tenant.encode()
        last = -1
        while last < high - 1:
            for msg in c.consume(1000, 1.0):
                if msg.error():
                    continue
                last = msg.offset()  # type: ignore[assignment]
                if msg.key() == key:
                    out.extend(tenantlog.entries(msg.value()))  # type: ignore[arg-type]
        return out
    finally:
        c.close()


def admitted_event_ids(settings: Settings, tenant: str) -> list[str]:
    """The event ids of the tenant log, in order (an event admitted twice appears twice)."""
    from stockledger.codec import Codec

    codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
    return [codec.decode(e.value)["event_id"] for e in tenant_log(settings, tenant)]
