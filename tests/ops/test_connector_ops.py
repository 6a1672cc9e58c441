"""A real `stockledger sink` process: /health (readiness) and /metrics (prometheus-client) on its own
port, and `--log-format json` logs (one JSON object a line on stderr; the result line on stdout)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from cli.testing import spare_port
from connectors.sink import ledger_topics

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the sink exited {proc.returncode} while waiting for {what}"
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None


def samples(url: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_sink_health_metrics_and_json_logs(stack, settings, tmp_path):
    prefix, group, port = f"ops-{uuid.uuid4().hex[:6]}.", f"ops-sink-{uuid.uuid4().hex[:6]}", spare_port()
    base = f"http://127.0.0.1:{port}"
    out, err = open(tmp_path / "out", "w+"), open(tmp_path / "err", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--log-format", "json", "sink", "--topic-prefix",
                             prefix, "--group", group, "--metrics-port", str(port)],
                            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        partitions = len(ledger_topics(prefix)) * settings.partitions
        body = wait_for(lambda: (r := get(base + "/health")) is not None and r.status_code == 200
                        and r.json()["partitions"] == partitions and r.json(), 120, "ready with every partition", proc)
        assert body == {"status": "ok", "group": group, "partitions": partitions}
        assert get(base + "/nothing").status_code == 404

        invoices = prefix + "ledger.invoices"
        producer = Producer(settings.kafka_config())
        producer.produce(invoices, key=b"acme:INV-1", value=b"not avro", partition=0)  # a poison pill
        assert producer.flush(30) == 0
        batches = ("stockledger_sink_batch_seconds_count", ())
        metrics = wait_for(lambda: (m := samples(base + "/metrics")).get(batches) == 1 and m, 60, "one batch", proc)
        assert metrics[("stockledger_sink_records_total", (("topic", invoices),))] == 1
        assert metrics[("stockledger_sink_dead_letters_total", ())] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    out.seek(0), err.seek(0)
    assert out.read() == "sink stopped: records=1 dead_letters=1 batches=1 fenced=0 rewound=0 retries=0\n"
    logs = [json.loads(line) for line in err.read().splitlines()]  # every line is one JSON object
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in logs)
    messages = [(e["level"], e["logger"], e["message"]) for e in logs]
    assert ("INFO", "stockledger.sink", "sink stopped: records=1 dead_letters=1 batches=1 fenced=0 rewound=0 "
                                        "retries=0") in messages
    assert any(level == "WARNING" and m.startswith(f"dead letter {invoices}[0]@0 (decode): ")
               for level, _, m in messages)
    assert get(base + "/health") is None  # the port closed with the process


def test_log_level_warning_hides_info(stack, settings, tmp_path):
    """The same flag after the command; text format: no INFO line, the dead-letter WARNING stays."""
    prefix, group, port = f"ops-{uuid.uuid4().hex[:6]}.", f"ops-sink-{uuid.uuid4().hex[:6]}", spare_port()
    err = open(tmp_path / "err", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "sink", "--topic-prefix", prefix, "--group",
                             group, "--metrics-port", str(port), "--log-level", "warning"],
                            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (r := get(f"http://127.0.0.1:{port}/health")) is not None and r.status_code == 200, 120,
                 "ready", proc)
        producer = Producer(settings.kafka_config())
        producer.produce(prefix + "ledger.payments", value=b"\x00\x00", partition=1)
        assert producer.flush(30) == 0
        wait_for(lambda: samples(f"http://127.0.0.1:{port}/metrics").get(
            ("stockledger_sink_dead_letters_total", ())) == 1, 60, "the dead letter", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    err.seek(0)
    lines = err.read().splitlines()
    assert lines and not any(" INFO " in line for line in lines)
    assert any(" stockledger.sink WARNING dead letter " in line for line in lines)
