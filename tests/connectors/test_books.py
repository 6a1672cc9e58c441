"""Issue 16 end to end: the issue's tenant through a real worker and the sink into PostgreSQL, then the
accountant's commands (`stockledger books check|trial-balance|aging`, real subprocesses) on those books."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import text

from cli.testing import settle, wait_for
from stockledger.db import migrate
from tests.connectors import support
from tests.connectors.support import ROOT, SinkThread

D = Decimal


def at(day: int, hour: int = 10) -> str:
    return f"2026-01-{day:02d}T{hour:02d}:00:00Z"


def envelope(tenant: str, event_id: str, event_type: str, ts: str, data: dict) -> dict:
    return {"event_id": event_id, "event_type": event_type, "tenant_id": tenant, "timestamp": ts, "data": data}


def sale(tenant: str, sale_id: str, sku: str, qty: int, ts: str, *, order: bool = False, terms: str = "PAID",
         customer: str | None = None, discount: str | None = None) -> dict:
    line: dict = {"sku": sku, "quantity": qty}
    if discount:
        line["discount_percent"] = discount
    data = {"sale_id": sale_id, "channel": "WEB" if order else "POS", "currency": "KES", "payment_terms": terms,
            "line_items": [line]}
    if customer:
        data["customer_ref"] = customer
    return envelope(tenant, f"ev-{sale_id}", "order.placed" if order else "sale.completed", ts, data)


def refund(tenant: str, event_id: str, rid: str, sale_id: str, sku: str, qty: int, ts: str) -> dict:
    return envelope(tenant, event_id, "refund.issued", ts, {"refund_id": rid, "sale_id": sale_id, "restock": False,
                                                            "lines": [{"sku": sku, "quantity": qty}],
                                                            "refund_method": "CREDIT"})


def payment(tenant: str, pid: str, customer: str, amount: str, ts: str, invoice: str | None = None) -> dict:
    return envelope(tenant, f"ev-pay-{pid}", "payment.received", ts,
                    {"payment_id": pid, "customer_ref": customer, "invoice_id": invoice, "amount": amount,
                     "currency": "KES", "method": "BANK"})


def books(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "books", *args, "--database-url", url],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def outcomes(settings, tenant: str) -> dict[str, dict]:
    from cli.testing import tenant_records

    out: dict[str, dict] = {}
    for r in tenant_records(settings, "sales.outcomes", tenant):
        out.setdefault(r["value"]["event_id"], r["value"])
    return out


def test_the_issues_tenant_reconciles_in_postgresql_and_the_books_commands_say_so(
        worker, publish, settings, tenant, sink_db, group):
    url, engine = sink_db
    migrate.upgrade(engine)
    start = support.end_offsets(settings, list(support.LEDGER_TOPICS))
    with engine.begin() as conn:  # this sink reads the shared ledger topics from their end: this test's records
        conn.execute(text("INSERT INTO sink_offsets (group_id, topic, partition, next_offset) "
                          "VALUES (:g, :t, :p, :o)"), [{"g": group, "t": t, "p": p, "o": o}
                                                       for (t, p), o in start.items()])
    t = tenant
    with SinkThread(settings, url, "", group):
        publish("catalog.updates", [envelope(t, "cat", "catalog.update", at(1), {
            "product_group_id": "G", "group_name": "G", "is_active": True,
            "variants": [{"sku": "A", "display_name": "A", "price": "100.00", "stock_quantity": 100},
                         {"sku": "B", "display_name": "B", "price": "50.00", "stock_quantity": 100}]})])
        publish("customers", [
            envelope(t, "c1", "customer.credit", at(1), {"customer_ref": "C1", "credit_limit": "10000",
                                                          "on_hold": False, "payment_terms_days": 30}),
            envelope(t, "c2", "customer.credit", at(1), {"customer_ref": "C2", "credit_limit": "0",
                                                          "on_hold": False})])
        settle(settings)
        # one step at a time: each event meets the effects of the one before it
        steps = [
            ("sales", sale(t, "S5", "B", 1, at(5), order=True, terms="ON_ACCOUNT", customer="C2")),
            ("sales", sale(t, "S1", "A", 1, at(10), customer="C1")),
            ("sales", sale(t, "S2", "A", 1, at(10, 11), order=True, terms="ON_ACCOUNT", customer="C1")),
            ("refunds", refund(t, "ev-r1", "R1", "S1", "A", 1, at(11))),
            ("refunds", refund(t, "ev-r1-s2", "R1", "S2", "A", 1, at(11, 12))),
            ("payments", payment(t, "S1-1", "C1", "10.00", at(12))),
            ("sales", sale(t, "S3", "B", 1, at(12), order=True, terms="ON_ACCOUNT", customer="C1")),
            ("refunds", refund(t, "ev-r3", "R3", "S3", "B", 1, at(13))),
            ("sales", sale(t, "S4", "A", 1, at(13), order=True, customer="C1", discount="100")),
            ("payments", payment(t, "P5", "C2", "20.00", at(20), invoice="INV-S5")),
        ]
        for topic, event in steps:
            publish(topic, [event])
            settle(settings)
        decided = outcomes(settings, t)
        assert {e: (o["outcome"], [r["code"] for r in o["reasons"]], o["document_ids"])
                for e, o in decided.items()} == {
            "ev-S5": ("ACCEPTED", [], ["INV-S5", "JE-INV-S5"]),
            "ev-S1": ("ACCEPTED", [], ["INV-S1", "PAY-S1-1", "JE-INV-S1"]),
            "ev-S2": ("ACCEPTED", [], ["INV-S2", "JE-INV-S2"]),
            "ev-r1": ("ACCEPTED", [], ["CN-R1", "JE-CN-R1"]),
            "ev-r1-s2": ("REFUSED", ["DUPLICATE_DOCUMENT_ID"], []),
            "ev-pay-S1-1": ("REFUSED", ["DUPLICATE_DOCUMENT_ID"], []),
            "ev-S3": ("ACCEPTED", [], ["INV-S3", "JE-INV-S3"]),
            "ev-r3": ("ACCEPTED", [], ["CN-R3", "JE-CN-R3"]),
            "ev-S4": ("ACCEPTED", [], ["INV-S4"]),
            "ev-pay-P5": ("ACCEPTED", [], ["PAY-P5", "JE-PAY-P5"]),
        }

        def written() -> bool:
            with engine.connect() as conn:
                counts = conn.execute(text("""
                    SELECT (SELECT count(*) FROM invoices WHERE tenant_id = :t),
                           (SELECT count(*) FROM credit_notes WHERE tenant_id = :t),
                           (SELECT count(*) FROM payments WHERE tenant_id = :t),
                           (SELECT count(*) FROM journal_entries WHERE tenant_id = :t),
                           (SELECT count(*) FROM invoices WHERE tenant_id = :t AND status = 'PARTIALLY_PAID')
                """), {"t": t}).one()
            return tuple(counts) == (5, 2, 2, 7, 1)

        wait_for(written, 120, "the sink to write the tenant's books")

    with engine.connect() as conn:
        invoices = {r.invoice_id: (r.total, r.paid_amount, r.credited_amount, r.status, r.due_date,
                                   r.first_payment_at, r.last_payment_at)
                    for r in conn.execute(text("SELECT * FROM invoices WHERE tenant_id = :t"), {"t": t})}
    paid_at = datetime(2026, 1, 10, 10, tzinfo=UTC)
    p5_at = datetime(2026, 1, 20, 10, tzinfo=UTC)
    assert invoices == {
        "INV-S1": (D("100.0000"), D("100.0000"), D(0), "PAID", None, paid_at, paid_at),
        "INV-S2": (D("100.0000"), D(0), D(0), "UNPAID", date(2026, 2, 9), None, None),
        "INV-S3": (D("50.0000"), D(0), D("50.0000"), "CREDITED", date(2026, 2, 11), None, None),
        "INV-S4": (D(0), D(0), D(0), "PAID", None, None, None),
        "INV-S5": (D("50.0000"), D("20.0000"), D(0), "PARTIALLY_PAID", date(2026, 1, 5), p5_at, p5_at),
    }
    # the worker's credit view says the same: C1 holds 100.00 of store credit against 100.00 owed
    view = worker.get("/credit/C1", tenant=t).json()
    assert {k: view[k] for k in ("outstanding", "credit_balance", "available", "payment_terms_days")} == {
        "outstanding": "0.00", "credit_balance": "100.00", "available": "10000.00", "payment_terms_days": 30}
    assert [(i["invoice_id"], i["status"], i["due_date"]) for i in view["open_invoices"]] == [
        ("INV-S2", "UNPAID", "2026-02-09")]
    c2 = worker.get("/credit/C2", tenant=t).json()
    assert (c2["outstanding"], c2["first_payment_at"], c2["last_payment_at"]) == (
        "30.00", "2026-01-20T10:00:00Z", "2026-01-20T10:00:00Z")
    assert c2["overdue"] == "30.00" and c2["days_past_due"] >= 330  # due 2026-01-05, the machine's clock is later

    check = books(url, "check", "--tenant", t, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert [(r["reconciliation"].split(" ")[0:2], r["ledger"], r["subledger"], r["difference"], r["status"])
            for r in json.loads(check.stdout)] == [
        (["accounts", "receivable"], "30.00", "30.00", "0.00", "ok"),
        (["sales", "revenue"], "150.00", "150.00", "0.00", "ok"),
        (["tax", "payable"], "0.00", "0.00", "0.00", "ok"),
        (["cash", "(1000)"], "100.00", "100.00", "0.00", "ok"),
        (["card", "and"], "0.00", "0.00", "0.00", "ok"),
        (["bank", "(1020)"], "20.00", "20.00", "0.00", "ok"),
    ]
    assert "every one agrees" in check.stderr

    trial = books(url, "trial-balance", "--tenant", t, "--csv")
    assert trial.returncode == 0, trial.stderr
    assert trial.stdout.splitlines() == [
        "tenant_id,currency,account,account_name,debit,credit,balance",
        f"{t},KES,1000,Cash,100.00,0.00,100.00",
        f"{t},KES,1020,Bank,20.00,0.00,20.00",
        f"{t},KES,1100,Accounts receivable,200.00,170.00,30.00",
        f"{t},KES,4000,Sales revenue,0.00,300.00,-300.00",
        f"{t},KES,4010,Sales returns,150.00,0.00,150.00",
        f"{t},KES,TOTAL,,470.00,470.00,0.00",
    ]
    early = books(url, "trial-balance", "--tenant", t, "--as-of", "2026-01-09", "--csv")
    assert early.stdout.splitlines()[1:] == [
        f"{t},KES,1100,Accounts receivable,50.00,0.00,50.00",
        f"{t},KES,4000,Sales revenue,0.00,50.00,-50.00",
        f"{t},KES,TOTAL,,50.00,50.00,0.00",
    ]
    table = books(url, "trial-balance", "--tenant", t)
    assert table.stdout.splitlines()[0].split() == ["tenant_id", "currency", "account", "account_name", "debit",
                                                    "credit", "balance"]
    assert table.stdout.splitlines()[-1].split() == [t, "KES", "TOTAL", "470.00", "470.00", "0.00"]

    aging = books(url, "aging", "--tenant", t, "--as-of", "2026-01-31", "--csv")
    assert aging.returncode == 0, aging.stderr
    assert aging.stdout.splitlines() == [
        "tenant_id,currency,customer_ref,current,1-30,31-60,61-90,90+,credit,total",
        f"{t},KES,C1,100.00,0.00,0.00,0.00,0.00,-100.00,0.00",
        f"{t},KES,C2,0.00,30.00,0.00,0.00,0.00,0.00,30.00",
    ]
    later = books(url, "aging", "--tenant", t, "--as-of", "2026-05-15", "--json")
    assert [(r["customer_ref"], r["31-60"], r["61-90"], r["90+"], r["total"]) for r in json.loads(later.stdout)] == [
        ("C1", "0.00", "0.00", "100.00", "0.00"), ("C2", "0.00", "0.00", "30.00", "30.00")]  # 95 and 130 days
    assert [(r["31-60"], r["61-90"], r["90+"]) for r in json.loads(books(
        url, "aging", "--tenant", t, "--as-of", "2026-04-20", "--json").stdout)] == [
        ("0.00", "100.00", "0.00"), ("0.00", "0.00", "30.00")]  # 70 and 105 days past due

    # a journal entry no document explains: check names both differences and exits 1
    with engine.begin() as conn:
        conn.execute(text("""INSERT INTO journal_entries VALUES (:t, 'JE-X', 'X', 'invoice', 'KES', now(), null)"""),
                     {"t": t})
        conn.execute(text("""INSERT INTO journal_lines VALUES (:t, 'JE-X', 1, '1100', 5, 0),
                                                              (:t, 'JE-X', 2, '4000', 0, 5)"""), {"t": t})
    bad = books(url, "check", "--tenant", t)
    assert bad.returncode == 1
    lines = [line for line in bad.stdout.splitlines() if "DIFFERENCE" in line]
    assert len(lines) == 3, bad.stdout
    assert "accounts receivable (1100)" in lines[0] and "35.00" in lines[0] and "5.00" in lines[0]
    assert "sales revenue (4000)" in lines[1] and "155.00" in lines[1]
    assert "X: journal entry JE-X has no document" in lines[2]
    assert "books check: 3 difference(s)" in bad.stderr


def test_shipments_price_sources_and_cancellations_land_in_postgresql_and_the_books_check_them(
        worker, publish, settings, tenant, sink_db, group):
    """Issues 19 and 20 in the books: a RESERVE tenant's order priced by a price list, the catalog and the
    producer, shipped in part and cancelled for the rest; PostgreSQL holds the delivery note, each line's
    price source and the cancellation's credit note linked to its order; `books check` reconciles, and
    names a shipment beyond what the order holds."""
    url, engine = sink_db
    migrate.upgrade(engine)
    start = support.end_offsets(settings, list(support.LEDGER_TOPICS))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sink_offsets (group_id, topic, partition, next_offset) "
                          "VALUES (:g, :t, :p, :o)"), [{"g": group, "t": t, "p": p, "o": o}
                                                       for (t, p), o in start.items()])
    t = tenant
    with SinkThread(settings, url, "", group):
        publish("tenant.settings", [envelope(t, "cfg", "tenant.configured", at(1), {"order_fulfilment": "RESERVE"})])
        publish("catalog.updates", [envelope(t, "cat", "catalog.update", at(1), {
            "product_group_id": "G", "group_name": "G", "is_active": True,
            "variants": [{"sku": s, "display_name": s, "price": p, "stock_quantity": 100}
                         for s, p in (("A", "100.00"), ("B", "50.00"), ("C", "20.00"))]})])
        publish("price.lists", [envelope(t, "pl", "price_list.updated", at(1), {
            "price_list_id": "PL-1", "currency": "KES",
            "items": [{"sku": "A", "unit_price": "90.00"}, {"sku": "A", "unit_price": "80.00", "min_quantity": 5}]})])
        publish("customers", [envelope(t, "c1", "customer.credit", at(1), {
            "customer_ref": "C1", "credit_limit": "10000", "on_hold": False, "price_list_id": "PL-1"})])
        settle(settings)
        steps = [
            ("sales", envelope(t, "ev-O1", "order.placed", at(2), {
                "sale_id": "O1", "channel": "WEB", "currency": "KES", "payment_terms": "ON_ACCOUNT",
                "customer_ref": "C1", "line_items": [{"sku": "A", "quantity": 5}, {"sku": "B", "quantity": 2},
                                                     {"sku": "C", "quantity": 1, "unit_price": "18.00"}]})),
            ("sales", envelope(t, "ev-SH1", "order.shipped", at(3), {
                "sale_id": "O1", "shipment_id": "SH1", "location_id": "WH-1",
                "lines": [{"sku": "A", "quantity": 3}, {"sku": "B", "quantity": 2}]})),
            ("sales", envelope(t, "ev-X1", "order.cancelled", at(4), {"sale_id": "O1", "cancellation_id": "X1"})),
            ("sales", envelope(t, "ev-SH2", "order.shipped", at(5), {  # nothing open any more: refused, no row
                "sale_id": "O1", "shipment_id": "SH2", "lines": [{"sku": "A", "quantity": 1}]})),
        ]
        for topic, event in steps:
            publish(topic, [event])
            settle(settings)
        decided = outcomes(settings, t)
        assert {e: (o["kind"], o["outcome"], [r["code"] for r in o["reasons"]], o["document_ids"])
                for e, o in decided.items()} == {
            "ev-O1": ("SALE", "ACCEPTED", [], ["INV-O1", "JE-INV-O1"]),
            "ev-SH1": ("SHIPMENT", "ACCEPTED", [], []),
            "ev-X1": ("CANCELLATION", "ACCEPTED", [], ["CN-X1", "JE-CN-X1"]),
            "ev-SH2": ("SHIPMENT", "REFUSED", ["OVER_SHIPMENT"], []),
        }

        def written() -> bool:
            with engine.connect() as conn:
                counts = conn.execute(text("""
                    SELECT (SELECT count(*) FROM invoices WHERE tenant_id = :t),
                           (SELECT count(*) FROM credit_notes WHERE tenant_id = :t),
                           (SELECT count(*) FROM shipments WHERE tenant_id = :t),
                           (SELECT count(*) FROM journal_entries WHERE tenant_id = :t),
                           (SELECT count(*) FROM external_refs WHERE tenant_id = :t AND kind = 'cancellation')
                """), {"t": t}).one()
            return tuple(counts) == (1, 1, 1, 2, 1)

        wait_for(written, 120, "the sink to write the tenant's books")

    def rows(sql: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), {"t": t})]

    assert rows("SELECT shipment_id, source_shipment_id, sale_id, invoice_id, location_id, shipped_at "
                "FROM shipments WHERE tenant_id = :t") == [
        ("SHIP-SH1", "SH1", "O1", "INV-O1", "WH-1", datetime(2026, 1, 3, 10, tzinfo=UTC))]
    assert rows("SELECT shipment_id, line_no, sku, quantity FROM shipment_lines WHERE tenant_id = :t "
                "ORDER BY line_no") == [("SHIP-SH1", 1, "A", 3), ("SHIP-SH1", 2, "B", 2)]
    assert rows("SELECT line_no, sku, quantity, unit_price, total, price_source, price_list_id FROM invoice_lines "
                "WHERE tenant_id = :t ORDER BY line_no") == [
        (1, "A", 5, D("80.0000"), D("400.0000"), "PRICE_LIST", "PL-1"),  # the list's break at 5
        (2, "B", 2, D("50.0000"), D("100.0000"), "CATALOG", None),
        (3, "C", 1, D("18.0000"), D("18.0000"), "LINE", None)]
    # the cancellation's credit note names its order and invoice; external_refs maps the cancellation to it
    assert rows("SELECT credit_note_id, refund_id, sale_id, invoice_id, refund_method, restock, total "
                "FROM credit_notes WHERE tenant_id = :t") == [
        ("CN-X1", "X1", "O1", "INV-O1", "CREDIT", False, D("178.0000"))]
    assert rows("SELECT external_id, internal_id FROM external_refs WHERE tenant_id = :t AND kind = 'cancellation'"
                ) == [("X1", "CN-X1")]
    assert sorted(rows("SELECT sku, quantity, unit_price, total, price_source, price_list_id FROM credit_note_lines "
                       "WHERE tenant_id = :t")) == [
        ("A", 2, D("80.0000"), D("160.0000"), "PRICE_LIST", "PL-1"), ("C", 1, D("18.0000"), D("18.0000"), "LINE", None)]
    assert rows("SELECT sale_id, sku, ordered, shipped, cancelled FROM books_fulfilment WHERE tenant_id = :t "
                "ORDER BY sku") == [("O1", "A", 5, 3, 2), ("O1", "B", 2, 2, 0), ("O1", "C", 1, 0, 1)]
    check = books(url, "check", "--tenant", t)
    assert check.returncode == 0, check.stdout + check.stderr

    # a delivery note of more than the order holds (say, a row written by hand): check names it, exit 1
    with engine.begin() as conn:
        conn.execute(text("""INSERT INTO shipments VALUES (:t, 'SHIP-BAD', 'BAD', 'O1', 'INV-O1', null, now())"""),
                     {"t": t})
        conn.execute(text("""INSERT INTO shipment_lines VALUES (:t, 'SHIP-BAD', 1, 'B', 1),
                                                               (:t, 'SHIP-BAD', 2, 'Z', 4)"""), {"t": t})
    bad = books(url, "check", "--tenant", t, "--json")
    assert bad.returncode == 1
    assert [(r["reconciliation"], r["status"]) for r in json.loads(bad.stdout) if r["status"] != "ok"] == [
        ("O1: order O1 sku B: shipped 3 + cancelled 0 exceeds ordered 2", "DIFFERENCE"),
        ("O1: order O1 sku Z: shipped 4 + cancelled 0 exceeds ordered 0", "DIFFERENCE")]


def test_a_tenant_with_its_own_chart_reconciles_by_role_in_postgresql(worker, publish, settings, tenant, sink_db,
                                                                      group):
    """SPEC 8 `accounts`: a sale under SPEC's chart, then a tenant.configured with codes of its own; every
    later entry (sale, payment, refund, cancellation) uses them, each journal line names its role, and
    `books check` reconciles both charts' accounts role by role."""
    url, engine = sink_db
    migrate.upgrade(engine)
    start = support.end_offsets(settings, list(support.LEDGER_TOPICS))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sink_offsets (group_id, topic, partition, next_offset) "
                          "VALUES (:g, :t, :p, :o)"), [{"g": group, "t": tp, "p": p, "o": o}
                                                       for (tp, p), o in start.items()])
    t = tenant
    chart = {"cash": "1001", "bank": "1030", "receivable": "1105", "revenue": "4100", "returns": "4110",
             "tax_payable": "2200"}
    with SinkThread(settings, url, "", group):
        publish("catalog.updates", [envelope(t, "cat", "catalog.update", at(1), {
            "product_group_id": "G", "group_name": "G", "is_active": True,
            "variants": [{"sku": "A", "display_name": "A", "price": "100.00", "stock_quantity": 100}]})])
        publish("customers", [envelope(t, "c1", "customer.credit", at(1), {"customer_ref": "C1",
                                                                             "credit_limit": "0", "on_hold": False})])
        settle(settings)
        steps = [
            ("sales", sale(t, "S1", "A", 2, at(2))),  # SPEC's chart: Dr 1000 200, Cr 4000 200
            ("tenant.settings", envelope(t, "cfg", "tenant.configured", at(3), {"accounts": chart})),
            ("sales", sale(t, "S2", "A", 3, at(4), order=True, terms="ON_ACCOUNT", customer="C1")),
            ("payments", payment(t, "P1", "C1", "50.00", at(5), invoice="INV-S2")),
            ("refunds", envelope(t, "ev-r1", "refund.issued", at(6), {
                "refund_id": "R1", "sale_id": "S1", "restock": True, "lines": [{"sku": "A", "quantity": 1}],
                "refund_method": "CASH"})),
            ("sales", envelope(t, "ev-x1", "order.cancelled", at(7), {
                "sale_id": "S2", "cancellation_id": "X1", "lines": [{"sku": "A", "quantity": 1}]})),
        ]
        for topic, event in steps:
            publish(topic, [event])
            settle(settings)

        def written() -> bool:
            with engine.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM journal_entries WHERE tenant_id = :t"), {"t": t}).scalar()
            return n == 5

        wait_for(written, 120, "the sink to write the tenant's books")

    with engine.connect() as conn:
        lines = conn.execute(text("""SELECT entry_id, account, role, debit, credit FROM books_journal
                                      WHERE tenant_id = :t ORDER BY posted_at, line_no"""), {"t": t}).all()
    assert [(e, a, r, str(d), str(c)) for e, a, r, d, c in lines] == [
        ("JE-INV-S1", "1000", "cash", "200.0000", "0.0000"), ("JE-INV-S1", "4000", "revenue", "0.0000", "200.0000"),
        ("JE-INV-S2", "1105", "receivable", "300.0000", "0.0000"),
        ("JE-INV-S2", "4100", "revenue", "0.0000", "300.0000"),
        ("JE-PAY-P1", "1030", "bank", "50.0000", "0.0000"), ("JE-PAY-P1", "1105", "receivable", "0.0000", "50.0000"),
        ("JE-CN-R1", "4110", "returns", "100.0000", "0.0000"), ("JE-CN-R1", "1001", "cash", "0.0000", "100.0000"),
        ("JE-CN-X1", "4110", "returns", "100.0000", "0.0000"),
        ("JE-CN-X1", "1105", "receivable", "0.0000", "100.0000")]
    check = books(url, "check", "--tenant", t, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert [(r["reconciliation"].split(" ")[0:2], r["ledger"], r["subledger"], r["status"])
            for r in json.loads(check.stdout)] == [
        (["accounts", "receivable"], "150.00", "150.00", "ok"),  # 300 - 50 paid - 100 cancelled
        (["sales", "revenue"], "300.00", "300.00", "ok"),  # 200 + 300 invoiced - 100 - 100 credited
        (["tax", "payable"], "0.00", "0.00", "ok"),
        (["cash", "(1000)"], "100.00", "100.00", "ok"),  # 1000: 200, 1001: -100
        (["card", "and"], "0.00", "0.00", "ok"),
        (["bank", "(1020)"], "50.00", "50.00", "ok"),
    ]
    trial = books(url, "trial-balance", "--tenant", t, "--csv")
    assert trial.stdout.splitlines()[1:] == [
        f"{t},KES,1000,Cash,200.00,0.00,200.00",
        f"{t},KES,1001,Cash,0.00,100.00,-100.00",
        f"{t},KES,1030,Bank,50.00,0.00,50.00",
        f"{t},KES,1105,Accounts receivable,300.00,150.00,150.00",
        f"{t},KES,4000,Sales revenue,0.00,200.00,-200.00",
        f"{t},KES,4100,Sales revenue,0.00,300.00,-300.00",
        f"{t},KES,4110,Sales returns,200.00,0.00,200.00",
        f"{t},KES,TOTAL,,750.00,750.00,0.00",
    ]
