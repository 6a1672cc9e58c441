"""Helpers for tests and benchmarks that drive real worker processes against a real stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import requests
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from stockledger.config import Settings
from stockledger.topics import stream_inputs


@dataclass
class WorkerProcess:
    """A `stockledger worker` (or, with `command="api"` and `port_flag="--port"`, `stockledger api`)
    subprocess with its own id and port, ready when its /health answers 200."""

    settings: Settings
    worker_id: str
    web_port: int
    command: str = "worker"
    port_flag: str = "--web-port"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # on top of this process's environment
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def logfile(self) -> Path:
        return self.settings.home / "workers" / f"{self.worker_id}.log"

    def start(self) -> "WorkerProcess":
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.logfile, "ab")
        argv = [sys.executable, "-m", "stockledger.cli", self.command, "--id", self.worker_id,
                self.port_flag, str(self.web_port), "--loglevel", "warning", *self.extra_args]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float = 90) -> "WorkerProcess":
        """Until /health says the tables are recovered (it answers 503 while recovering). A worker
        not ready in time is stopped, so a failed start never leaves a process holding its port."""
        try:
            return self._wait_ready(timeout)
        except TimeoutError:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> "WorkerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.worker_id} exited {self.proc.returncode}; log {self.logfile}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
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


def committed_lag(settings: Settings, group: str, topics: Iterable[str]) -> int:
    """Records of `topics` not yet committed by `group` (what a restart would still process)."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
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
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "offsets-probe"})
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
