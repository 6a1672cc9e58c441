"""About 20k mixed events for two tenants, published while the worker is SIGKILLed five times, a
second worker joins and leaves and the broker is SIGKILLed once: at the end a worker with an empty
state folder, restored from the changelog alone, answers exactly what the pure core's serial fold of
the tenant log (in its order) computes, and every output topic carries exactly the fold's outputs.
A real sink process writes the ledger topics into a database of its own meanwhile: its books (row
counts, every account's balance per tenant, every on-account invoice's settled state) are the serial
fold's, they reconcile (SPEC 2), and `stockledger books check` exits 0 for each tenant.

The workload has no "one right answer whatever the order": duplicates early and late, conflicting
event ids, stale counts, late deltas, orders racing for the last units of scarce SKUs, payments
published the moment their sale's outcome is visible (whatever order that gives), oldest-first
payments, CREDIT and CASH refunds, over-refunds and overpayments, and (SPEC 8) shipments, cancellations
and releases of earlier orders, one tenant configured RESERVE and HOLD by a tenant.configured, and (SPEC 9) price
lists interleaved with the orders of the customers they price (quantity breaks, validity windows, stale versions,
customers moving between lists). The books compared include the shipments and each line's price source. The reference is
`streams.core.fold.serial_fold` over the tenant log as it was written, so the comparison is exact
whatever order the log ended up in.

On a difference the test prints which key differs (expected, got), then, per tenant, the first
tenant-log entries whose reference outputs are missing from the output topics: where the worker's
decisions began to leave the serial fold. Run with STOCKLEDGER_TEST_WORKER_LOGLEVEL=info to keep
the workers' session lines (`state ...: session ... from tenant-log offset ...`) in their logs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from confluent_kafka import Producer
from sqlalchemy import text

from cli.testing import OutcomeFollower, WorkerProcess, free_port, read_topic, settle
from stockledger.db import migrate
from stockledger.produce import prepare, producer_config
from stockledger.topics import tenant_log_topic
from streams import tenantlog
from streams.core.credit import open_invoices_of
from streams.core.fold import (
    DeadLetter,
    DictState,
    Emit,
    FoldConfig,
    Input,
    catalog_of,
    credit_of,
    fold,
    sale_of,
    serial_fold,
    stock_of,
)
from streams.core.stock import StockState
from streams.fold import fold_config
from streams.web import credit_view, sale_view, stock_view, tenant_partition
from tests.connectors import support as sink_support
from tests.streams.core.bookskit import balances, differences

BASE = 1_790_000_000_000
TOPIC = {"inventory.change": "inventory.changes", "sale.completed": "sales", "order.placed": "sales",
         "refund.issued": "refunds", "payment.received": "payments", "customer.credit": "customers",
         "catalog.update": "catalog.updates", "order.shipped": "sales", "order.cancelled": "sales",
         "order.released": "sales", "tenant.configured": "tenant.settings", "price_list.updated": "price.lists"}
P_SKUS = [f"P{n:03d}" for n in range(150)]  # counted, adjusted and sold at the till
R_SKUS = [f"R{n:02d}" for n in range(20)]  # scarce: web orders race for their last units
O_SKUS = [f"O{n:02d}" for n in range(40)]  # web orders, plenty in stock
X_SKUS = ["X0", "X1", "X2"]  # inactive
UNLIMITED = [f"U{n}" for n in range(1, 9)]
LIMITED = {"L1": "300", "L2": "800", "L3": "800", "L4": "2000", "L5": "5000", "L6": "5000"}
ON_HOLD = ["H1"]
LEDGER = ("ledger.invoices", "ledger.credit_notes", "ledger.payments", "ledger.journal", "ledger.external_refs",
          "ledger.shipments")
# SPEC 9: customers who buy from a price list (customer.credit's price_list_id); the lists' updates are interleaved
# with their orders, and now and then a customer moves to the other list
ON_LIST = {"U1": "PL-A", "U2": "PL-A", "L2": "PL-A", "L4": "PL-A", "U3": "PL-B", "L5": "PL-B", "H1": "PL-B"}
LISTS = ("PL-A", "PL-B")
PUBLISH_SECONDS = 110  # the main stream is published over this long, while the faults happen


def _money(rng: random.Random, lo: int, hi: int) -> str:
    return f"{rng.randint(lo, hi)}.{rng.randint(0, 99):02d}"


# -- the workload -------------------------------------------------------------------------------
@dataclass
class Plan:
    tenant: str
    stream: list[tuple[str, dict]] = field(default_factory=list)  # (topic, event) in publish order
    on_account: dict[str, int] = field(default_factory=dict)  # ON_ACCOUNT sale_id -> its timestamp
    sale_ids: set[str] = field(default_factory=set)


def setup_events(tenant: str, reserve: bool = False) -> list[tuple[str, dict]]:
    def group(gid: str, skus: list[str], price: Callable[[int], str], qty: Callable[[int], int],
              active: bool = True) -> tuple[str, dict]:
        return "catalog.updates", {
            "event_id": f"cat-{gid}", "event_type": "catalog.update", "tenant_id": tenant, "timestamp": BASE,
            "data": {"product_group_id": gid, "group_name": gid, "is_active": active, "tax_rate": "16",
                     "variants": [{"sku": s, "display_name": s, "price": price(i), "stock_quantity": qty(i)}
                                  for i, s in enumerate(skus)]}}

    customers = {**{c: ("0", False) for c in UNLIMITED}, **{c: (v, False) for c, v in LIMITED.items()},
                 **{c: ("10000", True) for c in ON_HOLD}}
    on_list = {c: {"price_list_id": ON_LIST[c]} if c in ON_LIST else {} for c in customers}
    # SPEC 8: one tenant reserves its orders and holds those over credit; the other keeps the defaults
    settings = [("tenant.settings", {"event_id": "cfg-1", "event_type": "tenant.configured", "tenant_id": tenant,
                                     "timestamp": BASE, "data": {"order_fulfilment": "RESERVE",
                                                                 "credit_policy": "HOLD"}})] if reserve else []
    return settings + [group("GP", P_SKUS, lambda i: f"{5 + i % 55}.{(i * 7) % 100:02d}", lambda i: 40 + i % 60),
            group("GR", R_SKUS, lambda i: f"{50 + i * 5}.00", lambda i: 3 + i % 5),
            group("GO", O_SKUS, lambda i: f"{20 + i * 4}.{(i * 13) % 100:02d}", lambda i: 1_000_000),
            group("GX", X_SKUS, lambda i: "9.99", lambda i: 100, active=False)] + [
        ("customers", {"event_id": f"cc-{c}", "event_type": "customer.credit", "tenant_id": tenant,
                       "timestamp": BASE, "data": {"customer_ref": c, "credit_limit": limit, "on_hold": hold,
                                                   **on_list[c]}})
        for c, (limit, hold) in customers.items()]


def build(tenant: str, n: int, seed: int) -> Plan:
    """`n` unique events of one tenant, plus duplicates (early and late) and conflicting event ids."""
    rng = random.Random(seed)
    plan = Plan(tenant)
    base: list[dict] = []
    last_count: dict[str, int] = {}
    sales: list[tuple[int, dict]] = []
    lists: dict[str, str | None] = dict(ON_LIST)  # each customer's list as the events so far set it

    def ev(kind: str, eid: str, ts: int, data: dict) -> dict:
        return {"event_id": eid, "event_type": kind, "tenant_id": tenant, "timestamp": ts, "data": data}

    for i in range(n):
        ts = BASE + (i + 1) * 1000
        roll = rng.random()
        if roll < 0.33:
            sku = rng.choice(R_SKUS) if rng.random() < 0.2 else rng.choice(P_SKUS)
            scarce = sku in R_SKUS
            sub = rng.random()
            if sub < 0.08:
                data = {"sku": sku, "new_quantity": rng.randint(0, 6 if scarce else 150)}
                last_count[sku] = ts
            elif sub < 0.13 and sku in last_count:  # stale count: older than the latest count
                ts = last_count[sku] - 500 - rng.randrange(30) * 1000
                data = {"sku": sku, "new_quantity": rng.randint(0, 150)}
            elif sub < 0.20 and sku in last_count:  # late delta: stamped before the latest count
                ts = last_count[sku] - 300 - rng.randrange(30) * 1000
                data = {"sku": sku, "quantity_change": rng.choice([-2, -1, 1, 3])}
            else:
                data = {"sku": sku, "quantity_change": rng.choice([1, 1, 2, 3] if scarce else [-3, -2, -1, 1, 2, 4, 6])}
            base.append(ev("inventory.change", f"inv{i}", ts, data))
        elif roll < 0.82:
            sid = f"S{i}"
            pos = roll < 0.60
            if pos:
                terms = "ON_ACCOUNT" if rng.random() < 0.25 else "PAID"
                lines: list[dict] = [{"sku": rng.choice(P_SKUS), "quantity": rng.randint(1, 3)}
                                     for _ in range(rng.randint(1, 4))]
                odd = rng.random()
                if odd < 0.08:
                    lines.append({"sku": f"UNK{i}", "quantity": 1, "unit_price": "5.55"})  # unknown SKU, priced
                elif odd < 0.10:
                    lines.append({"sku": f"NOPRICE{i}", "quantity": 1})  # unknown, no price: NO_PRICE
                data = {"sale_id": sid, "channel": "POS", "currency": "KES", "payment_terms": terms,
                        "line_items": lines}
                if terms == "ON_ACCOUNT":
                    data["customer_ref"] = rng.choice([*UNLIMITED, *LIMITED])
                elif rng.random() < 0.03:
                    data["payments"] = [{"method": "CASH", "amount": "1.00"}]  # PAYMENT_MISMATCH
            else:
                terms = "ON_ACCOUNT" if rng.random() < 0.6 else "PAID"
                if rng.random() < 0.4:  # racing for the last units of a scarce SKU
                    lines = [{"sku": rng.choice(R_SKUS), "quantity": rng.randint(1, 3)}
                             for _ in range(rng.randint(1, 2))]
                else:
                    lines = [{"sku": rng.choice(O_SKUS), "quantity": rng.randint(1, 5)}
                             for _ in range(rng.randint(1, 4))]
                for line in lines:
                    if rng.random() < 0.2:
                        line["discount_percent"] = rng.choice(["5", "12.5"])
                bad = rng.random()
                if bad < 0.04:
                    lines.append({"sku": rng.choice(X_SKUS), "quantity": 1})
                elif bad < 0.07:
                    lines.append({"sku": f"NOPE{i}", "quantity": 1})
                data = {"sale_id": sid, "channel": "WEB", "currency": "KES", "payment_terms": terms,
                        "line_items": lines}
                if terms == "ON_ACCOUNT":
                    data["customer_ref"] = rng.choice([*UNLIMITED, *LIMITED, *LIMITED, *ON_HOLD])
            e = ev("sale.completed" if pos else "order.placed", f"ev{sid}", ts, data)
            base.append(e)
            sales.append((i, e))
            plan.sale_ids.add(sid)
            if terms == "ON_ACCOUNT":
                plan.on_account[sid] = ts
        elif roll < 0.92 and rng.random() < 0.35:  # SPEC 8: ship, cancel or release an earlier order
            orders = [s for k, s in sales if k <= i - 50 and s["event_type"] == "order.placed"]
            if not orders:
                base.append(ev("order.shipped", f"evSH{i}", ts, {"sale_id": f"NOSALE{i}", "shipment_id": f"SH{i}",
                                                                 "lines": [{"sku": "O00", "quantity": 1}]}))
                continue
            o = rng.choice(orders)["data"]
            line = rng.choice(o["line_items"])
            what = rng.random()
            if what < 0.55:
                qty = rng.randint(1, line["quantity"] + (1 if rng.random() < 0.1 else 0))  # now and then too many
                base.append(ev("order.shipped", f"evSH{i}", ts, {"sale_id": o["sale_id"], "shipment_id": f"SH{i}",
                                                                 "lines": [{"sku": line["sku"], "quantity": qty}]}))
            elif what < 0.85:
                lines = None if rng.random() < 0.5 else [{"sku": line["sku"], "quantity": 1}]
                base.append(ev("order.cancelled", f"evCX{i}", ts, {"sale_id": o["sale_id"],
                                                                   "cancellation_id": f"CX{i}", "lines": lines}))
            else:
                base.append(ev("order.released", f"evRL{i}", ts, {"sale_id": o["sale_id"],
                                                                  "released_by": "credit-desk"}))
        elif roll < 0.92:
            rid = f"RF{i}"
            older = [s for k, s in sales if k <= i - 300]
            if not older or rng.random() < 0.03:
                data = {"refund_id": rid, "sale_id": f"NOSALE{i}", "lines": [{"sku": "P000", "quantity": 1}],
                        "restock": False, "refund_method": "CASH"}
            else:
                s = rng.choice(older)["data"]
                sold: dict[str, int] = {}
                for li in s["line_items"]:
                    sold[li["sku"]] = sold.get(li["sku"], 0) + li["quantity"]
                skus = rng.sample(sorted(sold), min(len(sold), rng.randint(1, 2)))
                over = rng.random() < 0.12
                lines = [{"sku": k, "quantity": sold[k] + rng.randint(1, 3) if over else rng.randint(1, sold[k])}
                         for k in skus]
                if s["payment_terms"] == "ON_ACCOUNT":
                    method = "CREDIT" if rng.random() < 0.5 else "CASH"
                else:
                    method = "CREDIT" if rng.random() < 0.05 else rng.choice(["CASH", "CARD", "MOBILE"])
                data = {"refund_id": rid, "sale_id": s["sale_id"], "lines": lines, "restock": rng.random() < 0.6,
                        "refund_method": method}
            base.append(ev("refund.issued", f"ev{rid}", ts, data))
        elif roll < 0.97:  # oldest-first: no invoice named
            amount = "250000.00" if rng.random() < 0.15 else _money(rng, 5, 400)
            base.append(ev("payment.received", f"evPO{i}", ts,
                           {"payment_id": f"PO{i}", "customer_ref": rng.choice([*UNLIMITED, *LIMITED]),
                            "amount": amount, "currency": "KES", "method": rng.choice(["CASH", "BANK", "MOBILE"])}))
        elif roll < 0.976:
            c = rng.choice([*LIMITED, *ON_HOLD])
            listed = {"price_list_id": lists[c]} if c in lists else {}
            if rng.random() < 0.2:  # SPEC 9: the customer moves to another list, or off lists
                lists[c] = rng.choice([*LISTS, None])
                listed = {"price_list_id": lists[c]}
            base.append(ev("customer.credit", f"cc{i}", ts,
                           {"customer_ref": c, "credit_limit": rng.choice(["500", "1500", "4000", "0"]),
                            "on_hold": rng.random() < 0.3, **listed}))
        elif roll < 0.978:  # a price change, or a stale one (older than the catalog it would replace)
            stamp = ts if rng.random() < 0.6 else BASE - 1000
            skus = rng.sample(O_SKUS, 5)
            base.append(ev("catalog.update", f"cat{i}", stamp,
                           {"product_group_id": "GO", "group_name": "GO", "is_active": True, "tax_rate": "16",
                            "variants": [{"sku": s, "display_name": s, "price": _money(rng, 15, 220)}
                                         for s in skus]}))
        elif roll < 0.99:  # SPEC 9: a price list, whole, among the orders of the customers it prices
            stamp = ts if rng.random() < 0.9 else ts - rng.randint(50, 3000) * 1000  # stale: loses to a newer one
            base.append(ev("price_list.updated", f"pl{i}", stamp, price_list(rng, stamp)))
        else:
            base.append(ev("inventory.change", f"inv{i}", ts,
                           {"sku": rng.choice(P_SKUS), "quantity_change": rng.choice([-1, 2, 5])}))

    placed: list[tuple[float, dict]] = [(float(k), e) for k, e in enumerate(base)]
    for k, e in enumerate(base):
        r = rng.random()
        if r < 0.05:  # the same event published again: soon after, or thousands of events later
            later = rng.randint(1, 30) if rng.random() < 0.6 else rng.randint(2000, 6000)
            placed.append((k + later + 0.5, e))
        elif r < 0.065:
            placed.append((k + rng.randint(1, 400) + 0.25, _conflict(e, rng)))
    placed.sort(key=lambda x: x[0])
    plan.stream = [(TOPIC[e["event_type"]], e) for _, e in placed]
    return plan


def price_list(rng: random.Random, ts: int) -> dict:
    """A price_list.updated's data: some SKUs of the web orders, the scarce ones and the till's, a quantity break
    on some; now and then a window that has passed or not begun, a stale version (older than the list it would
    replace) or a list in another currency (it prices nothing here). (A list that breaks the rules never reaches
    the tenant log: admission dead-letters it, outside this comparison.)"""
    skus = rng.sample(O_SKUS, 20) + rng.sample(R_SKUS, 10) + rng.sample(P_SKUS, 30)
    items = []
    for sku in skus:
        items.append({"sku": sku, "unit_price": _money(rng, 5, 200)})
        if rng.random() < 0.4:
            items.append({"sku": sku, "unit_price": _money(rng, 2, 150), "min_quantity": rng.choice([2, 3])})
    data: dict[str, Any] = {"price_list_id": rng.choice(LISTS), "currency": "USD" if rng.random() < 0.05 else "KES",
                            "items": items}
    window = rng.random()
    if window < 0.1:
        data["valid_to"] = ts - rng.randint(1, 50) * 1000  # over already
    elif window < 0.2:
        data["valid_from"] = ts + rng.randint(1, 400) * 1000  # applies to orders some time later
    elif window < 0.3:
        data["valid_from"], data["valid_to"] = ts - 1000, ts + rng.randint(20, 300) * 1000
    return data


def _conflict(e: dict, rng: random.Random) -> dict:
    """An event reusing `e`'s event id with other content, or `e`'s business id under another event id."""
    kind, data = e["event_type"], json.loads(json.dumps(e["data"]))
    other = {**e, "data": data}
    if kind == "inventory.change":
        if data.get("new_quantity") is not None:
            data["new_quantity"] += 1
        else:
            data["quantity_change"] += 1 if data["quantity_change"] != -1 else 2  # never 0: that is not valid
    elif kind in ("sale.completed", "order.placed"):
        if rng.random() < 0.5:
            data["line_items"][0]["quantity"] += 1  # same event id, other content
        else:
            other["event_id"] = f"x-{e['event_id']}"  # same sale_id, another event id
    elif kind == "refund.issued":
        data["lines"][0]["quantity"] += 1
    elif kind == "price_list.updated":
        data["items"][0]["unit_price"] = str(Decimal(data["items"][0]["unit_price"]) + 1)  # same event id: a letter
    elif kind in ("order.shipped", "order.cancelled", "order.released"):
        other["event_id"] = f"x-{e['event_id']}"  # its shipment / cancellation / release under another event id
    elif kind == "payment.received":
        r = rng.random()
        if r < 0.4:
            data["amount"] = str(Decimal(data["amount"]) + 1)  # same event id, other amount
        elif r < 0.8:
            other["event_id"] = f"x-{e['event_id']}"  # same payment_id, other amount
            data["amount"] = str(Decimal(data["amount"]) + 2)
        else:
            other["event_id"] = f"x-{e['event_id']}"  # same payment_id and content: a duplicate
    else:  # catalog, customers: a dead letter (stage idempotency)
        if kind == "customer.credit":
            data["on_hold"] = not data["on_hold"]
        else:
            data["group_name"] = data["group_name"] + "-changed"
    return other


def interleave(rng: random.Random, *streams: list) -> list:
    """The streams merged, each in its own order."""
    iters = [list(reversed(s)) for s in streams]
    out = []
    while any(iters):
        weights = [len(s) for s in iters]
        pick = rng.choices(range(len(iters)), weights)[0]
        out.append(iters[pick].pop())
    return out


def payments_for(tenants_plans: dict[str, Plan]) -> Callable[[dict], list[tuple[str, dict]]]:
    """What a client does on seeing an outcome: pay an ACCEPTED ON_ACCOUNT sale's invoice at once
    (in full, in part, too much, or in full twice), or not at all."""
    done: set[tuple[str, str]] = set()

    def react(outcome: dict) -> list[tuple[str, dict]]:
        tenant, sid = outcome["tenant_id"], outcome.get("sale_id")
        if outcome["kind"] != "SALE" or outcome["outcome"] != "ACCEPTED" or (tenant, sid) in done:
            return []
        plan = tenants_plans[tenant]
        if sid not in plan.on_account:
            return []
        done.add((tenant, sid))
        rng = random.Random(f"pay:{tenant}:{sid}")
        r = rng.random()
        if r < 0.35:
            return []
        total = outcome["total"]
        if r < 0.70:
            amount, times = total, 1
        elif r < 0.82:
            amount, times = max(Decimal("0.01"), (total / 2).quantize(Decimal("0.01"))), 1
        elif r < 0.92:
            amount, times = total + 1, 1  # an overpayment
        else:
            amount, times = total, 2  # published twice
        event = {"event_id": f"evPI-{sid}", "event_type": "payment.received", "tenant_id": tenant,
                 "timestamp": plan.on_account[sid] + 1,
                 "data": {"payment_id": f"PI-{sid}", "customer_ref": outcome["customer_ref"],
                          "invoice_id": outcome["document_ids"][0], "amount": str(amount), "currency": "KES",
                          "method": rng.choice(["BANK", "MOBILE"])}}
        return [("payments", event)] * times

    return react


# -- publishing and faults ------------------------------------------------------------------------
class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {message}"
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


def encode_stream(codec: Any, stream: list[tuple[str, dict]]) -> list[tuple[str, str, bytes]]:
    """(topic, key, bytes) for every event, checked and converted as `stockledger produce` does."""
    by_topic: dict[str, list[dict]] = {}
    for topic, e in stream:
        by_topic.setdefault(topic, []).append(e)
    prepared = {t: iter(prepare(t, "<test>", events)) for t, events in by_topic.items()}
    out = []
    for topic, _ in stream:
        item = next(prepared[topic])
        out.append((topic, item.key, codec.encode(topic, item.record)))
    return out


def publish_paced(settings: Any, records: list[tuple[str, str, bytes]], seconds: float, timeline: Timeline) -> None:
    """Publish at an even pace over `seconds`, through one idempotent producer that waits out a broker outage."""
    failures: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({**producer_config(settings), "message.timeout.ms": 0})
    start = time.monotonic()
    sent = 0
    while sent < len(records):
        due = min(len(records), int(len(records) * (time.monotonic() - start) / seconds) + 1)
        while sent < due:
            topic, key, value = records[sent]
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
            except BufferError:
                producer.poll(0.05)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.05)
    timeline.note(f"published {sent} records; flushing")
    deadline = time.monotonic() + 300
    while producer.flush(5) and time.monotonic() < deadline:
        pass
    assert len(producer) == 0 and not failures, f"publishing failed: {len(producer)} undelivered, {failures[:3]}"


class Chaos(threading.Thread):
    """Runs the faults in order at their times: five SIGKILLs of the worker (each restarted at once), a
    second worker joining and leaving, the broker SIGKILLed and started again."""

    def __init__(self, rng: random.Random, stack: Any, first: WorkerProcess, second: WorkerProcess,
                 timeline: Timeline, span: float):
        super().__init__(name="chaos", daemon=True)
        self.rng, self.stack, self.first, self.second, self.timeline = rng, stack, first, second, timeline
        kills = sorted(rng.uniform(4, span) for _ in range(5))
        join = rng.uniform(8, span * 0.35)
        leave = join + rng.uniform(span * 0.25, span * 0.45)
        broker = rng.uniform(span * 0.3, span * 0.8)
        self.actions = sorted([(t, "kill") for t in kills] + [(join, "join"), (leave, "leave"), (broker, "broker")])
        self.error: BaseException | None = None
        self.done: list[str] = []
        self.running = [first]  # the workers meant to run now

    def _ready(self) -> None:
        """Every worker meant to run is ready. One whose web port was taken meanwhile (an outgoing
        connection may hold any port) starts again on a free one: that is the machine, not the pipeline."""
        for w in self.running:
            for _ in range(3):
                try:
                    w.wait_ready(240)
                    break
                except RuntimeError:
                    with open(w.logfile, "rb") as f:
                        f.seek(max(0, f.seek(0, 2) - 8192))
                        if b"address already in use" not in f.read():
                            raise
                    w.web_port = free_port(self.second.web_port + 1, self.second.web_port + 30)
                    self.timeline.note(f"{w.worker_id}: web port taken; starting again on {w.web_port}")
                    w.start()

    def run(self) -> None:
        start = time.monotonic()
        try:
            for at, action in self.actions:
                self._ready()
                time.sleep(max(0.0, start + at - time.monotonic()))
                if action == "kill":
                    time.sleep(self.rng.uniform(0, 2))
                    self.timeline.note("SIGKILL worker w1, restarting it")
                    self.first.kill()
                    self.first.start()
                elif action == "join":
                    self.second.web_port = free_port(self.second.web_port, self.second.web_port + 30)
                    self.timeline.note(f"second worker w2 joins (web port {self.second.web_port})")
                    self.second.start()
                    self.running.append(self.second)
                    self._ready()
                    self.timeline.note("w2 ready")
                elif action == "leave":
                    sig = self.rng.choice([signal.SIGTERM, signal.SIGKILL])
                    self.timeline.note(f"second worker w2 leaves ({signal.Signals(sig).name})")
                    self.running.remove(self.second)
                    self.second.kill(sig)
                else:
                    self.timeline.note("SIGKILL the broker")
                    assert self.stack.kafka.kill()
                    time.sleep(self.rng.uniform(1, 4))
                    self.timeline.note("starting the broker again")
                    self.stack.kafka.start(lambda m: None)
                    self.stack.kafka.wait(lambda m: None)
                    self.timeline.note("broker ready")
                self.done.append(action)
            self._ready()
            self.timeline.note("faults done")
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc
            self.timeline.note(f"chaos failed: {exc!r}")


# -- the books in PostgreSQL ----------------------------------------------------------------------------
class SinkBooks:
    """A real `stockledger sink` process writing the ledger topics into a database of its own, from the
    topics' end as the test begins (so that database holds this test's books only)."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.closed = False
        self.name = sink_support.create_database(settings.pg_port)
        self.url = sink_support.database_url(settings.pg_port, self.name)
        self.engine = sink_support.new_engine(self.url)
        self.group = f"crash-sink-{uuid.uuid4().hex[:8]}"
        migrate.upgrade(self.engine)
        start = sink_support.end_offsets(settings, list(LEDGER))
        with self.engine.begin() as conn:
            conn.execute(text("INSERT INTO sink_offsets (group_id, topic, partition, next_offset) "
                              "VALUES (:g, :t, :p, :o)"), [{"g": self.group, "t": t, "p": p, "o": o}
                                                           for (t, p), o in start.items()])
        self.proc = sink_support.spawn_sink(self.url, "", self.group, settings.home / f"{self.group}.log")

    def caught_up(self) -> bool:
        assert self.proc.poll() is None, sink_support.tail(self.proc)
        ends = sink_support.end_offsets(self.settings, list(LEDGER))
        return sink_support.stored_offsets(self.engine, self.group) == ends

    def compare(self, tenants: list[str], ref: DictState, emits: list[Emit]) -> list[str]:
        """PostgreSQL's books against the serial fold's outputs and state; every difference named."""
        mine = [e for e in emits if e.key.split(":", 1)[0] in tenants]
        ledger = [e for e in mine if e.topic in LEDGER]
        want_counts = {
            "invoices": len({e.key for e in ledger if e.topic == "ledger.invoices"}),
            "credit_notes": len({e.key for e in ledger if e.topic == "ledger.credit_notes"}),
            "payments": len({e.key for e in ledger if e.topic == "ledger.payments"}),
            "payment_allocations": sum(len(e.value["allocations"]) for e in ledger if e.topic == "ledger.payments"),
            "journal_entries": len({e.key for e in ledger if e.topic == "ledger.journal"}),
            "journal_lines": sum(len(e.value["lines"]) for e in ledger if e.topic == "ledger.journal"),
            "external_refs": len({e.key for e in ledger if e.topic == "ledger.external_refs"}),
            "shipments": len({e.key for e in ledger if e.topic == "ledger.shipments"}),
            "shipment_lines": sum(len(e.value["lines"]) for e in ledger if e.topic == "ledger.shipments"),
        }
        # SPEC 9: how every document line was priced; SPEC 8: what each order shipped, per SKU
        lines_of = {"ledger.invoices": "invoice_lines", "ledger.credit_notes": "credit_note_lines"}
        want_sources = Counter((lines_of[e.topic], li.get("price_source"), li.get("price_list_id"))
                               for e in {e.key: e for e in ledger if e.topic in lines_of}.values()
                               for li in e.value["lines"])
        want_shipped = Counter()
        for e in {e.key: e for e in ledger if e.topic == "ledger.shipments"}.values():
            for li in e.value["lines"]:
                want_shipped[(e.value["tenant_id"], e.value["sale_id"], li["sku"])] += li["quantity"]
        want_balances = {k: v for k, v in balances(mine).items() if v != 0}
        want_settled = {}
        for key, raw in ref.tables["invoices"].items():
            if key.split(":", 1)[0] in tenants and "total" in raw:  # an invoice (not a refund mark)
                want_settled[(raw["tenant_id"], raw["invoice_id"])] = (
                    Decimal(raw["paid"]), Decimal(raw["credited"]), _status(raw))
        with self.engine.connect() as conn:
            got_counts = {table: conn.execute(text(f"SELECT count(*) FROM {table} WHERE tenant_id = ANY(:t)"),
                                              {"t": tenants}).scalar() for table in want_counts}
            got_balances = {(t, c, a): b for t, c, a, b in conn.execute(text(
                "SELECT tenant_id, currency, account, sum(debit) - sum(credit) FROM books_journal "
                "WHERE tenant_id = ANY(:t) GROUP BY 1, 2, 3 HAVING sum(debit) <> sum(credit)"), {"t": tenants})}
            got_sources = Counter({(table, src, plist): n for table in lines_of.values()
                                   for src, plist, n in conn.execute(text(
                                       f"SELECT price_source, price_list_id, count(*) FROM {table} "
                                       "WHERE tenant_id = ANY(:t) GROUP BY 1, 2"), {"t": tenants})})
            got_shipped = Counter({(t, o, k): q for t, o, k, q in conn.execute(text(
                "SELECT tenant_id, sale_id, sku, shipped FROM books_fulfilment WHERE tenant_id = ANY(:t) "
                "AND shipped <> 0"), {"t": tenants})})
            got_settled = {(t, i): (p, c, s) for t, i, p, c, s in conn.execute(text(
                "SELECT tenant_id, invoice_id, paid_amount, credited_amount, status FROM invoices "
                "WHERE tenant_id = ANY(:t) AND payment_terms = 'ON_ACCOUNT'"), {"t": tenants})}
        problems = diff("books rows", want_counts, got_counts) + diff("books balance", want_balances, got_balances)
        problems += diff("books invoice", want_settled, got_settled)
        problems += diff("books price sources", dict(want_sources), dict(got_sources))
        problems += diff("books shipped", dict(want_shipped), dict(got_shipped))
        problems += [f"serial fold's books: {p}" for p in differences(ref, mine)]
        for tenant in tenants:
            check = subprocess.run([sys.executable, "-m", "cli.main", "books", "check", "--tenant", tenant,
                                    "--database-url", self.url], cwd=sink_support.ROOT, capture_output=True,
                                   text=True, timeout=120)
            if check.returncode != 0:
                problems.append(f"books check --tenant {tenant}: exit {check.returncode}\n{check.stdout}"
                                f"{check.stderr}")
        return problems

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.proc.poll() is None:
            sink_support.stop_sink(self.proc)
        self.engine.dispose()
        sink_support.drop_database(self.settings.pg_port, self.name)


def _status(raw: dict) -> str:
    from streams.core.credit import InvoiceEntry

    return InvoiceEntry.from_dict(raw).status


# -- the reference and the comparison -------------------------------------------------------------
def tenant_log_inputs(settings: Any, codec: Any, tenants: set[str]) -> dict[str, list[tuple[tuple, Input]]]:
    """Each tenant's events as the tenant log holds them, in log order (frames keyed by tenant), with
    where each sits in the log: (partition, frame offset, index in the frame)."""
    out: dict[str, list[tuple[tuple, Input]]] = {t: [] for t in tenants}
    for msg in read_topic(settings, tenant_log_topic(settings.app_id)):
        key = msg.key()
        tenant = key.decode() if key is not None else None
        if tenant not in out:
            continue
        for n, entry in enumerate(tenantlog.entries(msg.value())):
            out[tenant].append(((msg.partition(), msg.offset(), n),
                                Input(entry.topic, entry.partition, entry.offset, entry.key, entry.value,
                                      codec.decode(entry.value))))
    return out


def first_divergence(inputs: list[tuple[tuple, Input]], config: FoldConfig, present: Callable[[Emit], bool],
                     limit: int = 8) -> list[str]:
    """The first log entries whose reference outputs are missing from the output topics: where the
    worker's decisions began to differ from the serial fold."""
    state = DictState()
    found: list[str] = []
    for where, inp in inputs:
        for o in fold(state, inp, config):
            if isinstance(o, Emit) and not present(o):
                r = inp.record
                found.append(f"tenant-log[{where[0]}]@{where[1]} entry {where[2]} ({inp.topic}[{inp.partition}]"
                             f"@{inp.offset} {r['event_type']} {r['event_id']}): "
                             f"missing {o.topic} {canon(o.value)[:300]}")
                break
        if len(found) >= limit:
            break
    return found


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def diff(what: str, expected: dict, got: dict, limit: int = 25) -> list[str]:
    lines = []
    for key in sorted(set(expected) | set(got), key=str):
        e, g = expected.get(key, "<missing>"), got.get(key, "<missing>")
        if e != g:
            lines.append(f"{what} {key}:\n    expected {e}\n    got      {g}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more {what} differences"]
    return lines


def fetch_views(worker: WorkerProcess, requests_: list[tuple[Any, str, str]]) -> dict[Any, Any]:
    """GET every (id, path, tenant) concurrently; id -> JSON body (or the status and text)."""
    local = threading.local()

    def get(item: tuple[Any, str, str]) -> tuple[Any, Any]:
        ident, path, tenant = item
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        for _ in range(20):
            r = session.get(worker.url + path, params={"tenant": tenant}, timeout=30)
            if r.status_code != 503:
                break
            time.sleep(0.5)
        return ident, r.json() if r.status_code == 200 else {"status": r.status_code, "body": r.text}

    with ThreadPoolExecutor(6) as pool:
        return dict(pool.map(get, requests_))


def test_tenant_log_crashes_and_restore_match_the_serial_fold(worker, stack, settings, codec, request):
    timeline = Timeline()
    seed = int(os.environ.get("STOCKLEDGER_TEST_CRASH_SEED", "20261201"))  # the faults' moments and kinds
    rng = random.Random(seed)
    first = f"t-{uuid.uuid4().hex[:8]}"
    second = first
    while tenant_partition(second, settings.partitions) == tenant_partition(first, settings.partitions):
        second = f"t-{uuid.uuid4().hex[:8]}"  # on another tenant-log partition: two folds, shared by workers
    tenants = {first: build(first, 8600, seed=1), second: build(second, 8600, seed=2)}
    main = interleave(rng, *(p.stream for p in tenants.values()))
    records = encode_stream(codec, main)
    setup = encode_stream(codec, [x for t in tenants for x in setup_events(t, reserve=t == second)])
    timeline.note(f"seed {seed}; tenants {first} and {second}; {len(records)} events in the main stream")

    follower = OutcomeFollower(settings, tenants, payments_for(tenants)).start()
    helper = WorkerProcess(settings, "w2", worker.web_port + 4)
    loglevel = os.environ.get("STOCKLEDGER_TEST_WORKER_LOGLEVEL")  # e.g. info, to diagnose a failure
    if loglevel:
        worker.extra_args = helper.extra_args = ["--loglevel", loglevel]
    chaos = Chaos(rng, stack, worker, helper, timeline, PUBLISH_SECONDS)
    books = SinkBooks(settings)
    request.addfinalizer(books.close)
    try:
        publish_paced(settings, setup, 1, timeline)
        settle(settings)
        timeline.note(f"setup settled; publishing over {PUBLISH_SECONDS}s with faults at "
                      + ", ".join(f"{a}@{t:.0f}s" for t, a in chaos.actions))
        chaos.start()
        publish_paced(settings, records, PUBLISH_SECONDS, timeline)
        chaos.join(900)
        assert chaos.error is None, f"a fault step failed: {chaos.error!r}\n" + "\n".join(timeline.lines)
        assert chaos.done == [a for _, a in chaos.actions]
        worker.wait_ready(240)
        settle(settings, timeout=600)
        timeline.note("settled")
        while True:  # the payments published on seeing outcomes, and their own outcomes
            n = follower.sync()
            settle(settings, timeout=600)
            if follower.sync() == n:
                break
        timeline.note(f"follower published {follower.published} payments on seeing {follower.seen} outcomes")
    finally:
        follower.stop()
        helper.stop()
        chaos.join(1)

    # every worker stops; one with an empty state folder restores from the changelog alone
    worker.stop()
    shutil.rmtree(settings.home / "workers" / worker.worker_id, ignore_errors=True)
    worker.start().wait_ready(300)
    settle(settings)
    timeline.note("fresh worker restored from the changelog")

    # the reference: the pure core's serial fold of each tenant's log, in log order
    config = fold_config(settings)  # the same horizons as the worker
    logs = tenant_log_inputs(settings, codec, set(tenants))
    state_tables: dict[str, dict[str, Any]] = {}
    emits: list[Emit] = []
    letters: list[DeadLetter] = []
    for _tenant, inputs in logs.items():
        ref, outputs = serial_fold((inp for _, inp in inputs), config)
        for table, rows in ref.tables.items():
            state_tables.setdefault(table, {}).update(rows)
        emits += [o for o in outputs if isinstance(o, Emit)]
        letters += [o for o in outputs if isinstance(o, DeadLetter)]
    ref = DictState(state_tables)
    timeline.note(f"reference folded: {sum(len(v) for v in logs.values())} log entries, {len(emits)} outputs")

    # the reference is sensible: the run exercised what it claims to
    published = sum(1 for _ in main) + len(setup) + follower.published
    entries = sum(len(v) for v in logs.values())
    distinct = len({(i.record["tenant_id"], i.record["event_id"]) for v in logs.values() for _, i in v})
    assert entries >= published and distinct < entries, (entries, published, distinct)
    outcomes = [e.value for e in emits if e.topic == "sales.outcomes"]
    tally = Counter((o["kind"], o["outcome"], o["reasons"][0]["code"] if o["reasons"] else "") for o in outcomes)
    stages = Counter(d.stage + ":" + d.error.split(":", 1)[0] for d in letters)
    alerts = Counter(e.value["alert"] for e in emits if e.topic == "inventory.alerts")
    timeline.note(f"outcomes {dict(sorted(tally.items()))}; dead letters {dict(stages)}; alerts {dict(alerts)}")
    assert tally[("SALE", "ACCEPTED", "")] > 2000
    for need, least in ((("SALE", "REFUSED", "INSUFFICIENT_STOCK"), 20),
                        (("SALE", "REFUSED", "CREDIT_LIMIT_EXCEEDED"), 5),
                        (("SALE", "REFUSED", "CREDIT_HOLD"), 5), (("SALE", "REFUSED", "UNKNOWN_SKU"), 5),
                        (("SALE", "REFUSED", "INACTIVE_SKU"), 5), (("PAYMENT", "ACCEPTED", ""), 500),
                        (("PAYMENT", "REFUSED", "OVERPAYMENT"), 50), (("REFUND", "ACCEPTED", ""), 300),
                        (("REFUND", "REFUSED", "OVER_REFUND"), 20), (("REFUND", "REFUSED", "UNKNOWN_SALE"), 5),
                        (("SALE", "IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_CONFLICT"), 5),
                        (("SALE", "REFUSED", "DUPLICATE_DOCUMENT_ID"), 5),
                        (("PAYMENT", "IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_CONFLICT"), 2),
                        (("REFUND", "IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_CONFLICT"), 2)):
        assert tally[need] >= least, (need, tally[need])
    assert stages["idempotency:IDEMPOTENCY_CONFLICT"] > 5 and stages["rule:NO_PRICE"] > 5
    assert stages["rule:PAYMENT_MISMATCH"] > 0 and alerts["STALE_ABSOLUTE"] > 5
    assert follower.published > 1000
    assert sum(1 for e in emits if e.topic == "ledger.credit_notes") > 300  # refunds booked
    assert tally[("SHIPMENT", "ACCEPTED", "")] > 20 and sum(1 for e in emits if e.topic == "ledger.shipments") > 20
    priced = Counter(li.get("price_source") for e in emits if e.topic == "ledger.invoices" for li in e.value["lines"])
    assert priced["PRICE_LIST"] > 300 and priced["CATALOG"] > 10_000, priced  # SPEC 9: both, interleaved

    problems: list[str] = []
    # PostgreSQL: the sink's books are the serial fold's, and they reconcile
    try:
        deadline = time.monotonic() + 300
        while not books.caught_up():
            assert time.monotonic() < deadline, "the sink did not write every ledger record in 300 s"
            time.sleep(1)
        problems += books.compare(sorted(tenants), ref, emits)
        timeline.note(f"sink's books compared ({len(problems)} differences)")
    finally:
        books.close()
    # HTTP: every SKU, customer and sale of the reference, exactly as the views render it
    stock_keys = sorted(k for k in ref.tables["stock"] if k.split(":", 1)[0] in tenants)
    credit_keys = sorted(k for k in ref.tables["credit"] if k.split(":", 1)[0] in tenants)
    sale_keys = sorted(k for k in ref.tables["sales"] if k.split(":", 1)[0] in tenants)
    expected: dict[Any, Any] = {}
    asks: list[tuple[Any, str, str]] = []
    for k in stock_keys:
        tenant, sku = k.split(":", 1)
        view = stock_view(stock_of(ref, tenant, sku), catalog_of(ref, tenant, sku))
        expected[("stock", k)] = json.loads(json.dumps(view))
        asks.append((("stock", k), f"/stock/{sku}", tenant))
    for k in credit_keys:
        tenant, c = k.split(":", 1)
        view = credit_view(credit_of(ref, tenant, c), open_invoices_of(ref, tenant, c))
        expected[("credit", k)] = json.loads(json.dumps(view))
        asks.append((("credit", k), f"/credit/{c}", tenant))
    for k in sale_keys:
        tenant, sid = k.split(":", 1)
        expected[("sale", k)] = json.loads(json.dumps(sale_view(sale_of(ref, tenant, sid), ref)))
        asks.append((("sale", k), f"/sales/{sid}", tenant))
    got = fetch_views(worker, asks)
    timeline.note(f"read {len(asks)} views over HTTP")
    problems += diff("view", expected, got)
    problems += [f"stock {k}: reserved {v['reserved']}" for (kind, k), v in got.items()  # IMMEDIATE reserves nothing
                 if kind == "stock" and k.startswith(f"{first}:") and v.get("reserved")]
    # nothing pending: every published sale has a decided record
    for tenant, plan in tenants.items():
        for sid in sorted(plan.sale_ids):
            v = got.get(("sale", f"{tenant}:{sid}"))
            if v is None or v.get("status") not in ("ACCEPTED", "REFUSED", "FAILED", "HELD"):  # HELD: SPEC 8
                problems.append(f"sale {tenant}:{sid} is not decided: {v}")

    # the output topics: exactly the fold's outputs
    prefixes = tuple(f"{t}:" for t in tenants)

    def mine(topic: str) -> list[tuple[str, dict]]:
        return [(m.key().decode(), codec.decode(m.value())) for m in read_topic(settings, topic)
                if m.key() is not None and m.key().decode().startswith(prefixes)]

    def norm(topic: str, value: dict) -> str:
        return canon(codec.decode(codec.encode(topic, value)))

    on_topics = {t: mine(t) for t in ("stock.levels", "sales.outcomes", "inventory.alerts", *LEDGER)}
    everything = {t: {canon(v) for _, v in records_} for t, records_ in on_topics.items()}
    levels_want = {e.key: norm(e.topic, e.value) for e in emits if e.topic == "stock.levels"}
    levels_got = {k: canon(v) for k, v in on_topics["stock.levels"]}
    problems += diff("stock.levels latest", levels_want, levels_got)
    for k in stock_keys:
        state = StockState.from_dict(ref.tables["stock"][k])
        last = json.loads(levels_got.get(k, "{}"))
        if (last.get("on_hand"), last.get("available")) != (state.on_hand, state.available):
            problems.append(f"stock.levels {k}: latest {last}, reference stock on_hand {state.on_hand}")
    for topic in LEDGER:
        want = {e.key: norm(topic, e.value) for e in emits if e.topic == topic}
        have = {k: canon(v) for k, v in on_topics[topic]}
        assert want or topic == "ledger.external_refs"
        problems += diff(topic, want, have)
    for topic in ("sales.outcomes", "inventory.alerts"):
        want_set = {norm(topic, e.value) for e in emits if e.topic == topic}
        have_set = everything[topic]
        problems += [f"{topic} missing: {x}" for x in sorted(want_set - have_set)[:15]]
        problems += [f"{topic} not in the reference: {x}" for x in sorted(have_set - want_set)[:15]]
    dlq_want = {canon((d.input.topic + ".dlq", d.input.partition, d.input.offset, d.stage, d.error)) for d in letters}
    dlq_have = set()
    for topic in {d.input.topic + ".dlq" for d in letters} | {t + ".dlq" for t in set(TOPIC.values())}:
        for _, v in mine(topic):
            dlq_have.add(canon((topic, v["partition"], v["offset"], v["stage"], v["error"])))
    problems += [f"dead letter missing: {x}" for x in sorted(dlq_want - dlq_have)[:15]]
    problems += [f"dead letter not in the reference: {x}" for x in sorted(dlq_have - dlq_want)[:15]]
    timeline.note(f"compared; {len(problems)} differences")
    if problems:  # where, in log order, the worker's outputs first left the serial fold's
        for _tenant, inputs in logs.items():
            problems += [f"first divergence, tenant {tenant}: {line}" for line in first_divergence(
                inputs, config, lambda o: norm(o.topic, o.value) in everything[o.topic])]
    assert not problems, "\n".join(problems[:100] + [p for p in problems[100:] if p.startswith("first divergence")]) \
        + "\n\ntimeline:\n" + "\n".join(timeline.lines) + f"\nworker logs: {worker.logfile}, {helper.logfile}"
