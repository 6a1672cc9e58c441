from decimal import Decimal

import pytest

from streams.core.credit import CreditState, add_invoice, check_order, set_terms
from streams.core.orders import (
    INACTIVE_SKU,
    INSUFFICIENT_STOCK,
    UNKNOWN_SKU,
    CreditRefusal,
    LineRefusal,
    OrderDecision,
    StockAnswer,
    decide_order,
)
from streams.core.sales import SaleLine

D = Decimal
STOCK = {
    "A": StockAnswer("A", True, True, 10),
    "B": StockAnswer("B", True, False, 50),
    "C": StockAnswer("C", True, True, 4),
}


def credit_004():
    state = set_terms(CreditState("t1", "C1"), D("10000.00"), False).state
    state = add_invoice(state, "INV-1", 1, "KES", D("8000.00")).state
    return state


def test_paid_order_with_stock_is_accepted_without_credit():
    lines = [SaleLine("A", 10), SaleLine("C", 4)]
    refused_credit = check_order(credit_004(), D("3000.00"))
    assert decide_order(lines, "PAID", STOCK, refused_credit) == OrderDecision(True)


def test_line_reasons_unknown_inactive_short():
    lines = [SaleLine("A", 6), SaleLine("B", 1), SaleLine("Z", 1), SaleLine("A", 5), SaleLine("C", 4)]
    decision = decide_order(lines, "PAID", STOCK)
    assert decision == OrderDecision(
        False,
        (
            LineRefusal(1, "A", INSUFFICIENT_STOCK, "line 1: sku A: requested 11, available 10", 11, 10),
            LineRefusal(2, "B", INACTIVE_SKU, "line 2: sku B is not active"),
            LineRefusal(3, "Z", UNKNOWN_SKU, "line 3: sku Z is unknown"),
            LineRefusal(4, "A", INSUFFICIENT_STOCK, "line 4: sku A: requested 11, available 10", 11, 10),
        ),
    )


def test_on_account_order_refused_on_credit_with_004_figures():
    check = check_order(credit_004(), D("3000.00"))
    decision = decide_order([SaleLine("A", 1)], "ON_ACCOUNT", STOCK, check)
    assert decision == OrderDecision(
        False,
        (),
        CreditRefusal(
            "CREDIT_LIMIT_EXCEEDED",
            "Insufficient credit. Available: 2000.00, Required: 3000.00",
            D("10000.00"),
            D("8000.00"),
            D("2000.00"),
            D("3000.00"),
        ),
    )
    assert decision.to_dict()["credit"]["available"] == "2000.00"


def test_on_account_order_on_hold_and_approved():
    held = set_terms(credit_004(), D("10000.00"), True).state
    decision = decide_order([SaleLine("A", 1)], "ON_ACCOUNT", STOCK, check_order(held, D("1.00")))
    assert (decision.accepted, decision.credit.code) == (False, "CREDIT_HOLD")
    ok = decide_order([SaleLine("A", 1)], "ON_ACCOUNT", STOCK, check_order(credit_004(), D("2000.00")))
    assert ok == OrderDecision(True)


def test_on_account_order_needs_a_credit_check_unless_lines_fail():
    with pytest.raises(ValueError):
        decide_order([SaleLine("A", 1)], "ON_ACCOUNT", STOCK)
    decision = decide_order([SaleLine("Z", 1)], "ON_ACCOUNT", STOCK)
    assert (decision.accepted, decision.credit, [r.code for r in decision.lines]) == (False, None, [UNKNOWN_SKU])
