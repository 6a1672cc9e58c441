"""The fold shell's per-event isolation (streams/fold.py `fold_entry`) and admit's check against hostile records.

No stack: the codec here encodes with the project's own schemas and fastavro, exactly as stockledger/codec.py
does, under local schema ids instead of the registry's. A failing encoder is injected by wrapping it
(test-only), never through a production setting.
"""

from __future__ import annotations

import string
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockledger.codec import Codec, local_schema
from stockledger.topics import spec
from streams import fold as shell
from streams.admit import admission
from streams.core.fold import DeadLetter, DictState, FoldConfig, Input, fold_guarded, serial_fold, stock_of

from .core.foldkit import catalog, delta, sale, wide_body


class LocalCodec(Codec):
    """stockledger.codec.Codec with local schema ids (no registry)."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")

    def register(self, topic: str) -> int:
        sid = self._ids.get(topic)
        if sid is None:
            sid = len(self._ids) + 1
            self.adopt(topic, sid, local_schema(spec(topic).schema))
        return sid


class FailingCodec(LocalCodec):
    """Raises as fastavro does on an overflowing long when encoding one key's record of one topic."""

    def __init__(self, topic: str, key: str) -> None:
        super().__init__()
        self.poison = (topic, key)
        self.current_key: str | None = None

    def encode(self, topic: str, record: dict) -> bytes:
        if topic == self.poison[0] and f"{record.get('tenant_id')}:{record.get('sku')}" == self.poison[1]:
            raise OverflowError("int too big to convert")
        return super().encode(topic, record)


def decoded(codec: Codec, sends: list[tuple[str, bytes, Any]]) -> list[tuple[str, Any, dict]]:
    return [(topic, key, codec.decode(value)) for topic, value, key in sends]


def test_an_event_whose_output_cannot_be_encoded_is_dead_lettered_alone():
    codec = FailingCodec("stock.levels", "t1:POISON")
    state = DictState()
    config = FoldConfig()
    events = [delta("A", 3, event_id="a", ts=1), delta("POISON", 9, event_id="p", ts=2),
              delta("B", 4, event_id="b", ts=3)]
    sends: list = []
    for e in events:
        sends += shell.fold_entry(state, e, config, codec)
    out = decoded(codec, sends)
    assert [(topic, key) for topic, key, _ in out] == [("stock.levels", "t1:A"),
                                                       ("inventory.changes.dlq", events[1].key),
                                                       ("stock.levels", "t1:B")]
    letter = out[1][2]
    assert letter["error"] == "INTERNAL_ERROR: OverflowError('int too big to convert')"
    assert (letter["stage"], letter["topic"], letter["partition"], letter["offset"]) == \
        ("rule", "inventory.changes", 0, events[1].offset)
    assert (letter["key"], letter["value"]) == (events[1].key, events[1].value)
    assert [v["on_hand"] for t, _, v in out if t == "stock.levels"] == [3, 4]
    # the state has no trace of it: no stock, no event id
    assert set(state.tables["stock"]) == {"t1:A", "t1:B"} and set(state.tables["seen"]) == {"t1:a", "t1:b"}
    # the serial reference, given the same encoder, decides the same
    ref, outputs = serial_fold(events, config, encodes(codec))
    assert ref == state
    assert [o.error for o in outputs if isinstance(o, DeadLetter)] == [letter["error"]]


def test_an_event_whose_state_write_cannot_be_prepared_is_dead_lettered_alone(monkeypatch):
    codec = LocalCodec()
    real = shell.check_value

    def check_value(value: Any) -> bytes:
        if isinstance(value, dict) and value.get("sku") == "HUGE":
            raise ValueError("a state value of 5000000 bytes (at most 4194304)")
        return real(value)

    monkeypatch.setattr(shell, "check_value", check_value)
    state = DictState()
    events = [delta("A", 1, event_id="a"), delta("HUGE", 1, event_id="h"), delta("A", 2, event_id="a2", ts=2_000)]
    sends: list = []
    for e in events:
        sends += shell.fold_entry(state, e, FoldConfig(), codec)
    out = decoded(codec, sends)
    assert [t for t, _, _ in out] == ["stock.levels", "inventory.changes.dlq", "stock.levels"]
    assert out[1][2]["error"] == "INTERNAL_ERROR: ValueError('a state value of 5000000 bytes (at most 4194304)')"
    assert stock_of(state, "t1", "A").on_hand == 3 and stock_of(state, "t1", "HUGE") is None


def test_an_output_too_large_for_its_topic_is_dead_lettered_alone():
    codec = LocalCodec()
    state = DictState()
    lines = [{"sku": f"S{n:05d}-" + "x" * 400, "quantity": 1, "unit_price": "1"} for n in range(3000)]
    big = sale("BIG", lines, event_id="big", currency="USD")
    sends = shell.fold_entry(state, big, FoldConfig(), codec)
    out = decoded(codec, sends)
    assert len(out) == 1 and out[0][0] == "sales.dlq"
    assert out[0][2]["error"].startswith("INTERNAL_ERROR: ValueError('a ledger.invoices record of ")
    assert state.tables["sales"] == {} and state.tables["stock"] == {}


# -- hostile records: admit's check, then the fold, never an exception, and the serial fold agrees ---------
LONGS = st.integers(1, 1000) | st.sampled_from([
    0, -1, 999_999_999, 1_000_000_000, -1_000_000_000, 1_000_000_001, -1_000_000_001, 2 ** 31, 2 ** 53, 10 ** 12,
    10 ** 12 + 1, 2 ** 63 - 1, -(2 ** 63)]) | st.integers(-(2 ** 63), 2 ** 63 - 1)
DECIMALS = st.decimals(min_value=0, max_value=1000, places=2) | st.sampled_from([
    Decimal("0"), Decimal("0.0001"), Decimal("-1"), Decimal("99999999999999.9999"), Decimal("100000000000000"),
    Decimal("1E+30"), Decimal("-1E+40"), Decimal("12345678901234567890123456789.1234")]) | \
    st.decimals(min_value=-10 ** 20, max_value=10 ** 20, places=4, allow_nan=False, allow_infinity=False)
TEXT = st.sampled_from(["", "A", "x" * 20_000, "\u0000", "ü" * 10]) | st.text(string.printable, max_size=12)
CURRENCIES = st.sampled_from(["USD", "USD", "KES", "JPY", "BHD", "XXX", "usd", "", "€€€"])
SKUS = st.sampled_from(["A", "A", "B", "C", "", "x" * 5_000])


@st.composite
def hostile_records(draw) -> tuple[str, dict]:
    kind = draw(st.sampled_from(["inventory.change", "catalog.update", "sale.completed", "order.placed",
                                 "refund.issued", "payment.received", "customer.credit"]))
    n = draw(st.integers(0, 10 ** 6))
    base = {"event_id": draw(st.sampled_from([f"e{n}", "", "x" * 3000])), "event_type": kind,
            "tenant_id": draw(st.sampled_from(["t1", "t1", "", "t\u0000"])), "timestamp": draw(st.integers(0, 2 ** 42)),
            "source": None}
    if kind == "inventory.change":
        absolute = draw(st.booleans())
        data = {"sku": draw(SKUS), "location_id": None, "reason": None, "reference_id": None,
                "new_quantity": draw(LONGS) if absolute else None,
                "quantity_change": None if absolute else draw(LONGS)}
        return "inventory.changes", {**base, "data": data}
    if kind == "catalog.update":
        variants = [{"sku": draw(SKUS), "display_name": draw(TEXT), "price": draw(DECIMALS),
                     "mrp": draw(st.none() | DECIMALS), "is_active": True, "stock_quantity": draw(st.none() | LONGS),
                     "attributes": {}, "media": []} for _ in range(draw(st.integers(0, 3)))]
        data = {"product_group_id": draw(TEXT), "group_name": draw(TEXT), "is_active": draw(st.booleans()),
                "tax_rate": draw(st.none() | DECIMALS), "category_hierarchy": [], "variants": variants}
        return "catalog.updates", {**base, "data": data}
    if kind in ("sale.completed", "order.placed"):
        lines = [{"sku": draw(SKUS), "quantity": draw(LONGS), "unit_price": draw(st.none() | DECIMALS),
                  "discount_percent": draw(st.none() | DECIMALS), "tax_percent": draw(st.none() | DECIMALS)}
                 for _ in range(draw(st.integers(0, 3)))]
        terms = draw(st.sampled_from(["PAID", "ON_ACCOUNT"]))
        payments = draw(st.none() | st.lists(st.fixed_dictionaries({"method": st.just("CASH"), "amount": DECIMALS}),
                                             max_size=2))
        data = {"sale_id": draw(TEXT), "channel": "POS" if kind == "sale.completed" else "WEB",
                "customer_ref": draw(st.sampled_from([None, "C1", ""])), "currency": draw(CURRENCIES),
                "location_id": None, "payment_terms": terms, "line_items": lines, "payments": payments}
        return "sales", {**base, "data": data}
    if kind == "refund.issued":
        lines = [{"sku": draw(SKUS), "quantity": draw(LONGS)} for _ in range(draw(st.integers(0, 3)))]
        data = {"refund_id": draw(TEXT), "sale_id": draw(TEXT), "lines": lines, "restock": draw(st.booleans()),
                "refund_method": draw(st.sampled_from(["CASH", "CREDIT"]))}
        return "refunds", {**base, "data": data}
    if kind == "payment.received":
        data = {"payment_id": draw(TEXT), "customer_ref": draw(st.sampled_from(["C1", "", "C2"])),
                "invoice_id": draw(st.none() | TEXT), "amount": draw(DECIMALS), "currency": draw(CURRENCIES),
                "method": "BANK"}
        return "payments", {**base, "data": data}
    data = {"customer_ref": draw(st.sampled_from(["C1", "", "C2"])), "credit_limit": draw(DECIMALS),
            "on_hold": draw(st.booleans())}
    return "customers", {**base, "data": data}


def _raw(topic: str, record: dict) -> bytes | None:
    """The record's Avro body (decimals of any size, as a producer of its own may write them), or None when
    Avro cannot carry it at all (a long beyond 64 bits)."""
    try:
        return wide_body(topic, record)
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError):
        return None


# A shop whose SKU A is at the on_hand bound, and B priced near the amount bound: folded once
SHOP = [catalog("G", [{"sku": "A", "price": "10", "stock_quantity": 1_000_000_000},
                      {"sku": "B", "price": "99999999999", "stock_quantity": 5}], event_id="shop"),
        *(delta("A", 1_000_000_000, event_id=f"near{n}", ts=2_000 + n) for n in range(999))]
SHOP_STATE, SHOP_OUT = serial_fold(SHOP)


def encodes(codec: Codec):
    return lambda d: [codec.encode(o.topic, o.value) for o in d.out if not isinstance(o, DeadLetter)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(hostile_records(), min_size=1, max_size=12))
def test_hostile_records_are_applied_or_dead_lettered_and_the_serial_fold_agrees(records):
    codec = LocalCodec()
    config = FoldConfig()
    assert stock_of(SHOP_STATE, "t1", "A").on_hand == 10 ** 12
    state = DictState(SHOP_STATE.tables)
    admitted: list[Input] = []
    for offset, (topic, record) in enumerate(records):
        raw = _raw(topic, record)
        if raw is None:
            continue
        refusal = admission(record, topic)  # never raises
        if refusal is not None:
            reason, stage = refusal
            assert reason and stage in ("validate", "rule")
            continue
        admitted.append(Input(topic, 0, offset, b"k", raw, record))
    worker: list = []
    for inp in admitted:
        sends = shell.fold_entry(state, inp, config, codec)  # never raises
        for topic, value, _ in sends:
            if topic.endswith(".dlq"):
                letter = codec.decode(value)
                assert letter["error"].split(":")[0].isupper() and letter["value"] == inp.value
        worker += [topic for topic, _, _ in sends]
    # the reference: serial_fold's step (fold_guarded) over the same shop, with the same encoder
    ref = DictState(SHOP_STATE.tables)
    outputs: list = []
    for inp in admitted:
        outputs += fold_guarded(ref, inp, config, encodes(codec))[0]
    assert ref == state
    assert [o.input.topic + ".dlq" if isinstance(o, DeadLetter) else o.topic for o in outputs] == worker
    for key, raw in state.tables["stock"].items():
        assert abs(raw["on_hand"]) <= 10 ** 12, key


def test_admission_names_the_bound_and_never_raises():
    record = {"event_id": "e1", "event_type": "inventory.change", "tenant_id": "t1", "timestamp": 0,
              "data": {"sku": "A", "quantity_change": 2 ** 63 - 1}}
    assert admission(record, "inventory.changes") == (
        "QUANTITY_OUT_OF_RANGE: data.quantity_change: 9223372036854775807 is beyond +-1,000,000,000", "rule")
    weird = {"event_id": "e1", "event_type": "sale.completed", "tenant_id": "t1", "data": {"line_items": [object()]}}
    reason, stage = admission(weird, "sales")
    assert stage == "rule" and reason


@pytest.mark.parametrize("quantity", [1_000_000_000, -1_000_000_000])
def test_a_quantity_at_the_bound_is_admitted(quantity):
    record = {"event_id": "e1", "event_type": "inventory.change", "tenant_id": "t1", "timestamp": 0,
              "data": {"sku": "A", "quantity_change": quantity, "new_quantity": None}}
    assert admission(record, "inventory.changes") is None
