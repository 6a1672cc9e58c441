"""The fold with open invoices in their own keys answers exactly as the fold before it (legacy_fold).

Long random tenant logs (sales, orders, on-account and paid, payments named and oldest-first, over-
and exact payments, cash and credit refunds, refund ids reused, two currencies, terms and holds,
redeliveries, retries under new event ids, event ids reused with other content) go through both
folds: the outputs are identical, Decimal exponents included (a message or a record reading "58.00"
must not read "58.0000"), and so are the stock, catalog, sales and seen tables, the payment records
(but for the invoice keys they now list) and every customer's figures and open invoices.

Issue 16 changed some rules on purpose (SPEC 2 as amended 2026-12-04): a CREDIT refund of a PAID sale
gives store credit, a CREDIT refund without a customer is NO_CUSTOMER, a refund_id reused on another
sale or a sale_id under another event id is DUPLICATE_DOCUMENT_ID, a zero-total document has no journal
entry, and ON_ACCOUNT invoices carry a due date. Issue 19 keeps an order's lines and state in its
sale record (left out of the comparison; under the default IMMEDIATE nothing else changed).
The generators here are restricted to events whose behaviour did not change (CREDIT refunds only of
on-account sales, a refund_id reused only on its own sale, sale ids never reused, no zero prices), and
the comparison leaves out the new due dates; the new rules have their own tests (test_books.py).
"""

from __future__ import annotations

import random
import re
from decimal import Decimal
from typing import Any

from hypothesis import given, settings

from streams.core import fold as new
from streams.core.credit import shown_amount as shown
from streams.core.fold import DeadLetter, Emit

from . import legacy_fold as old
from . import test_fold as tf
from .foldkit import catalog, count, delta, payment, refund, sale, terms


def exact(value: Any) -> Any:
    """A form where Decimal('58.00') and Decimal('58.0000') differ."""
    if isinstance(value, Decimal):
        return ("D", str(value))
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [exact(v) for v in value]
    return value


_SHORT = re.compile(r"Insufficient credit\. Available: (\S+), Required: (\S+)$")


def _as_shown(value: Any) -> Any:
    """The legacy fold's credit message with its amounts as credit.py shows them now (seed 004: 2000.00,
    not 2000.0000); everything else unchanged."""
    if isinstance(value, str):
        m = _SHORT.match(value)
        if m is None:
            return value
        a, r = (shown(Decimal(x)) for x in m.groups())
        return f"Insufficient credit. Available: {a}, Required: {r}"
    if isinstance(value, dict):
        return {k: _as_shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_shown(v) for v in value]
    return value


def _before_due_dates(value: dict) -> dict:
    return {k: v for k, v in value.items() if k != "due_date"} | _before_price_sources(value)


_PRICE_SOURCE = ("price_source", "price_list_id")  # SPEC 9, newer than the legacy fold


def _before_price_sources(value: dict) -> dict:
    if "lines" not in value:
        return {}
    return {"lines": [{k: v for k, v in li.items() if k not in _PRICE_SOURCE} for li in value["lines"]]}


def outputs_form(outputs: list) -> list:
    form = []
    for out in outputs:
        if isinstance(out, (Emit, old.Emit)):
            if out.topic == "ledger.external_refs" and out.value["kind"] in ("customer", "item"):
                continue  # seed 000's customer and item refs (SPEC 9) are newer than the legacy fold
            value = _before_due_dates(out.value) if out.topic == "ledger.invoices" else out.value
            if out.topic == "ledger.credit_notes":
                value = value | _before_price_sources(value)
            if isinstance(out, old.Emit):
                value = _as_shown(value)
            form.append(("emit", out.topic, out.key, exact(value)))
        else:
            assert isinstance(out, (DeadLetter, old.DeadLetter))
            form.append(("dlq", out.input.topic, out.input.offset, out.error, out.stage))
    return form


def figures(credit: Any, invoices: list) -> dict:
    available = credit.available
    return {"credit_limit": str(credit.credit_limit), "on_hold": credit.on_hold,
            "outstanding": str(credit.outstanding), "available": None if available is None else str(available),
            "credit_balance": str(credit.credit_balance),
            "open": [(i.invoice_id, i.issued_at, i.currency, str(i.total), str(i.paid), str(i.credited),
                      str(i.remaining), i.status) for i in invoices]}


def assert_same(events: list) -> tuple[Any, Any]:
    old_state, old_out = old.serial_fold(events)
    new_state, new_out = new.serial_fold(events)
    assert outputs_form(new_out) == outputs_form(old_out)
    for table in ("stock", "catalog", "seen"):
        assert new_state.tables[table] == old_state.tables[table], table
    sales = {k: {**{f: v for f, v in r.items() if f != "order"},  # issue 19: an order's lines and state
                 "invoice": r["invoice"] and _before_due_dates(r["invoice"])}
             for k, r in new_state.tables["sales"].items()}
    assert sales == _as_shown(old_state.tables["sales"])
    payments = {k: {f: v for f, v in rec.items() if f != "invoice_ids"}
                for k, rec in new_state.tables["payments"].items()}
    assert payments == old_state.tables["payments"]
    assert set(new_state.tables["credit"]) == set(old_state.tables["credit"])
    for key, raw in old_state.tables["credit"].items():
        tenant, customer = key.split(":", 1)
        was = old.CreditState.from_dict(raw)
        was_open = sorted(was.open_invoices, key=lambda i: (i.issued_at, i.invoice_id))  # the chain's order
        now = new.credit_of(new_state, tenant, customer)
        now_open = new.open_invoices_of(new_state, tenant, customer)
        assert figures(now, now_open) == figures(was, was_open), customer
        assert now.open_count == len(now_open)
        assert (now.oldest, now.newest) == ((now_open[0].invoice_id, now_open[-1].invoice_id) if now_open
                                            else (None, None))
        for d in now.due:  # what each currency owes is the sum of its open invoices, as summed before
            assert str(d.amount) == str(sum((i.remaining for i in was_open if i.currency == d.currency),
                                            Decimal(0)))
    return old_state, new_state


# -- a long random mix ----------------------------------------------------------------------------
CUSTOMERS = ("C1", "C2", "C3")


def random_log(seed: int, n: int) -> list:
    rng = random.Random(seed)
    events = [catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 50},
                            {"sku": "B", "price": "33.33", "stock_quantity": 20}], event_id="cat-0", tax_rate="16",
                      ts=0),
              catalog("H", [{"sku": "C", "price": "7.50", "stock_quantity": 5}], event_id="cat-1", ts=0,
                      is_active=rng.random() < 0.5),
              terms("C1", "0", event_id="cust-1", ts=0), terms("C2", "500", event_id="cust-2", ts=0),
              terms("C3", "5000", event_id="cust-3", ts=0)]
    on_account: list[tuple[str, str]] = []  # (sale_id, customer) of on-account sales sent
    sales: list[str] = []
    refund_ids: list[tuple[str, str]] = []  # (refund_id, sale_id)
    clock = 1_000
    for i in range(n):
        clock += rng.randint(0, 40)
        ts = clock if rng.random() < 0.85 else max(1, clock - rng.randint(1, 2_000))  # some arrive late
        eid = f"e{i}"
        customer = rng.choice(CUSTOMERS)
        currency = "KES" if rng.random() < 0.93 else "USD"
        roll = rng.random()
        if roll < 0.42:
            sale_id = f"S{i}"  # a sale_id reused is DUPLICATE_DOCUMENT_ID now
            lines = [{"sku": rng.choice(("A", "B", "B", "C", "X")), "quantity": rng.randint(1, 3),
                      "unit_price": rng.choice([None, None, "10.00", "0.99"]),
                      "discount_percent": rng.choice([None, None, "12.5"])} for _ in range(rng.randint(1, 3))]
            account = rng.random() < 0.6
            pays = None
            if not account and rng.random() < 0.1:
                pays = [{"method": "CARD", "amount": rng.choice(["1.00", "116.00"])}]
            events.append(sale(sale_id, lines, event_id=eid, ts=ts, order=rng.random() < 0.5,
                               terms="ON_ACCOUNT" if account else "PAID",
                               customer=customer if account or rng.random() < 0.5 else None, payments=pays,
                               currency=currency))
            sales.append(sale_id)
            if account:
                on_account.append((sale_id, customer))
        elif roll < 0.66:
            named = None
            payer = customer
            if on_account and rng.random() < 0.5:
                sale_id, payer = rng.choice(on_account[-30:] if rng.random() < 0.8 else on_account)
                named = f"INV-{sale_id}"
                if rng.random() < 0.1:
                    payer = rng.choice(CUSTOMERS)  # another customer's invoice
            amount = rng.choice(["1.00", "2.50", "10.00", "58.00", "116.00", "150.00", "5000.00", "0.01",
                                 f"{rng.randint(1, 400)}.{rng.randint(0, 99):02}"])
            events.append(payment(f"P{rng.randint(0, n)}", payer, amount, event_id=eid, ts=ts, invoice=named,
                                  currency=currency if rng.random() < 0.3 else "KES"))
        elif roll < 0.82:
            target = rng.choice(sales[-20:]) if sales else "S-none"
            rid = f"R{i}"
            if refund_ids and rng.random() < 0.25:  # a refund_id again, on its own sale
                rid, target = rng.choice(refund_ids)
            refund_ids.append((rid, target))
            credit = any(s == target for s, _ in on_account)  # CREDIT of a PAID sale is store credit now
            events.append(refund(rid, target, [{"sku": rng.choice(("A", "B", "C", "X")),
                                                "quantity": rng.randint(1, 2)}],
                                 event_id=eid, ts=ts, restock=rng.random() < 0.5,
                                 method="CREDIT" if credit and rng.random() < 0.6 else "CASH"))
        elif roll < 0.86:
            events.append(terms(customer, rng.choice(["0", "150", "500", "5000"]), rng.random() < 0.15,
                                event_id=eid, ts=ts))
        elif roll < 0.9:
            sku = rng.choice(("A", "B", "C"))
            events.append(count(sku, rng.randint(0, 60), event_id=eid, ts=ts) if rng.random() < 0.5
                          else delta(sku, rng.choice([-3, -1, 2, 10]), event_id=eid, ts=ts))
        elif roll < 0.96 and len(events) > 5:
            events.append(events[rng.randint(5, len(events) - 1)])  # a redelivery
        elif len(events) > 5:  # an event id used again with other content, or a retry under a new id
            earlier = events[rng.randint(5, len(events) - 1)]
            data = earlier.record["data"]
            if earlier.record["event_type"] == "payment.received":
                events.append(payment(data["payment_id"], data["customer_ref"], "3.00",
                                      event_id=earlier.record["event_id"] if rng.random() < 0.5 else eid, ts=ts))
            else:
                events.append(delta("A", 1, event_id=earlier.record["event_id"], ts=ts))
    return events


def test_a_long_random_mix_gives_identical_outputs_state_and_figures():
    for seed in range(4):
        old_state, _ = assert_same(random_log(seed, 2_500))
        assert len(old_state.tables["credit"]) == 3


def test_many_short_random_mixes():
    for seed in range(100, 160):
        assert_same(random_log(seed, 150))


def test_on_account_sales_payments_and_refunds_of_one_customer():
    events = [catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 10_000}], event_id="c0", ts=0),
              terms("C1", "0", event_id="t0", ts=0)]
    rng = random.Random(1)
    for i in range(600):
        ts = 1_000 + i * 10 - rng.choice([0, 0, 0, 35])
        events.append(sale(f"S{i}", [{"sku": "A", "quantity": rng.randint(1, 3)}], event_id=f"s{i}", ts=ts,
                           order=i % 2 == 0, terms="ON_ACCOUNT", customer="C1"))
        if i % 7 == 3:
            events.append(payment(f"P{i}", "C1", rng.choice(["100.00", "250.00", "116.00"]), event_id=f"p{i}",
                                  ts=ts + 1))
        if i % 11 == 5:
            events.append(payment(f"PN{i}", "C1", "116.00", event_id=f"pn{i}", ts=ts + 2,
                                  invoice=f"INV-S{rng.randint(0, i)}"))
        if i % 13 == 6:
            events.append(refund(f"R{i}", f"S{rng.randint(0, i)}", [{"sku": "A", "quantity": 1}], event_id=f"r{i}",
                                 ts=ts + 3, method="CREDIT", restock=False))
    _, new_state = assert_same(events)
    assert len(new_state.tables["credit"]["t1:C1"]["due"]) == 1  # one small value whatever the invoices


@settings(max_examples=150, deadline=None)
@given(tf.tenant_logs(unchanged=True))
def test_the_fold_tests_random_tenant_logs_give_identical_answers(events):
    assert_same(events)
