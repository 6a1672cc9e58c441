"""The compiled writers (stockledger/avrowriter.py) write fastavro's bytes for every schema we have, and
refuse what fastavro refuses."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockledger.avrowriter import compile_writer
from stockledger.codec import SCHEMA_DIR

SCHEMAS = sorted(SCHEMA_DIR.glob("*.avsc")) + sorted((SCHEMA_DIR / "history").glob("*.avsc"))
LONG = st.integers(-(1 << 63), (1 << 63) - 1)
TEXT = st.text(max_size=12)


def decimals(schema: dict) -> st.SearchStrategy[Decimal]:
    scale, precision = schema.get("scale", 0), schema["precision"]
    top = 10 ** precision - 1
    return st.builds(lambda n, e: Decimal(n).scaleb(-e), st.integers(-top, top), st.integers(0, scale))


def datums(schema: Any) -> st.SearchStrategy[Any]:
    """Valid datums of a parsed schema (wide ranges, the edges of long, unicode, empty arrays and maps)."""
    if isinstance(schema, list):
        return st.one_of(*(datums(s) for s in schema))
    if isinstance(schema, str):
        schema = {"type": schema}
    kind, logical = schema["type"], schema.get("logicalType")
    if kind == "bytes" and logical == "decimal":
        return decimals(schema)
    if kind == "long" and logical == "timestamp-millis":
        return st.one_of(st.integers(-(1 << 50), 1 << 50),
                         st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                                      timezones=st.just(UTC)))
    simple = {"null": st.none(), "boolean": st.booleans(), "int": st.integers(-(1 << 31), (1 << 31) - 1),
              "long": st.one_of(LONG, st.integers(-5000, 5000)), "string": TEXT, "bytes": st.binary(max_size=8),
              "double": st.floats(allow_nan=False), "float": st.floats(width=32, allow_nan=False)}
    if kind in simple:
        return simple[kind]
    if kind == "record":
        fields = {f["name"]: datums(f["type"]) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    if kind == "array":
        return st.lists(datums(schema["items"]), max_size=3)
    if kind == "map":
        return st.dictionaries(TEXT, datums(schema["values"]), max_size=3)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    raise AssertionError(f"no datums for {schema}")


def fastavro_bytes(schema: Any, datum: Any) -> bytes | None:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema, datum)
    except Exception:  # noqa: BLE001 (refused: the compiled writer must refuse it too)
        return None
    return buf.getvalue()


def compiled_bytes(write: Any, datum: Any) -> bytes | None:
    try:
        return write(datum)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001
        return None


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_every_schema_compiles(path: Path) -> None:
    assert compile_writer(fastavro.parse_schema(json.loads(path.read_text()))) is not None


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_same_bytes_as_fastavro(path: Path) -> None:
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    write = compile_writer(schema)
    assert write is not None

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(datums(schema))
    def check(datum: Any) -> None:
        expected = fastavro_bytes(schema, datum)
        assert expected is not None, datum
        assert write(datum) == expected

    check()


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_refuses_what_fastavro_refuses(path: Path) -> None:
    """A valid datum with one field replaced by a value of another kind (or removed): both refuse it,
    or both write the same bytes (a bool where an int goes, None in a nullable or boolean field...)."""
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    write = compile_writer(schema)
    assert write is not None
    wrong = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3), st.binary(max_size=3),
                      st.just(Decimal("1.5")), st.just([]), st.just({}), st.just(2 ** 63), st.just(-(2 ** 63) - 1),
                      st.just(Decimal("0.123456")), st.just(Decimal("1E+30")))
    names = [f["name"] for f in schema["fields"]]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(datums(schema), st.sampled_from(names), st.one_of(wrong, st.just("<missing>")))
    def check(datum: dict, name: str, value: Any) -> None:
        bad = dict(datum)
        if value == "<missing>":
            del bad[name]
        else:
            bad[name] = value
        got, expected = compiled_bytes(write, bad), fastavro_bytes(schema, bad)
        if got is None and expected is not None and isinstance(value, Decimal) and kinds[name] in ("int", "long"):
            return  # the one deliberate difference: a number that is not an integer in an int or long field
        assert got == expected

    kinds = {f["name"]: f["type"] if isinstance(f["type"], str) else "" if isinstance(f["type"], list)
             else f["type"]["type"] for f in schema["fields"]}
    check()


def test_float_in_a_long_is_refused_not_truncated() -> None:
    """The one deliberate difference: fastavro writes 1.5 (a float or a Decimal) in a long as 1; the compiled
    writer refuses it."""
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]})
    write = compile_writer(schema)
    assert write is not None
    for number in (1.5, Decimal("1.5")):
        assert fastavro_bytes(schema, {"x": number}) == b"\x02"
        with pytest.raises(TypeError, match="an integer is required, got "):
            write({"x": number})


def test_unsupported_schemas_fall_back() -> None:
    union = {"type": "record", "name": "U", "fields": [{"name": "x", "type": ["null", "string", "long"]}]}
    fixed = {"type": "record", "name": "F", "fields": [{"name": "x", "type": {"type": "fixed", "name": "X",
                                                                               "size": 2}}]}
    for schema in (union, fixed):
        assert compile_writer(fastavro.parse_schema(schema)) is None


def test_a_remembered_decimal_does_not_answer_for_an_equal_one_written_otherwise() -> None:
    """The compiled writer remembers decimal encodings by their text: 1.5 then 1.50000 (equal, but beyond
    the scale) is refused; 0 and -0, 1.5 and 1.50 write what fastavro writes, first time or not."""
    schema = fastavro.parse_schema(json.loads((SCHEMA_DIR / "ledger_payment.avsc").read_text()))
    write = compile_writer(schema)
    assert write is not None
    amount = "amount"
    base = {"tenant_id": "t", "payment_id": "P1", "customer_ref": None, "sale_id": "S1", "method": "CASH",
            "currency": "KES", "reference": None, "received_at": 1, "allocations": []}
    for text in ["1.5", "1.50", "1.5", "0", "-0", "0.0000", "-0", "1.50000", "1.5", "1E+3", "1000"]:
        datum = {**base, amount: Decimal(text)}
        assert compiled_bytes(write, datum) == fastavro_bytes(schema, datum), text
    assert compiled_bytes(write, {**base, amount: Decimal("1.50000")}) is None


_BRANCHES = ["long", "int", "double", "float", "boolean", "string", "bytes",
             {"type": "long", "logicalType": "timestamp-millis"},
             {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}]
_VALUES = [True, False, 1, 0, -5, 1.5, 2.0, Decimal("1.5"), Decimal("2"), "a", b"a", None,
           datetime(2024, 1, 1, tzinfo=UTC)]


@pytest.mark.parametrize("branch", _BRANCHES, ids=lambda b: b if isinstance(b, str) else b["logicalType"])
@pytest.mark.parametrize("nullable", [True, False], ids=["union", "plain"])
def test_every_kind_of_value_in_every_field_kind_is_written_or_refused_as_fastavro_does(branch: Any,
                                                                                       nullable: bool) -> None:
    """Each primitive and logical field, plain and as a union with null, against values of every kind: the
    same bytes or both refuse (fastavro picks a union's branch by type: a bool is not an int there, a Decimal
    not a double, only a bool a boolean), except the one deliberate difference (a number that is not an
    integer in an int or long field)."""
    schema = fastavro.parse_schema({"type": "record", "name": "One", "fields": [
        {"name": "v", "type": ["null", branch] if nullable else branch}]})
    write = compile_writer(schema)
    assert write is not None
    kind = branch if isinstance(branch, str) else branch["type"]
    for value in _VALUES:
        got, expected = compiled_bytes(write, {"v": value}), fastavro_bytes(schema, {"v": value})
        if (not nullable and kind in ("int", "long") and isinstance(value, (float, Decimal))
                and got is None and expected is not None):
            continue
        assert got == expected, value
