"""The hand-built dict forms of the hot states equal the generic Plain form, both ways.

These are the `to_dict`s kept for speed (each runs for every event of its kind): StockState, CreditState,
InvoiceEntry, RefundMark, SaleRecord, Outcome (and its `datum`, the generic `to_datum` form), CatalogEntry,
PaymentRecord. OrderState and TenantSettings keep forms of their own (an order's lines as rows, the
accounts as a mapping), read back by their `from_dict`s; they are not Plain forms.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from streams.core.credit import CreditState, Due, InvoiceEntry, RefundMark
from streams.core.serde import from_plain, to_datum, to_plain
from streams.core.stock import StockState

ids = st.text(min_size=1, max_size=8)
money = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)


# no chunk ever closed, or gc <= lo <= hi (hi > 0) with the newest ts of chunk lo (if live) and of every chunk
chunk_ranges = st.just((0, 0, 0, None, None)) | st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 50),
                                                          st.none() | st.integers(0, 10**13),
                                                          st.integers(0, 10**13)).map(
    lambda c: (min(c[0], c[1], c[2]), min(c[1], c[2]), c[2], c[3] if min(c[1], c[2]) < c[2] else None, c[4]))
bases = st.just((None, 0)) | st.tuples(st.integers(0, 10**13), st.integers())  # no base: base_qty is 0


@given(st.builds(StockState, ids, ids, st.integers(), st.integers(0, 99), st.none() | st.integers(0, 10**13),
                 st.none() | st.integers(0, 999), st.lists(st.tuples(st.integers(), st.integers())).map(tuple),
                 st.integers(0, 10**13), st.none() | ids, st.none() | ids, st.none() | ids), bases, chunk_ranges)
def test_stock_state_forms_agree(state, base, chunks):
    gc, lo, hi, due, pmax = chunks
    state = replace(state, base_ts=base[0], base_qty=base[1], chunk_gc=gc, chunk_lo=lo, chunk_hi=hi, chunk_due=due,
                    chunk_pmax=pmax)
    # The stored form flattens the deltas ([ts1, qty1, ts2, qty2, ...]), has the base only once there is one and
    # the chunk range (one list) once a chunk was closed; everything else is the generic form.
    plain = to_plain(state)
    if state.base_ts is None:
        del plain["base_ts"], plain["base_qty"]
    for name in ("chunk_gc", "chunk_lo", "chunk_hi", "chunk_due", "chunk_pmax"):
        del plain[name]
    if hi:
        plain["chunks"] = [gc, lo, hi, due, pmax]
    assert state.to_dict() == {**plain, "deltas": [x for d in plain["deltas"] for x in d]}
    assert StockState.from_dict(state.to_dict()) == state == from_plain(StockState, to_plain(state))


exps = st.integers(-6, 0)
link = st.none() | ids


@given(st.builds(CreditState, ids, ids, money, st.booleans(), money, st.integers(0, 10**6), link, link,
                 st.lists(st.builds(Due, ids, money, st.lists(st.tuples(exps, st.integers(1, 99)),
                                                              unique_by=lambda t: t[0]).map(
                                                                  lambda xs: tuple(sorted(xs))))).map(tuple),
                 st.integers(0, 3650), st.none() | ids, st.none() | st.integers(0, 10**13),
                 st.none() | st.integers(0, 10**13), st.lists(ids, max_size=8).map(tuple)))
def test_credit_state_forms_agree(state):
    assert state.to_dict() == to_plain(state)
    assert CreditState.from_dict(state.to_dict()) == state == from_plain(CreditState, to_plain(state))


@given(st.builds(InvoiceEntry, ids, ids, ids, st.integers(0, 10**13), st.just("KES"), money, money, money, link,
                 link, st.none() | st.integers(0, 10**13), st.lists(st.tuples(link, link), max_size=8).map(tuple)))
def test_invoice_entry_forms_agree(entry):
    # The stored form flattens the express links ([prev1, next1, prev2, next2, ...], issue 17) and has them only
    # at level 1 and above (an entry of level 0 is as before the lanes); everything else is the generic form.
    plain = to_plain(entry)
    del plain["up"]
    if entry.up:
        plain["up"] = [i for pair in entry.up for i in pair]
    assert entry.to_dict() == plain
    assert InvoiceEntry.from_dict(entry.to_dict()) == entry == from_plain(InvoiceEntry, to_plain(entry))


@given(st.builds(RefundMark, ids, ids, ids, ids, st.lists(ids).map(tuple)))
def test_refund_mark_forms_agree(mark):
    assert mark.to_dict() == to_plain(mark)
    assert RefundMark.from_dict(mark.to_dict()) == mark == from_plain(RefundMark, to_plain(mark))


def test_an_empty_state_round_trips():
    assert StockState.from_dict(StockState("t", "A").to_dict()) == StockState("t", "A")
    assert CreditState.from_dict(CreditState("t", "C").to_dict()).credit_limit == Decimal(0)


# -- the fold's records -----------------------------------------------------------------------------
from streams.core.catalog import CatalogEntry  # noqa: E402
from streams.core.documents import DocumentLine, Invoice  # noqa: E402
from streams.core.fold import PaymentRecord, RefundResult, SaleRecord  # noqa: E402
from streams.core.outcomes import CreditFigures, Outcome, Reason  # noqa: E402
from streams.core.refunds import LineRefunded, RefundState  # noqa: E402

opt_ids = st.none() | ids
reasons = st.builds(Reason, ids, ids, opt_ids, st.none() | st.integers(0, 99), st.none() | st.integers(0, 99))
outcomes = st.builds(
    Outcome, ids, st.sampled_from(["SALE", "REFUND", "PAYMENT"]), ids, ids,
    st.sampled_from(["ACCEPTED", "REFUSED", "IDEMPOTENCY_CONFLICT"]), st.integers(0, 10**13), opt_ids, opt_ids,
    st.lists(reasons, max_size=3).map(tuple),
    st.none() | st.builds(CreditFigures, money, money, st.none() | money, money),
    st.lists(ids, max_size=3).map(tuple), st.none() | money, opt_ids)
lines = st.builds(DocumentLine, st.integers(1, 9), ids, st.integers(1, 99), money, money, money, money, money, money)
invoices = st.builds(Invoice, ids, ids, ids, opt_ids, ids, ids, ids, st.integers(0, 10**13),
                     st.lists(lines, max_size=3).map(tuple), money, money, money, st.none() | st.integers(0, 10**13))
sale_records = st.builds(
    SaleRecord, ids, ids, ids, ids, st.sampled_from(["POS", "ORDER"]), st.sampled_from(["ACCEPTED", "REFUSED"]),
    ids, st.integers(0, 10**13), st.sampled_from(["PAID", "ON_ACCOUNT"]), opt_ids, opt_ids, st.none() | outcomes,
    opt_ids, st.lists(ids, max_size=3).map(tuple), st.none() | invoices,
    st.builds(RefundState, st.lists(st.builds(LineRefunded, st.integers(1, 9), st.integers(0, 9), money, money),
                                    max_size=3).map(tuple), st.lists(ids, max_size=3).map(tuple)),
    st.lists(st.builds(RefundResult, ids, ids, ids, outcomes), max_size=3).map(tuple))


@given(sale_records)
def test_sale_record_forms_agree(record):
    assert record.to_dict() == to_plain(record)
    assert SaleRecord.from_dict(record.to_dict()) == record == from_plain(SaleRecord, to_plain(record))


@given(outcomes)
def test_outcome_forms_agree(outcome):
    assert outcome.to_dict() == to_plain(outcome)
    assert outcome.datum() == to_datum(outcome)
    assert Outcome.from_dict(outcome.to_dict()) == outcome == from_plain(Outcome, to_plain(outcome))


@given(st.builds(CatalogEntry, ids, ids, ids, ids, ids, money, st.integers(0, 10**13), ids, st.none() | money,
                 st.none() | money, st.booleans(), opt_ids, st.dictionaries(ids, ids, max_size=3)))
def test_catalog_entry_forms_agree(entry):
    assert entry.to_dict() == to_plain(entry)
    assert CatalogEntry.from_dict(entry.to_dict()) == entry == from_plain(CatalogEntry, to_plain(entry))


@given(st.builds(PaymentRecord, ids, ids, ids, ids, ids, st.sampled_from(["APPLIED", "REFUSED"])))
def test_payment_record_forms_agree(record):
    assert record.to_dict() == to_plain(record)
    assert PaymentRecord.from_dict(record.to_dict()) == record


def _core_dataclasses() -> list[type]:
    import dataclasses
    import importlib
    import pkgutil

    import streams.core as core
    found = []
    for mod in pkgutil.iter_modules(core.__path__):
        module = importlib.import_module(f"streams.core.{mod.name}")
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_evolve_is_replace_for_every_core_dataclass() -> None:
    """serde.evolve gives what dataclasses.replace gives (equal, same type, the original untouched) for every
    dataclass of the core, and refuses an unknown field name as replace does."""
    import dataclasses

    import pytest

    from streams.core.serde import evolve

    checked = 0
    for cls in _core_dataclasses():
        fields = [f for f in dataclasses.fields(cls) if f.init]
        if any(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields):
            continue  # needs arguments: covered by the classes below
        obj = cls()
        for f in fields:
            new = evolve(obj, **{f.name: "changed"})
            assert new == dataclasses.replace(obj, **{f.name: "changed"}) and type(new) is cls
            assert getattr(obj, f.name) != "changed" or getattr(cls(), f.name) == "changed"
        with pytest.raises(TypeError):
            evolve(obj, no_such_field=1)
        checked += 1
    state = StockState("t", "A", 5)
    assert evolve(state, on_hand=6, deltas=((1, 1),)) == replace(state, on_hand=6, deltas=((1, 1),))
    assert state.on_hand == 5
    credit = CreditState("t", "C", Decimal("10"))
    assert evolve(credit, on_hold=True) == replace(credit, on_hold=True)
    with pytest.raises(TypeError, match="no field"):
        evolve(state, nope=1)
    assert checked >= 3
