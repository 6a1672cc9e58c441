"""20k mixed events with 5% redelivered, a worker killed twice with SIGKILL while a second worker joins
and later leaves under load: the final stock, credit and books equal what the pure core computes
serially from the input.

Every rebalance here makes faust-streaming 0.15.3 drop fetched records; `streams.consumer` reads
them again in order, and this test is what shows it (before it, web orders were left PENDING).

The workload is built so that every decision is independent of how partitions interleave (orders
either always fit or never do; credit customers are unlimited, on hold, or too tight for any order;
payments and refunds come in later phases, each touching its own invoice or sale), so the serial fold
has one right answer.
"""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import text

from stockledger.testing import WorkerProcess, settle, stream_lag, tenant_records, wait_for
from streams.core import credit as cr
from streams.core import stock as sk
from streams.core.ledger import LedgerError, book_payment, book_sale
from streams.core.pricing import CatalogItem, price_lines
from streams.core.refunds import RefundError, RefundRequest, RefundState, book_refund
from streams.core.sales import Sale

BASE = 1_780_000_000_000
POS_SKUS = [f"P{n:02d}" for n in range(20)]  # inventory events and POS sales: commute by timestamp
ORDER_SKUS = [f"O{n:02d}" for n in range(10)]  # web orders: plenty of stock, never counted
INACTIVE = ["X00", "X01"]
UNLIMITED = [f"U{n}" for n in range(1, 9)]
CUSTOMERS = {**{c: ("0", False) for c in UNLIMITED}, "H1": ("50000", True), "T1": ("1.00", False)}


def _catalog(tenant: str) -> list[dict]:
    def group(gid: str, skus: list[str], qty: int, active: bool) -> dict:
        return {"event_id": f"cat-{gid}", "event_type": "catalog.update", "tenant_id": tenant, "timestamp": BASE,
                "data": {"product_group_id": gid, "group_name": gid, "is_active": active, "tax_rate": "16",
                         "variants": [{"sku": s, "display_name": s, "price": f"{10 + i}.{i % 100:02d}",
                                       "stock_quantity": qty} for i, s in enumerate(skus)]}}
    return [group("GP", POS_SKUS, 100, True), group("GO", ORDER_SKUS, 1_000_000, True),
            group("GX", INACTIVE, 100, False)]


def _customers(tenant: str) -> list[dict]:
    return [{"event_id": f"cc-{c}", "event_type": "customer.credit", "tenant_id": tenant, "timestamp": BASE,
             "data": {"customer_ref": c, "credit_limit": limit, "on_hold": hold}} for c, (limit, hold) in CUSTOMERS.items()]


def build(tenant: str, n: int, seed: int = 5) -> tuple[list[dict], list[dict], list[dict]]:
    """Three phases of unique events: stock and sales, then payments, then refunds."""
    rng = random.Random(seed)
    phase1: list[dict] = []
    sales: list[dict] = []
    for i in range(int(n * 0.82)):
        ts = BASE + 1000 + i * 1000
        roll = rng.random()
        if roll < 0.35:
            data: dict = {"sku": rng.choice(POS_SKUS)}
            if rng.random() < 0.15:
                data["new_quantity"] = rng.randrange(0, 200)
            else:
                data["quantity_change"] = rng.choice([-5, -2, -1, 1, 3, 8])
            phase1.append({"event_id": f"inv{i}", "event_type": "inventory.change", "tenant_id": tenant,
                           "timestamp": ts, "data": data})
            continue
        sid = f"S{i}"
        if roll < 0.65:  # POS
            terms = "ON_ACCOUNT" if rng.random() < 0.1 else "PAID"
            lines = [{"sku": rng.choice(POS_SKUS), "quantity": rng.randint(1, 3)} for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.1:
                lines.append({"sku": f"UNK{i}", "quantity": 1, "unit_price": "5.55"})  # unknown SKU, priced
            data = {"sale_id": sid, "channel": "POS", "currency": "KES", "payment_terms": terms, "line_items": lines}
            if terms == "ON_ACCOUNT":
                data["customer_ref"] = rng.choice(UNLIMITED)
            kind = "sale.completed"
        else:  # web order
            terms = rng.choice(["PAID", "ON_ACCOUNT", "ON_ACCOUNT"])
            lines = [{"sku": rng.choice(ORDER_SKUS), "quantity": rng.randint(1, 4),
                      "discount_percent": rng.choice([None, "5", "12.5"])} for _ in range(rng.randint(1, 4))]
            bad = rng.random()
            if bad < 0.05:
                lines.append({"sku": rng.choice(INACTIVE), "quantity": 1})
            elif bad < 0.1:
                lines.append({"sku": f"NOPE{i}", "quantity": 1})
            elif bad < 0.13:
                lines.append({"sku": rng.choice(ORDER_SKUS), "quantity": 5_000_000})
            for line in lines:
                if line.get("discount_percent") is None:
                    line.pop("discount_percent", None)
            data = {"sale_id": sid, "channel": "WEB", "currency": "KES", "payment_terms": terms, "line_items": lines}
            if terms == "ON_ACCOUNT":
                data["customer_ref"] = rng.choice([*UNLIMITED, "H1", "T1"])
            kind = "order.placed"
        event = {"event_id": f"ev{sid}", "event_type": kind, "tenant_id": tenant, "timestamp": ts, "data": data}
        phase1.append(event)
        sales.append(event)
    # Payments and refunds: each names its own document and at most one touches a given invoice or
    # sale, so every outcome is the same whatever order partitions deliver them in.
    phase2, phase3 = [], []
    on_account = [s for s in sales if s["data"].get("customer_ref") in UNLIMITED]
    for j, s in enumerate(rng.sample(on_account, min(len(on_account), int(n * 0.08)))):
        d = s["data"]
        phase2.append({"event_id": f"pay{j}", "event_type": "payment.received", "tenant_id": tenant,
                       "timestamp": BASE + 10_000_000 + j,
                       "data": {"payment_id": f"PM{j}", "customer_ref": d["customer_ref"],
                                "invoice_id": f"INV-{d['sale_id']}",
                                "amount": f"{rng.randint(1, 400)}.{rng.randint(0, 99):02d}", "currency": "KES",
                                "method": rng.choice(["CASH", "BANK", "MOBILE"])}})
    wanted = n - len(phase1) - len(phase2) - len(_catalog(tenant)) - len(CUSTOMERS)
    for k, s in enumerate(rng.sample(sales, min(len(sales), wanted))):
        s = s["data"]
        lines = [{"sku": li["sku"], "quantity": rng.randint(1, 2)} for li in s["line_items"][:2]]
        method = "CREDIT" if s["payment_terms"] == "ON_ACCOUNT" and rng.random() < 0.5 else "CASH"
        phase3.append({"event_id": f"ref{k}", "event_type": "refund.issued", "tenant_id": tenant,
                       "timestamp": BASE + 20_000_000 + k,
                       "data": {"refund_id": f"RF{k}", "sale_id": s["sale_id"], "lines": lines,
                                "restock": rng.random() < 0.6, "refund_method": method}})
    return phase1, phase2, phase3


def _dec(v):
    return None if v is None else Decimal(str(v))


def serial(tenant: str, phases: list[list[dict]]) -> dict:
    """The pure core over the unique events in order: the one right answer."""
    stock: dict[str, sk.StockState] = {}
    catalog: dict[str, CatalogItem] = {}
    credit = {c: cr.CreditState(tenant, c) for c in CUSTOMERS}
    docs: dict[str, tuple] = {}
    sales: dict[str, dict] = {}

    def st(sku: str) -> sk.StockState:
        return stock.get(sku) or sk.StockState(tenant, sku)

    for e in _catalog(tenant):
        for v in e["data"]["variants"]:
            catalog[v["sku"]] = CatalogItem(v["sku"], Decimal(v["price"]), Decimal("16"), e["data"]["is_active"])
            stock[v["sku"]] = sk.apply_absolute(st(v["sku"]), v["stock_quantity"], e["timestamp"], e["event_id"]).state
    for e in _customers(tenant):
        d = e["data"]
        credit[d["customer_ref"]] = cr.set_terms(credit[d["customer_ref"]], Decimal(d["credit_limit"]), d["on_hold"]).state
    for e in [x for phase in phases for x in phase]:
        d, ts = e["data"], e["timestamp"]
        if e["event_type"] == "inventory.change":
            if d.get("new_quantity") is not None:
                stock[d["sku"]] = sk.apply_absolute(st(d["sku"]), d["new_quantity"], ts, e["event_id"]).state
            else:
                stock[d["sku"]] = sk.apply_delta(st(d["sku"]), d["quantity_change"], ts, e["event_id"]).state
        elif e["event_type"] in ("sale.completed", "order.placed"):
            sale = Sale.from_event(tenant, {**d, "line_items": [{**li, "unit_price": _dec(li.get("unit_price")),
                                                                 "discount_percent": _dec(li.get("discount_percent"))}
                                                                for li in d["line_items"]]})
            wanted: dict[str, int] = {}
            for li in sale.lines:
                wanted[li.sku] = wanted.get(li.sku, 0) + li.quantity
            if e["event_type"] == "order.placed":
                ok = all(s in catalog and catalog[s].is_active and st(s).available >= q for s, q in wanted.items())
                priced = price_lines(sale.lines, "KES", catalog.get, Decimal(0))
                if ok and sale.payment_terms == "ON_ACCOUNT":
                    ok = cr.check_order(credit[sale.customer_ref], priced.total).approved
                if not ok:
                    sales[sale.sale_id] = {"status": "REFUSED"}
                    continue
            else:
                priced = price_lines(sale.lines, "KES", catalog.get, Decimal(0))
            booking = book_sale(sale, priced, ts)
            assert not isinstance(booking, LedgerError)
            for s, q in wanted.items():
                stock[s] = sk.apply_delta(st(s), -q, ts, e["event_id"], kind=sk.SALE).state
            inv = booking.invoice
            docs[inv.invoice_id] = ("invoice", str(inv.total))
            docs[booking.journal.entry_id] = ("journal", str(sum(li.debit for li in booking.journal.lines)))
            for pay in booking.payments:
                docs[pay.payment_id] = ("payment", str(pay.amount))
            if sale.payment_terms == "ON_ACCOUNT":
                credit[sale.customer_ref] = cr.add_invoice(credit[sale.customer_ref], inv.invoice_id, inv.issued_at,
                                                           inv.currency, inv.total).state
            sales[sale.sale_id] = {"status": "ACCEPTED", "invoice": inv, "refunds": RefundState()}
        elif e["event_type"] == "payment.received":
            received = cr.PaymentReceived.from_event({**d, "amount": Decimal(d["amount"])})
            result = cr.apply_payment(credit[d["customer_ref"]], received.payment_id, received.amount,
                                      received.invoice_id, "KES")
            if result.status == cr.APPLIED:
                credit[d["customer_ref"]] = result.state
                b = book_payment(tenant, received, result.allocations, ts)
                docs[b.payment.payment_id] = ("payment", str(b.payment.amount))
                docs[b.journal.entry_id] = ("journal", str(sum(li.debit for li in b.journal.lines)))
        elif e["event_type"] == "refund.issued":
            rec = sales.get(d["sale_id"])
            if rec is None or rec["status"] != "ACCEPTED":
                continue
            b = book_refund(rec["invoice"], rec["refunds"], RefundRequest.from_event(d), ts)
            if isinstance(b, RefundError):
                continue
            rec["refunds"] = b.state
            note = b.credit_note
            docs[note.credit_note_id] = ("credit_note", str(note.total))
            docs[b.journal.entry_id] = ("journal", str(sum(li.debit for li in b.journal.lines)))
            for s, q in b.restock:
                stock[s] = sk.apply_delta(st(s), q, ts, e["event_id"], kind=sk.RESTOCK).state
            inv = rec["invoice"]
            if d["refund_method"] == "CREDIT" and inv.payment_terms == "ON_ACCOUNT":
                credit[inv.customer_ref] = cr.apply_credit_refund(credit[inv.customer_ref], d["refund_id"],
                                                                  inv.invoice_id, note.total).state
    return {"stock": {s: v.on_hand for s, v in stock.items()},
            "outstanding": {c: str(v.outstanding) for c, v in credit.items()}, "docs": docs}


def _redeliver(events: list[dict], rng: random.Random, share: float = 0.05) -> list[dict]:
    """Every event once, plus `share` of them again a little later (a producer retry)."""
    out = list(events)
    for e in rng.sample(events, int(len(events) * share)):
        out.insert(min(len(out), out.index(e) + rng.randint(1, 50)), e)
    return out


def test_mixed_events_with_crashes_match_the_serial_fold(worker, publish, settings, tenant):
    rng = random.Random(9)
    phase1, phase2, phase3 = build(tenant, 19_000)
    expected = serial(tenant, [phase1, phase2, phase3])
    publish("catalog.updates", _catalog(tenant))
    publish("customers", _customers(tenant))
    settle(settings)

    # phase 1: stock and sales; a second worker joins after the first quarter, the first is killed twice
    stream = _redeliver(phase1, rng)
    by_topic = {"inventory.change": "inventory.changes", "sale.completed": "sales", "order.placed": "sales"}
    total = len(stream)
    chunk = total // 4
    second = WorkerProcess(settings, "w2", worker.web_port + 1)
    try:
        for n in range(4):
            part = stream[n * chunk:(n + 1) * chunk if n < 3 else total]
            for topic in ("inventory.changes", "sales"):
                publish(topic, [e for e in part if by_topic[e["event_type"]] == topic])
            if n == 0:
                second.start().wait_ready(180)
            if n in (1, 2):  # kill mid-stream: some but not all of it is committed
                wait_for(lambda: stream_lag(settings) < chunk // 2, 300,
                         "progress before the kill", interval=0.3)
                worker.kill()
                worker.start().wait_ready(180)
        # phases 2 and 3 (their outcomes depend on phase 1 being complete), with redeliveries too
        settle(settings, timeout=900)
        payments = _redeliver(phase2, rng)
        publish("payments", payments[:len(payments) // 2])
    finally:
        second.stop()  # leaves while payments are in flight
    publish("payments", payments[len(payments) // 2:])
    settle(settings, timeout=600)
    publish("refunds", _redeliver(phase3, rng))
    settle(settings, timeout=600)

    got_stock = {s: worker.get(f"/stock/{s}", tenant=tenant).json() for s in expected["stock"]}
    assert {s: v["on_hand"] for s, v in got_stock.items()} == expected["stock"]
    stray = {s: v["holds"] for s, v in got_stock.items() if v["reserved"] or v["holds"]}
    assert stray == {}, {s: [(h, worker.get(f"/sales/{h['hold_id'].split(':', 1)[1]}", tenant=tenant).json())
                             for h in holds] for s, holds in stray.items()}
    got_credit = {c: worker.get(f"/credit/{c}", tenant=tenant).json()["outstanding"] for c in CUSTOMERS}
    assert got_credit == {c: f"{Decimal(v):.2f}" for c, v in expected["outstanding"].items()}

    docs: dict[str, tuple] = {}
    counts: dict[str, int] = {}
    for topic, kind, total_field in (("ledger.invoices", "invoice", "total"), ("ledger.payments", "payment", "amount"),
                                     ("ledger.credit_notes", "credit_note", "total"), ("ledger.journal", "journal", None)):
        for r in tenant_records(settings, topic, tenant):
            v = r["value"]
            doc_id = r["key"].split(":", 1)[1]
            amount = v[total_field] if total_field else str(sum(Decimal(li["debit"]) for li in v["lines"]))
            if doc_id in docs:
                assert docs[doc_id] == (kind, str(Decimal(amount)))  # a redelivery carries the same document
            docs[doc_id] = (kind, str(Decimal(amount)))
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "journal":
                assert sum(Decimal(li["debit"]) for li in v["lines"]) == sum(Decimal(li["credit"]) for li in v["lines"])
    want = {k: (kind, str(Decimal(a))) for k, (kind, a) in expected["docs"].items()}
    assert set(docs) == set(want)  # no document missing, none extra
    assert docs == want
    assert len(want) > 8000
    # the books: a sink reading the ledger topics (with every redelivered document on them) writes
    # each document exactly once
    assert books(settings, tenant) == {k: (kind, Decimal(a)) for k, (kind, a) in want.items()}


def books(settings, tenant: str) -> dict[str, tuple]:
    """Every document of `tenant` as a fresh PostgreSQL sink writes it: id -> (kind, Decimal amount)."""
    from tests.connectors import support

    name = support.create_database(settings.pg_port)
    url = support.database_url(settings.pg_port, name)
    engine = support.new_engine(url)
    group = f"crash-books-{name}"
    try:
        with support.SinkThread(settings, url, "", group):
            support.wait_caught_up(engine, group, settings, list(support.LEDGER_TOPICS), timeout=600)
        got: dict[str, tuple] = {}
        with engine.connect() as conn:
            for kind, sql in (("invoice", "SELECT invoice_id, total FROM invoices WHERE tenant_id = :t"),
                              ("credit_note", "SELECT credit_note_id, total FROM credit_notes WHERE tenant_id = :t"),
                              ("payment", "SELECT payment_id, amount FROM payments WHERE tenant_id = :t"),
                              ("journal", "SELECT entry_id, sum(debit) FROM journal_lines WHERE tenant_id = :t "
                                          "GROUP BY entry_id HAVING sum(debit) = sum(credit)")):
                for doc_id, amount in conn.execute(text(sql), {"t": tenant}):
                    assert doc_id not in got
                    got[doc_id] = (kind, amount)
        return got
    finally:
        engine.dispose()
        support.drop_database(settings.pg_port, name)
