"""Helpers of the connector tests: ledger records as the stream workers will publish them, topics and
databases of a test's own, sink workers (threads and real processes), and reading the books back."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, create_engine, text

from connectors.rows import LEDGER_TOPICS
from stockledger.config import Settings
from stockledger.produce import producer_config
from stockledger.topics import ensure_topics

log = logging.getLogger("tests.connectors")

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
D = Decimal

INVOICES, CREDIT_NOTES, PAYMENTS, JOURNAL, REFS, SHIPMENTS = LEDGER_TOPICS


# -- records -----------------------------------------------------------------------------------------
def money(cents: int) -> Decimal:
    return (D(cents) / 100).quantize(D("0.0001"))


def _priced(n: int, i: int) -> tuple[str | None, str | None]:
    """SPEC 9's price source of line i of INV-S<n>: a price list, the catalog, the producer's; none (a record
    written before price lists) for every tenth invoice."""
    if n % 10 == 9:
        return None, None
    return (("LINE", None), ("PRICE_LIST", f"PL-{n % 5}"), ("CATALOG", None))[i % 3]


def invoice(tenant: str, n: int, lines: int = 3, terms: str = "ON_ACCOUNT") -> dict:
    """INV-S<n>: `lines` lines, 16% tax, amounts that vary with n."""
    ls = []
    for i in range(1, lines + 1):
        qty = 1 + (n + i) % 4
        unit = money(100 + (n * 37 + i * 11) % 9000)
        net = (unit * qty).quantize(D("0.01"))
        tax = (net * D("0.16")).quantize(D("0.01"))
        source, plist = _priced(n, i)
        ls.append({"line_no": i, "sku": f"SKU-{(n + i) % 50:03d}", "quantity": qty, "unit_price": unit,
                   "discount_percent": D("0"), "tax_percent": D("16"), "net": net, "tax": tax, "total": net + tax,
                   "price_source": source, "price_list_id": plist})
    net_total = sum((x["net"] for x in ls), D(0))
    tax_total = sum((x["tax"] for x in ls), D(0))
    return {"tenant_id": tenant, "invoice_id": f"INV-S{n}", "sale_id": f"S{n}", "customer_ref": f"C{n % 20}",
            "channel": "WEB", "currency": "USD", "payment_terms": terms, "issued_at": T0 + timedelta(seconds=n),
            "lines": ls, "net_total": net_total, "tax_total": tax_total, "total": net_total + tax_total}


def invoice_entry(inv: dict) -> dict:
    """JE-INV-S<n>: Dr receivable total, Cr revenue net, Cr tax payable tax."""
    return {"tenant_id": inv["tenant_id"], "entry_id": f"JE-{inv['invoice_id']}", "document_id": inv["invoice_id"],
            "document_type": "INVOICE", "currency": inv["currency"], "posted_at": inv["issued_at"],
            "description": f"sale {inv['sale_id']}",
            "lines": [{"account": "1100", "debit": inv["total"], "credit": D(0)},
                      {"account": "4000", "debit": D(0), "credit": inv["net_total"]},
                      {"account": "2100", "debit": D(0), "credit": inv["tax_total"]}]}


def payment(tenant: str, pid: str, inv: dict, amount: Decimal, paid_after: Decimal) -> dict:
    status = "PAID" if paid_after == inv["total"] else "PARTIALLY_PAID"
    return {"tenant_id": tenant, "payment_id": f"PAY-{pid}", "customer_ref": inv["customer_ref"], "sale_id": None,
            "method": "BANK", "amount": amount, "currency": "USD", "reference": f"ref-{pid}",
            "received_at": inv["issued_at"] + timedelta(days=1),
            "allocations": [{"invoice_id": inv["invoice_id"], "amount": amount, "paid_after": paid_after,
                             "status_after": status}]}


def credit_note(tenant: str, rid: str, inv: dict) -> dict:
    """CN-<rid>: refunds the first line of the invoice in full."""
    line = inv["lines"][0]
    return {"tenant_id": tenant, "credit_note_id": f"CN-{rid}", "refund_id": rid, "sale_id": inv["sale_id"],
            "invoice_id": inv["invoice_id"], "currency": "USD", "refund_method": "CARD", "restock": True,
            "issued_at": inv["issued_at"] + timedelta(days=2), "lines": [dict(line)],
            "net_total": line["net"], "tax_total": line["tax"], "total": line["total"]}


def shipment(tenant: str, sid: str, inv: dict, location: str | None = "WH-1") -> dict:
    """SHIP-<sid>: the invoice's first line, shipped in full a day after the invoice (SPEC 8, ledger.shipments)."""
    line = inv["lines"][0]
    return {"tenant_id": tenant, "shipment_id": f"SHIP-{sid}", "source_shipment_id": sid, "sale_id": inv["sale_id"],
            "invoice_id": inv["invoice_id"], "location_id": location,
            "shipped_at": inv["issued_at"] + timedelta(days=1),
            "lines": [{"line_no": 1, "sku": line["sku"], "quantity": line["quantity"]}]}


def external_ref(tenant: str, kind: str, external: str, internal: str) -> dict:
    return {"tenant_id": tenant, "kind": kind, "external_id": external, "internal_id": internal}


def key_of(contract: str, rec: dict) -> str:
    ids = {INVOICES: "invoice_id", CREDIT_NOTES: "credit_note_id", PAYMENTS: "payment_id", JOURNAL: "entry_id",
           REFS: "external_id", SHIPMENTS: "shipment_id"}
    return f"{rec['tenant_id']}:{rec[ids[contract]]}"


def ledger_mix(tenant: str, invoices: int) -> list[tuple[str, dict]]:
    """(contract topic, record) for `invoices` invoices with their entries, and per 4 invoices 2 payments on
    one of them (the final one published first), a credit note, an external ref and a shipment: 13 records
    per 4 invoices."""
    out: list[tuple[str, dict]] = []
    for n in range(invoices):
        inv = invoice(tenant, n)
        out += [(INVOICES, inv), (JOURNAL, invoice_entry(inv))]
        if n % 4 == 0:
            half = (inv["total"] / 2).quantize(D("0.01"))
            out += [(PAYMENTS, payment(tenant, f"{n}-2", inv, inv["total"] - half, inv["total"])),
                    (PAYMENTS, payment(tenant, f"{n}-1", inv, half, half))]
        if n % 4 == 1:
            out.append((CREDIT_NOTES, credit_note(tenant, f"R{n}", inv)))
        if n % 4 == 2:
            out.append((REFS, external_ref(tenant, "sale", f"S{n}", inv["invoice_id"])))
        if n % 4 == 3:
            out.append((SHIPMENTS, shipment(tenant, f"SH{n}", inv, None if n % 8 == 7 else "WH-1")))
    return out


# -- expected books (written independently of connectors.rows) -----------------------------------------
def expected_books(records: Iterable[tuple[str, dict]]) -> dict[str, set[tuple]]:
    """Every row the books must hold for these records (duplicates collapse), per table."""
    b: dict[str, set[tuple]] = {name: set() for name in TABLES}
    paid: dict[tuple[str, str], tuple[Decimal, str]] = {}
    invoices: dict[tuple[str, str], dict] = {}
    for contract, r in records:
        t = r["tenant_id"]
        if contract == INVOICES:
            invoices[(t, r["invoice_id"])] = r
            for x in r["lines"]:
                b["invoice_lines"].add((t, r["invoice_id"], x["line_no"], x["sku"], x["quantity"], x["unit_price"],
                                        x["discount_percent"], x["tax_percent"], x["net"], x["tax"], x["total"],
                                        x.get("price_source"), x.get("price_list_id")))
        elif contract == CREDIT_NOTES:
            b["credit_notes"].add((t, r["credit_note_id"], r["refund_id"], r["sale_id"], r["invoice_id"], r["currency"],
                                   r["refund_method"], r["restock"], r["issued_at"], r["net_total"], r["tax_total"],
                                   r["total"]))
            for x in r["lines"]:
                b["credit_note_lines"].add((t, r["credit_note_id"], x["line_no"], x["sku"], x["quantity"],
                                            x["unit_price"], x["discount_percent"], x["tax_percent"], x["net"],
                                            x["tax"], x["total"], x.get("price_source"), x.get("price_list_id")))
        elif contract == PAYMENTS:
            b["payments"].add((t, r["payment_id"], r["customer_ref"], r["sale_id"], r["method"], r["amount"],
                               r["currency"], r["reference"], r["received_at"]))
            for a in r["allocations"]:
                b["payment_allocations"].add((t, r["payment_id"], a["invoice_id"], a["amount"], a["paid_after"],
                                              a["status_after"]))
                k = (t, a["invoice_id"])
                if k not in paid or a["paid_after"] > paid[k][0]:
                    paid[k] = (a["paid_after"], a["status_after"])
        elif contract == JOURNAL:
            b["journal_entries"].add((t, r["entry_id"], r["document_id"], r["document_type"], r["currency"],
                                      r["posted_at"], r["description"]))
            for n, x in enumerate(r["lines"], 1):
                b["journal_lines"].add((t, r["entry_id"], n, x["account"], x["debit"], x["credit"]))
        elif contract == REFS:
            b["external_refs"].add((t, r["kind"], r["external_id"], r["internal_id"]))
        elif contract == SHIPMENTS:
            b["shipments"].add((t, r["shipment_id"], r["source_shipment_id"], r["sale_id"], r["invoice_id"],
                                r["location_id"], r["shipped_at"]))
            for x in r["lines"]:
                b["shipment_lines"].add((t, r["shipment_id"], x["line_no"], x["sku"], x["quantity"]))
    for k, r in invoices.items():
        p, status = paid.get(k, (D(0), "UNPAID"))
        b["invoices"].add((k[0], k[1], r["sale_id"], r["customer_ref"], r["channel"], r["currency"],
                           r["payment_terms"], r["issued_at"], r["net_total"], r["tax_total"], r["total"], p, status))
    return b


TABLES = {
    "invoices": "tenant_id, invoice_id, sale_id, customer_ref, channel, currency, payment_terms, issued_at, "
                "net_total, tax_total, total, paid_amount, status",
    "invoice_lines": "tenant_id, invoice_id, line_no, sku, quantity, unit_price, discount_percent, tax_percent, "
                     "net, tax, total, price_source, price_list_id",
    "credit_notes": "tenant_id, credit_note_id, refund_id, sale_id, invoice_id, currency, refund_method, restock, "
                    "issued_at, net_total, tax_total, total",
    "credit_note_lines": "tenant_id, credit_note_id, line_no, sku, quantity, unit_price, discount_percent, "
                         "tax_percent, net, tax, total, price_source, price_list_id",
    "payments": "tenant_id, payment_id, customer_ref, sale_id, method, amount, currency, reference, received_at",
    "payment_allocations": "tenant_id, payment_id, invoice_id, amount, paid_after, status_after",
    "journal_entries": "tenant_id, entry_id, document_id, document_type, currency, posted_at, description",
    "journal_lines": "tenant_id, entry_id, line_no, account, debit, credit",
    "external_refs": "tenant_id, kind, external_id, internal_id",
    "shipments": "tenant_id, shipment_id, source_shipment_id, sale_id, invoice_id, location_id, shipped_at",
    "shipment_lines": "tenant_id, shipment_id, line_no, sku, quantity",
}


def books(engine: Engine, tenant: str) -> dict[str, list[tuple]]:
    """The tenant's rows of every table, as sorted lists (so duplicates would show)."""
    out = {}
    with engine.connect() as conn:
        for name, cols in TABLES.items():
            rows = conn.execute(text(f"SELECT {cols} FROM {name} WHERE tenant_id = :t"), {"t": tenant}).all()
            out[name] = sorted(tuple(r) for r in rows)
    return out


def assert_books_equal(engine: Engine, tenant: str, expected: dict[str, set[tuple]]) -> None:
    got = books(engine, tenant)
    for name in TABLES:
        rows = got[name]
        assert len(rows) == len(set(rows)), f"{name}: duplicate rows"
        missing, extra = expected[name] - set(rows), set(rows) - expected[name]
        assert not missing and not extra, f"{name}: {len(missing)} missing e.g. {sorted(missing)[:2]}, " \
                                          f"{len(extra)} unexpected e.g. {sorted(extra)[:2]}"
        assert len(rows) == len(expected[name])


def unbalanced_entries(engine: Engine, tenant: str) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("""
            SELECT e.entry_id, coalesce(sum(l.debit), 0), coalesce(sum(l.credit), 0)
              FROM journal_entries e LEFT JOIN journal_lines l USING (tenant_id, entry_id)
             WHERE e.tenant_id = :t GROUP BY e.entry_id
            HAVING coalesce(sum(l.debit), 0) <> coalesce(sum(l.credit), 0) OR count(l.*) = 0"""), {"t": tenant}).all()


# -- Kafka -------------------------------------------------------------------------------------------
def new_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}."


def create_topics(settings: Settings, names: list[str], partitions: int | None = None) -> None:
    ensure_topics(settings.bootstrap_servers, partitions or settings.partitions, names)


def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        try:
            fut.result()
        except Exception:
            pass


def publish(settings: Settings, codec, records: Iterable[tuple[str, dict]], prefix: str = "",
            timestamp_ms: int | None = None) -> int:
    """Encode with the contract schema, publish to `<prefix><contract topic>` with the SPEC key."""
    producer = Producer(producer_config(settings))
    n = 0
    for contract, rec in records:
        kwargs = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        produce(producer, prefix + contract, codec.encode(contract, rec), key_of(contract, rec).encode(), **kwargs)
        n += 1
    assert producer.flush(60) == 0
    return n


def produce(producer: Producer, topic: str, value: bytes | None, key: bytes | None, **kwargs) -> None:
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)


def end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe-" + uuid.uuid4().hex[:6]})
    try:
        out = {}
        for t in topics:
            for p in c.list_topics(t, timeout=10).topics[t].partitions:
                deadline = time.monotonic() + 15
                while True:
                    try:  # a topic created a moment ago may not have its leader yet
                        out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False)[1]
                        break
                    except KafkaException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
        return out
    finally:
        c.close()


# -- PostgreSQL --------------------------------------------------------------------------------------
def admin_connection(port: int):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def create_database(port: int) -> str:
    name = f"sink_{uuid.uuid4().hex[:10]}"
    conn = admin_connection(port)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def drop_database(port: int, name: str) -> None:
    conn = admin_connection(port)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def database_url(port: int, name: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{name}"


def stored_offsets(engine: Engine, group: str) -> dict[tuple[str, int], int]:
    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT topic, partition, next_offset FROM sink_offsets WHERE group_id = :g"),
                                {"g": group}).all()
        except Exception:
            return {}
    return {(t, p): o for t, p, o in rows}


def wait_caught_up(engine: Engine, group: str, settings: Settings, topics: list[str], timeout: float = 60,
                   procs: list | None = None) -> None:
    """Until the sink's stored offsets reach the end of every partition of `topics`."""
    ends = end_offsets(settings, topics)
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_offsets(engine, group)
        if all(stored.get(k, 0) >= v for k, v in ends.items()):
            return
        for p in procs or ():
            assert p.poll() is None, f"sink exited with {p.returncode}: {tail(p)}"
        if time.monotonic() > deadline:
            behind = {k: (stored.get(k), v) for k, v in ends.items() if stored.get(k, 0) < v}
            raise AssertionError(f"sink not caught up after {timeout}s: {behind}")
        time.sleep(0.1)


# -- sink workers ------------------------------------------------------------------------------------
class WorkerThread:
    """A connector worker (anything with `run()` that returns when `stop` is set) in this process, for
    tests that do not kill it; errors surface at close()."""

    name = "worker"

    def __init__(self, worker, stop: threading.Event):
        self.worker = worker
        self.stop = stop
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), f"{self.name} thread did not stop"
        if self.error:
            raise self.error


class SinkThread(WorkerThread):
    """A sink worker in this process."""

    name = "sink"

    def __init__(self, settings: Settings, url: str, prefix: str, group: str, **kwargs):
        from connectors.sink import Sink

        stop = threading.Event()
        super().__init__(Sink(replace(settings, database_url_env=url), group=group, topic_prefix=prefix, stop=stop,
                              **kwargs), stop)
        self.sink = self.worker


class BatchHolder:
    """Holds a sink's batches while `gate` exists (a test hook, `Sink.before_commit`): the sink has read a batch
    and waits, outside its transaction, before committing it; `holding` is set meanwhile."""

    def __init__(self, sink: Any, gate: Path):
        self.sink, self.gate = sink, gate
        self.holding = threading.Event()
        sink.before_commit = self.hold

    def hold(self, moves: dict) -> None:
        from connectors.offsets import Stopped

        if not self.gate.exists():
            return
        log.warning("holding a batch of %s until %s is removed",
                    ", ".join(f"{t}[{p}]@{a}..{b}" for (t, p), (a, b) in sorted(moves.items())), self.gate)
        self.holding.set()
        try:
            while self.gate.exists():
                if self.sink.stop.wait(0.02):
                    raise Stopped("commit a held batch")
        finally:
            self.holding.clear()


def spawn_sink(url: str, prefix: str, group: str, log: Path, *extra: str) -> subprocess.Popen:
    """A real sink worker process: `stockledger sink ...`."""
    argv = [sys.executable, "-m", "cli.main", "sink", "--database-url", url, "--topic-prefix", prefix,
            "--group", group, *(() if "--metrics-port" in extra else ("--metrics-port", "0")), *extra]
    out = open(log, "ab")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    proc.log_path = log  # type: ignore[attr-defined]
    out.close()
    return proc


def tail(proc: subprocess.Popen, lines: int = 30) -> str:
    try:
        return "\n".join(Path(proc.log_path).read_text(errors="replace").splitlines()[-lines:])  # type: ignore[attr-defined]
    except OSError:
        return ""


def stop_sink(proc: subprocess.Popen, timeout: float = 60) -> str:
    """SIGTERM, wait, and return the final stats line."""
    proc.terminate()
    proc.wait(timeout)
    assert proc.returncode == 0, tail(proc)
    for line in reversed(Path(proc.log_path).read_text().splitlines()):  # type: ignore[attr-defined]
        if line.startswith("sink stopped:"):
            return line
    raise AssertionError(f"no stats line: {tail(proc)}")


def stats_of(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def new_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def read_topic(settings: Settings, topic: str) -> list:
    """Every record of `topic` now (all partitions, from the start), as confluent_kafka Messages."""
    ends = end_offsets(settings, [topic])
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "read-" + uuid.uuid4().hex[:6],
                  "enable.auto.commit": False})
    out = []
    try:
        c.assign([TopicPartition(topic, p, 0) for (_, p) in ends])
        want = sum(ends.values())
        deadline = time.monotonic() + 30
        while len(out) < want and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
        assert len(out) == want, f"read {len(out)} of {want} records of {topic}"
        return sorted(out, key=lambda m: (m.partition(), m.offset()))
    finally:
        c.close()


def wait_rows(engine: Engine, table: str, tenant: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            try:
                n = conn.execute(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant}).scalar()
            except Exception:
                n = -1
        if n == count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{table}: {n} rows of tenant {tenant} after {timeout}s, expected {count}")
        time.sleep(0.1)


def log_count(proc: subprocess.Popen, needle: str) -> int:
    try:
        return Path(proc.log_path).read_text(errors="replace").count(needle)  # type: ignore[attr-defined]
    except OSError:
        return 0


def wait_log(proc: subprocess.Popen, needle: str, count: int = 1, timeout: float = 60) -> None:
    """Until the worker's log holds `needle` `count` times (e.g. its partition assignments)."""
    deadline = time.monotonic() + timeout
    while log_count(proc, needle) < count:
        assert proc.poll() is None, f"sink exited with {proc.returncode}: {tail(proc)}"
        assert time.monotonic() < deadline, f"no {needle!r} x{count} in the log after {timeout}s: {tail(proc)}"
        time.sleep(0.05)
