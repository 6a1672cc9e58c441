"""Issue 15, item 1 on the real stack: nothing stalls, nothing is lost (SPEC 2, "Bad input" and "Bounds").

Records are published raw (encoded with the codec, bypassing `stockledger produce`'s bounds) as a till or
an integrator with its own producer could. Each test asserts the exact stock over HTTP, the exact dead
letters by key and reason, and that the stream moves on.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from decimal import Decimal

import requests

from cli.testing import WorkerProcess, settle, tenant_records, wait_for
from cli.testing import inventory_event as inv
from cli.testing import stock_of as stock
from streams.admit import admission
from streams.core.fold import DeadLetter, FoldConfig, Input, serial_fold
from streams.faustfix.vitals import EXIT_AGENT_DIED

from .core.foldkit import wide_body

LONG_MAX = 9223372036854775807
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def change(tenant: str, event_id: str, sku: str, ts: int, quantity_change: int | None = None,
           new_quantity: int | None = None) -> dict:
    """An inventory.change as an Avro datum (what the codec encodes)."""
    return {"event_id": event_id, "event_type": "inventory.change", "tenant_id": tenant, "timestamp": ts,
            "source": "till", "data": {"sku": sku, "location_id": None, "new_quantity": new_quantity,
                                       "quantity_change": quantity_change, "reason": None, "reference_id": None}}


def send_raw(raw_producer, codec, topic: str, datum: dict, key: str) -> bytes:
    """Publish `datum` as a producer of its own would: the registered schema's id, and decimals as wide as
    it likes (the wire format has no precision)."""
    value = bytes([0]) + codec.register(topic).to_bytes(4, "big") + wide_body(topic, datum)
    raw_producer.produce(topic, value, key.encode())
    return value


def dead_letters(settings, topic: str, tenant: str) -> dict[str, list[dict]]:
    """`<topic>.dlq` records of the tenant, by original key."""
    out: dict[str, list[dict]] = {}
    for r in tenant_records(settings, topic + ".dlq", tenant):
        out.setdefault(r["key"], []).append(r["value"])
    return out


def test_overflowing_deltas_beside_a_normal_delta_then_every_worker_killed_and_a_fresh_one(
        worker, settings, codec, raw_producer, tenant):
    first = send_raw(raw_producer, codec, "inventory.changes", change(tenant, "p1", "POISON", START + 1, LONG_MAX),
                     f"{tenant}:POISON")
    send_raw(raw_producer, codec, "inventory.changes", change(tenant, "n1", "OK", START + 2, 5), f"{tenant}:OK")
    second = send_raw(raw_producer, codec, "inventory.changes", change(tenant, "p2", "POISON", START + 3, LONG_MAX),
                      f"{tenant}:POISON")
    raw_producer.flush(30)
    settle(settings)
    assert stock(worker, tenant, "OK")["on_hand"] == 5
    assert worker.get("/stock/POISON", tenant=tenant).status_code == 404
    letters = dead_letters(settings, "inventory.changes", tenant)
    assert set(letters) == {f"{tenant}:POISON"}
    poison = letters[f"{tenant}:POISON"]
    reason = "QUANTITY_OUT_OF_RANGE: data.quantity_change: 9223372036854775807 is beyond +-1,000,000,000"
    assert [(v["stage"], v["topic"], v["error"]) for v in poison] == [("rule", "inventory.changes", reason)] * 2
    assert [base64.b64decode(v["value"]) for v in poison] == [first, second]
    assert all(base64.b64decode(v["key"]) == f"{tenant}:POISON".encode() for v in poison)

    # every worker SIGKILLed; a fresh one with an empty state folder restores from the changelog alone
    worker.kill(signal.SIGKILL)
    shutil.rmtree(settings.home / "workers" / worker.worker_id, ignore_errors=True)
    worker.start().wait_ready(300)
    settle(settings)
    assert stock(worker, tenant, "OK")["on_hand"] == 5
    assert worker.get("/stock/POISON", tenant=tenant).status_code == 404
    send_raw(raw_producer, codec, "inventory.changes", change(tenant, "n2", "OK", START + 4, 2), f"{tenant}:OK")
    raw_producer.flush(30)
    settle(settings)
    assert stock(worker, tenant, "OK")["on_hand"] == 7
    assert len(dead_letters(settings, "inventory.changes", tenant)[f"{tenant}:POISON"]) == 2


def test_deltas_valid_alone_whose_sum_passes_the_on_hand_bound_are_refused_by_the_fold(
        worker, settings, codec, raw_producer, tenant):
    for n in range(1000):  # 1000 x 10^9: on_hand exactly 10^12, the bound
        send_raw(raw_producer, codec, "inventory.changes", change(tenant, f"b{n}", "BIG", START + n, 1_000_000_000),
                 f"{tenant}:BIG")
    over = [send_raw(raw_producer, codec, "inventory.changes",
                     change(tenant, f"over{n}", "BIG", START + 2000 + n, 999_999_999), f"{tenant}:BIG")
            for n in range(2)]
    send_raw(raw_producer, codec, "inventory.changes", change(tenant, "other", "SMALL", START + 2002, 3),
             f"{tenant}:SMALL")
    send_raw(raw_producer, codec, "inventory.changes", change(tenant, "down", "BIG", START + 2003, -5),
             f"{tenant}:BIG")
    raw_producer.flush(30)
    settle(settings)
    assert stock(worker, tenant, "BIG")["on_hand"] == 10 ** 12 - 5
    assert stock(worker, tenant, "SMALL")["on_hand"] == 3
    letters = dead_letters(settings, "inventory.changes", tenant)
    assert set(letters) == {f"{tenant}:BIG"}
    reason = "QUANTITY_OUT_OF_RANGE: on_hand of BIG: 1000999999999 is beyond +-10^12; refused"
    assert [(v["stage"], v["error"], base64.b64decode(v["value"])) for v in letters[f"{tenant}:BIG"]] == \
        [("rule", reason, value) for value in over]
    levels = [r["value"]["on_hand"] for r in tenant_records(settings, "stock.levels", tenant)
              if r["key"] == f"{tenant}:BIG"]
    assert max(levels) == 10 ** 12 and levels[-1] == 10 ** 12 - 5


def _hostile(rng: random.Random, tenant: str, n: int) -> tuple[str, dict]:
    """One extreme but Avro-encodable record of `tenant` (longs at the bounds and beyond, huge decimals,
    empty and enormous strings, unknown currencies)."""
    long = rng.choice([0, -1, 1_000_000_001, -1_000_000_001, 10 ** 12, LONG_MAX, -LONG_MAX - 1, 2 ** 40])
    text = rng.choice(["", "x" * 50_000, "\u0000", "ü"])
    amount = rng.choice([Decimal("1E+14"), Decimal("-1E+20"), Decimal("99999999999999999999.9999"),
                         Decimal("0.0000"), Decimal("-0.0100")])
    ts = START + n
    kind = n % 5
    if kind == 0:
        return "inventory.changes", change(tenant, f"h{n}", rng.choice(["H", text]), ts, quantity_change=long)
    if kind == 1:
        return "inventory.changes", change(tenant, f"h{n}", "H", ts, new_quantity=long)
    if kind == 2:
        return "sales", {"event_id": f"h{n}", "event_type": "sale.completed", "tenant_id": tenant, "timestamp": ts,
                         "source": None, "data": {
                             "sale_id": f"S{n}" if n % 2 else text, "channel": "POS", "customer_ref": None,
                             "currency": rng.choice(["XXX", "", "usd", "KES"]), "location_id": None,
                             "payment_terms": "PAID", "payments": None,
                             "line_items": [{"sku": "H", "quantity": rng.choice([long, 1]), "unit_price": amount,
                                             "discount_percent": None, "tax_percent": None}]}}
    if kind == 3:
        return "payments", {"event_id": f"h{n}", "event_type": "payment.received", "tenant_id": tenant,
                            "timestamp": ts, "source": None, "data": {
                                "payment_id": f"P{n}", "customer_ref": rng.choice(["C1", text]), "invoice_id": None,
                                "amount": amount, "currency": rng.choice(["XXX", "KES"]), "method": "BANK"}}
    return "customers", {"event_id": f"h{n}", "event_type": "customer.credit", "tenant_id": tenant, "timestamp": ts,
                         "source": None, "data": {"customer_ref": rng.choice(["C1", text]), "credit_limit": amount,
                                                  "on_hold": False}}


def test_fifty_hostile_records_then_a_normal_event_is_applied(worker, settings, codec, raw_producer, tenant):
    rng = random.Random(15)
    expected: dict[str, int] = {}
    admitted: list[Input] = []
    for n in range(50):
        topic, datum = _hostile(rng, tenant, n)
        value = send_raw(raw_producer, codec, topic, datum, f"{tenant}:h{n}")
        record = codec.decode(value)
        if admission(record, topic) is not None:
            expected[topic] = expected.get(topic, 0) + 1
        else:
            admitted.append(Input(topic, 0, n, b"", value, record))
    # what the reference folds into a dead letter among the admitted ones
    for out in serial_fold(admitted, FoldConfig(default_tax_percent=Decimal(settings.tenant_default_tax)))[1]:
        if isinstance(out, DeadLetter):
            expected[out.input.topic] = expected.get(out.input.topic, 0) + 1
    send_raw(raw_producer, codec, "inventory.changes", change(tenant, "normal", "N", START + 100, 11), f"{tenant}:N")
    raw_producer.flush(30)
    settle(settings)
    assert stock(worker, tenant, "N")["on_hand"] == 11
    got = {topic: len(tenant_records(settings, topic + ".dlq", tenant)) for topic in expected}
    assert got == expected
    assert sum(expected.values()) >= 40  # the run was hostile: most records refused


def test_produce_refuses_an_out_of_range_quantity_or_amount_naming_file_record_and_field(stack, settings, tmp_path,
                                                                                        tenant):
    path = tmp_path / "bad.jsonl"
    good = inv(tenant, "g1", "A", 1, quantity_change=1)
    bad = inv(tenant, "g2", "A", 2, quantity_change=LONG_MAX)
    path.write_text("\n".join(json.dumps(e) for e in (good, bad)) + "\n")
    run = subprocess.run([sys.executable, "-m", "cli.main", "produce", "inventory.changes", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run
    assert f"{path}: record 2: data.quantity_change: QUANTITY_OUT_OF_RANGE: 9223372036854775807 is beyond " \
           f"+-1,000,000,000" in run.stderr
    sales = tmp_path / "sale.json"
    sale = {"event_id": "s1", "event_type": "sale.completed", "tenant_id": tenant, "timestamp": "2026-03-01T10:00:00Z",
            "data": {"sale_id": "S1", "channel": "POS", "currency": "KES", "payment_terms": "PAID",
                     "line_items": [{"sku": "A", "quantity": 1, "unit_price": "100000000000000"}]}}
    sales.write_text(json.dumps(sale))
    run = subprocess.run([sys.executable, "-m", "cli.main", "produce", "sales", str(sales)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run
    assert f"{sales}: record 1: data.line_items[0].unit_price: AMOUNT_OUT_OF_RANGE: 100000000000000 is too large " \
           f"(at most 18 digits)" in run.stderr
    assert tenant_records(settings, "sales", tenant) == []
    assert tenant_records(settings, "inventory.changes", tenant) == []


def _dying(settings, agent: str, port: int) -> WorkerProcess:
    """A worker of its own group whose `agent` dies at its first step (tests/streams/dying_worker.py)."""
    return WorkerProcess(settings, f"die-{agent}", port, module="tests.streams.dying_worker",
                         env={"STOCKLEDGER_TEST_DIE": agent, "STOCKLEDGER_APP_ID": f"die-{agent}-{os.getpid()}",
                              "STOCKLEDGER_TEST_STOP_DELAY": "20"})


def _death(w: WorkerProcess, settings, codec, raw_producer, tenant: str) -> dict:
    """Publish until the agent dies; the 503 body seen before the worker exits, and its exit status."""
    send_raw(raw_producer, codec, "inventory.changes", change(tenant, "t1", "D", START, 1), f"{tenant}:D")
    raw_producer.flush(30)
    seen: dict = {}

    def dead() -> bool:
        assert w.proc is not None
        if w.proc.poll() is not None:
            raise AssertionError(f"{w.worker_id} exited {w.proc.returncode} before /health said why; log {w.logfile}")
        try:
            r = requests.get(w.url + "/health", timeout=5)
        except requests.RequestException:
            return False
        if r.status_code == 503 and r.json().get("status") == "dead":
            seen.update(r.json())
            return True
        return False

    wait_for(dead, 240, f"{w.worker_id}'s /health to answer 503", interval=0.3)
    assert w.proc is not None
    status = w.proc.wait(180)
    return {"health": seen, "exit": status}


def test_a_worker_whose_fold_agent_died_answers_503_and_exits_non_zero(stack, settings, codec, raw_producer, tenant):
    w = _dying(settings, "fold", int(os.environ["STOCKLEDGER_WEB_PORT"]) + 11).start()
    try:  # not waited ready: with history in the topics, the agent may die before /health ever said ok
        death = _death(w, settings, codec, raw_producer, tenant)
    finally:
        w.kill(signal.SIGKILL)
    assert death["exit"] == EXIT_AGENT_DIED
    assert death["health"]["dead_agents"] == {"fold": "RuntimeError('injected: the fold step failed')"}
    assert death["health"]["status"] == "dead"


def test_a_worker_whose_admit_agent_died_answers_503_and_exits_non_zero(stack, settings, codec, raw_producer,
                                                                        tenant):
    w = _dying(settings, "admit", int(os.environ["STOCKLEDGER_WEB_PORT"]) + 12).start()
    try:  # not waited ready: with history in the topics, the agent may die before /health ever said ok
        death = _death(w, settings, codec, raw_producer, tenant)
    finally:
        w.kill(signal.SIGKILL)
    assert death["exit"] == EXIT_AGENT_DIED
    assert death["health"]["dead_agents"] == {
        "admit-inventory.changes": "RuntimeError('injected: the admit step failed')"}
