"""The hand-built dict forms of the hot states equal the generic Plain form, both ways."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from streams.core.credit import CreditState, OpenInvoice
from streams.core.serde import from_plain, to_plain
from streams.core.stock import StockState

ids = st.text(min_size=1, max_size=8)
money = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)


@given(st.builds(StockState, ids, ids, st.integers(), st.integers(0, 99), st.none() | st.integers(0, 10**13),
                 st.none() | st.integers(0, 999), st.lists(st.tuples(st.integers(), st.integers())).map(tuple),
                 st.integers(0, 10**13), st.none() | ids, st.none() | ids, st.none() | ids))
def test_stock_state_forms_agree(state):
    assert state.to_dict() == to_plain(state)
    assert StockState.from_dict(state.to_dict()) == state == from_plain(StockState, to_plain(state))


@given(st.builds(CreditState, ids, ids, money, st.booleans(),
                 st.lists(st.builds(OpenInvoice, ids, st.integers(0, 10**13), st.just("KES"), money, money,
                                    money)).map(tuple),
                 money, st.lists(ids).map(tuple)))
def test_credit_state_forms_agree(state):
    assert state.to_dict() == to_plain(state)
    assert CreditState.from_dict(state.to_dict()) == state == from_plain(CreditState, to_plain(state))


def test_an_empty_state_round_trips():
    assert StockState.from_dict(StockState("t", "A").to_dict()) == StockState("t", "A")
    assert CreditState.from_dict(CreditState("t", "C").to_dict()).credit_limit == Decimal(0)
