"""Bounds (SPEC 2, "Bounds") in the pure core: the incoming check and the fold's refusal of a result beyond them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockledger import bounds
from stockledger.bounds import AMOUNT_OUT_OF_RANGE, MAX_ON_HAND, QUANTITY_OUT_OF_RANGE, amount_fits, event_bounds
from streams.core.fold import DeadLetter, DictState, FoldConfig, fold, fold_guarded, serial_fold, stock_of

from .foldkit import D, catalog, delta, emits, sale, terms

LONG_MAX = 9223372036854775807


@pytest.mark.parametrize("value,fits", [
    ("0", True), ("99999999999999.9999", True), ("-99999999999999.9999", True), ("100000000000000", False),
    ("1.2345", True), ("1.23450000", True), ("1.23456", False), ("1E+13", True), ("1E+14", False),
    ("1.000000000000000000000000000000001", False), ("NaN", False), ("Infinity", False), ("-Infinity", False),
])
def test_an_amount_fits_decimal_18_4(value, fits):
    assert amount_fits(Decimal(value)) is fits


@pytest.mark.parametrize("event_type,data,code,field", [
    ("inventory.change", {"sku": "A", "quantity_change": 1_000_000_001}, QUANTITY_OUT_OF_RANGE,
     "data.quantity_change"),
    ("inventory.change", {"sku": "A", "quantity_change": -LONG_MAX}, QUANTITY_OUT_OF_RANGE, "data.quantity_change"),
    ("inventory.change", {"sku": "A", "new_quantity": LONG_MAX}, QUANTITY_OUT_OF_RANGE, "data.new_quantity"),
    ("catalog.update", {"variants": [{"sku": "A", "stock_quantity": 1}, {"sku": "B", "stock_quantity": 10 ** 10}]},
     QUANTITY_OUT_OF_RANGE, "data.variants[1].stock_quantity"),
    ("catalog.update", {"variants": [{"sku": "A", "price": D("1E+14")}]}, AMOUNT_OUT_OF_RANGE,
     "data.variants[0].price"),
    ("catalog.update", {"tax_rate": D("1.00001"), "variants": []}, AMOUNT_OUT_OF_RANGE, "data.tax_rate"),
    ("sale.completed", {"line_items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1_000_000_001}]},
     QUANTITY_OUT_OF_RANGE, "data.line_items[1].quantity"),
    ("order.placed", {"line_items": [{"sku": "A", "quantity": 1, "unit_price": D("123456789012345")}]},
     AMOUNT_OUT_OF_RANGE, "data.line_items[0].unit_price"),
    ("sale.completed", {"line_items": [], "payments": [{"method": "CASH", "amount": D("-1E+20")}]},
     AMOUNT_OUT_OF_RANGE, "data.payments[0].amount"),
    ("refund.issued", {"lines": [{"sku": "A", "quantity": -10 ** 12}]}, QUANTITY_OUT_OF_RANGE,
     "data.lines[0].quantity"),
    ("payment.received", {"amount": D("NaN")}, AMOUNT_OUT_OF_RANGE, "data.amount"),
    ("customer.credit", {"credit_limit": D("1E+30")}, AMOUNT_OUT_OF_RANGE, "data.credit_limit"),
])
def test_event_bounds_name_the_code_and_the_field(event_type, data, code, field):
    beyond = event_bounds(event_type, data)
    assert beyond is not None and (beyond.code, beyond.field) == (code, field)
    assert str(beyond).startswith(f"{code}: {field}: ")


@pytest.mark.parametrize("event_type,data", [
    ("inventory.change", {"sku": "A", "quantity_change": 1_000_000_000}),
    ("inventory.change", {"sku": "A", "quantity_change": -1_000_000_000, "new_quantity": None}),
    ("sale.completed", {"line_items": [{"sku": "A", "quantity": 1_000_000_000,
                                        "unit_price": D("99999999999999.9999")}]}),
    ("inventory.change", {"sku": "A", "quantity_change": "12"}),  # not an int: the validators' business
    ("inventory.change", "not a mapping"),
    ("unknown.type", {"quantity": 10 ** 20}),
])
def test_values_at_the_bounds_pass(event_type, data):
    assert event_bounds(event_type, data) is None


def _stock_at_the_bound(state: DictState) -> None:
    for n in range(1000):  # 1000 x 10^9 = 10^12, exactly the bound
        fold(state, delta("BIG", 1_000_000_000, event_id=f"big{n}", ts=1_000 + n), FoldConfig())
    assert stock_of(state, "t1", "BIG").on_hand == MAX_ON_HAND


def test_a_delta_taking_on_hand_beyond_10_12_is_dead_lettered_and_nothing_is_applied():
    state = DictState()
    _stock_at_the_bound(state)
    before = {t: dict(rows) for t, rows in state.tables.items()}
    over = delta("BIG", 1, event_id="over", ts=5_000)
    out = fold(state, over, FoldConfig())
    assert len(out) == 1 and isinstance(out[0], DeadLetter)
    assert out[0].stage == "rule"
    assert out[0].error == ("QUANTITY_OUT_OF_RANGE: on_hand of BIG: 1000000000001 is beyond +-10^12; refused")
    assert state.tables == before  # not even its event id is kept: nothing of it is applied
    back = fold(state, delta("BIG", -5, event_id="back", ts=5_001), FoldConfig())
    assert [o.value["on_hand"] for o in back if o.topic == "stock.levels"] == [MAX_ON_HAND - 5]


def test_a_sale_whose_invoice_does_not_fit_decimal_18_4_is_dead_lettered_whole():
    state = DictState()
    fold(state, catalog("G", [{"sku": "A", "price": "10", "stock_quantity": 5}], event_id="c1"), FoldConfig())
    before = {t: dict(rows) for t, rows in state.tables.items()}
    big = sale("S1", [{"sku": "A", "quantity": 1_000_000_000, "unit_price": "99999999999999.99"}], event_id="s1",
               currency="USD")
    out = fold(state, big, FoldConfig())
    assert len(out) == 1 and isinstance(out[0], DeadLetter)
    assert out[0].error.startswith("AMOUNT_OUT_OF_RANGE: ledger.invoices lines[0].net: ")
    assert state.tables == before
    assert stock_of(state, "t1", "A").on_hand == 5


def test_an_outstanding_balance_beyond_decimal_18_4_is_refused():
    state = DictState()
    config = FoldConfig()
    fold(state, terms("C1", "0", event_id="terms"), config)
    lines = [{"sku": "A", "quantity": 1, "unit_price": "60000000000000"}]
    first = fold(state, sale("S1", lines, event_id="s1", terms="ON_ACCOUNT", customer="C1", currency="USD"), config)
    assert emits(first, "sales.outcomes")[0]["outcome"] == "ACCEPTED"
    credit_before = dict(state.tables["credit"])
    second = fold(state, sale("S2", lines, event_id="s2", terms="ON_ACCOUNT", customer="C1", currency="USD"),
                  config)
    assert len(second) == 1 and isinstance(second[0], DeadLetter)
    assert second[0].error.startswith("AMOUNT_OUT_OF_RANGE: outstanding of customer C1: 120000000000000")
    assert state.tables["credit"] == credit_before and "t1:S2" not in state.tables["sales"]


def test_fold_guarded_dead_letters_an_event_whose_check_fails_and_keeps_no_trace():
    state = DictState()
    config = FoldConfig()
    good, poison, other = (delta("A", 3, event_id="a"), delta("P", 7, event_id="p"), delta("B", 4, event_id="b"))

    def check(decision):
        for o in decision.out:
            if getattr(o, "key", "") == "t1:P":
                raise OverflowError("int too big to convert")
        return len(decision.out)

    results = [fold_guarded(state, e, config, check) for e in (good, poison, other)]
    assert [r[1] for r in results] == [1, None, 1]
    letter = results[1][0]
    assert len(letter) == 1 and letter[0].error == "INTERNAL_ERROR: OverflowError('int too big to convert')"
    assert letter[0].input is poison and letter[0].stage == "rule"
    assert set(state.tables["stock"]) == {"t1:A", "t1:B"} and set(state.tables["seen"]) == {"t1:a", "t1:b"}
    # the serial reference treats it identically
    ref, outputs = serial_fold([good, poison, other], config, check)
    assert ref == state
    assert [o.error for o in outputs if isinstance(o, DeadLetter)] == [letter[0].error]


_NODES = st.recursive(
    st.one_of(st.none(), st.integers(), st.decimals(allow_nan=True), st.text(max_size=2), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["lines", "quantity",
                                                                                          "amount", "x"]), inner,
                                                                        max_size=3)),
    max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(_NODES, st.lists(st.sampled_from(["lines", "*", "quantity", "amount"]), max_size=4))
def test_the_fast_walk_reaches_what_the_walk_reaches_in_its_order(node: object, path: list[str]) -> None:
    """bounds._values (the check's fast path) gives _walk's values in _walk's order."""
    assert bounds._values(node, tuple(path)) == [v for _, v in bounds._walk(node, tuple(path), "data")]


def _walked_bounds(event_type: str, data: object) -> tuple[str, str, str] | None:
    """The check as first written: every value `_walk` reaches, in its order, against its bound."""
    for path, code in bounds._FIELDS[event_type]:
        fits = bounds.quantity_fits if code == bounds.QUANTITY_OUT_OF_RANGE else bounds.amount_fits
        for where, value in bounds._walk(data, path, "data"):
            if not fits(value):
                return code, where, (f"{value} is beyond +-{bounds.MAX_QUANTITY:,}"
                                     if code == bounds.QUANTITY_OUT_OF_RANGE else f"{value} does not fit decimal(18,4)")
    return None


_VALUES = st.one_of(st.none(), st.integers(-2 * bounds.MAX_QUANTITY, 2 * bounds.MAX_QUANTITY),
                    st.decimals(allow_nan=True, places=5), st.text(max_size=2), st.sampled_from(
                        [bounds.MAX_QUANTITY, bounds.MAX_QUANTITY + 1, -bounds.MAX_QUANTITY - 1, True, 1.5, "12",
                         Decimal("99999999999999.9999"), Decimal("100000000000000"), Decimal("0.00001"),
                         Decimal("-1E+20"), Decimal("sNaN"), Decimal("Infinity")]))


def _shaped(path: tuple[str, ...]) -> st.SearchStrategy:
    """Values for `path` in a record's data: mostly the shape the walk expects, sometimes not."""
    if not path:
        return _VALUES
    head, rest = path[0], path[1:]
    if head == "*":
        return st.one_of(st.lists(_shaped(rest), max_size=4), st.tuples(_shaped(rest)), _VALUES)
    return st.one_of(st.fixed_dictionaries({}, optional={head: _shaped(rest), "x": _VALUES}), _VALUES)


@st.composite
def _event_data(draw: st.DrawFn) -> tuple[str, dict]:
    event_type = draw(st.sampled_from(sorted(bounds._FIELDS)))
    data: dict = {}
    for path, _ in bounds._FIELDS[event_type]:
        part = draw(_shaped(path))
        if isinstance(part, dict):
            for key, value in part.items():  # paths sharing a head (line_items) merge item by item
                if isinstance(data.get(key), list) and isinstance(value, list):
                    data[key] = [{**a, **b} if isinstance(a, dict) and isinstance(b, dict) else b
                                 for a, b in zip(data[key], value, strict=False)] + value[len(data[key]):]
                else:
                    data[key] = value
    return event_type, data


@settings(max_examples=3000, deadline=None)
@given(_event_data())
def test_the_compiled_check_finds_what_the_walk_finds(case: tuple[str, dict]) -> None:
    """event_bounds' straight-line checks report the first value beyond its bound, with its path and message,
    exactly as walking every path of `_FIELDS` does (catalog.update's group bounds apart)."""
    event_type, data = case
    found = bounds._number_bounds(event_type, data)
    assert (None if found is None else (found.code, found.field, found.message)) == _walked_bounds(event_type, data)
