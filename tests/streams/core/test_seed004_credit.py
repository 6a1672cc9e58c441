"""Seed 004's own credit example ("Example 3: Credit Check"), reproduced exactly through the fold.

The seed's figures: credit_limit 10000.00, outstanding_balance 8000.00, available_credit 2000.00,
order_amount 3000.00, "Insufficient credit. Available: 2000.00, Required: 3000.00". The seed answers
with a 400 {"error": "Credit limit exceeded", "details": {...}}; stockledger's answer is the order's
outcome: REFUSED (credit policy REFUSE, the default) or HELD (policy HOLD, SPEC 8) with the same figures
in `credit` and the same sentence as the reason's message. (tests/api/test_orders.py: the same over HTTP.)
"""

from __future__ import annotations

from decimal import Decimal

from streams.core.fold import DictState, credit_of, sale_of, serial_fold, stock_of

from .foldkit import catalog, configure, emits, release, sale, terms, topics
from .test_settings_decide import run

D = Decimal
FIGURES = {"credit_limit": D("10000.00"), "outstanding": D("8000.00"), "available": D("2000.00"),
           "order_amount": D("3000.00")}
MESSAGE = "Insufficient credit. Available: 2000.00, Required: 3000.00"


def seed_shop(*settings) -> DictState:
    """The seed's customer: limit 10000.00, and 8000.00 outstanding (8 x 1000.00 at 0% tax, on account)."""
    state = DictState()
    run(state, *settings,
        catalog("G", [{"sku": "A", "price": "1000.00", "stock_quantity": 20},
                      {"sku": "B", "price": "1000.00", "stock_quantity": 20}], event_id="cat", tax_rate="0"),
        terms("CUST-1", "10000.00", event_id="cust"),
        sale("SO-2025-000", [{"sku": "A", "quantity": 8}], event_id="o0", order=True, terms="ON_ACCOUNT",
             customer="CUST-1"))
    assert credit_of(state, "t1", "CUST-1").outstanding == D("8000.00")
    return state


def order_3000(ts: int = 3_000):
    return sale("SO-2025-001", [{"sku": "B", "quantity": 3}], event_id="o1", ts=ts, order=True, terms="ON_ACCOUNT",
                customer="CUST-1")


def test_the_seed_example_is_refused_with_its_exact_figures_under_the_default_policy():
    state = seed_shop()
    out = run(state, order_3000())
    assert topics(out) == ["sales.outcomes"]
    [outcome] = emits(out, "sales.outcomes")
    assert outcome == {"tenant_id": "t1", "kind": "SALE", "id": "SO-2025-001", "sale_id": "SO-2025-001",
                       "customer_ref": "CUST-1", "event_id": "o1", "outcome": "REFUSED",
                       "reasons": [{"code": "CREDIT_LIMIT_EXCEEDED", "message": MESSAGE, "sku": None,
                                    "requested": None, "available": None}],
                       "credit": FIGURES, "document_ids": [], "total": None, "currency": "KES", "decided_at": 3000}
    assert credit_of(state, "t1", "CUST-1").outstanding == D("8000.00")
    assert stock_of(state, "t1", "B").available == 20


def test_the_seed_example_is_held_with_the_same_figures_under_hold_and_a_release_books_it():
    state = seed_shop(configure(event_id="cfg", order_fulfilment="RESERVE", credit_policy="HOLD"))
    out = run(state, order_3000())
    [outcome] = emits(out, "sales.outcomes")
    assert (outcome["outcome"], outcome["credit"], outcome["total"], outcome["reasons"]) == (
        "HELD", FIGURES, D("3000.00"), [{"code": "CREDIT_LIMIT_EXCEEDED", "message": MESSAGE, "sku": None,
                                          "requested": None, "available": None}])
    assert (sale_of(state, "t1", "SO-2025-001").status, stock_of(state, "t1", "B").reserved) == ("HELD", 0)
    released = run(state, release("SO-2025-001", event_id="rel", ts=3_500, by="credit-manager"))
    [inv] = emits(released, "ledger.invoices")
    assert (inv["invoice_id"], inv["total"]) == ("INV-SO-2025-001", D("3000.00"))
    assert emits(released, "sales.outcomes")[-1]["outcome"] == "ACCEPTED"
    # the release is the credit approval: the customer is now 1000.00 over the limit of 10000.00
    assert credit_of(state, "t1", "CUST-1").outstanding == D("11000.00")
    assert stock_of(state, "t1", "B").reserved == 3


def test_exactly_the_available_credit_is_accepted_and_the_serial_fold_agrees():
    events = [catalog("G", [{"sku": "B", "price": "1000.00", "stock_quantity": 20}], event_id="cat", tax_rate="0"),
              terms("CUST-1", "10000.00", event_id="cust"),
              sale("SO-0", [{"sku": "B", "quantity": 8}], event_id="o0", order=True, terms="ON_ACCOUNT",
                   customer="CUST-1"),
              sale("SO-1", [{"sku": "B", "quantity": 2}], event_id="o1", ts=3_000, order=True, terms="ON_ACCOUNT",
                   customer="CUST-1")]
    state, out = serial_fold(events)
    last = emits(out, "sales.outcomes")[-1]
    assert (last["outcome"], last["credit"]) == ("ACCEPTED", {
        "credit_limit": D("10000.00"), "outstanding": D("8000.00"), "available": D("2000.00"),
        "order_amount": D("2000.00")})
    assert credit_of(state, "t1", "CUST-1").outstanding == D("10000.00")
