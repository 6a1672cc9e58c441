"""The compiled readers (stockledger/avroreader.py) return fastavro's record for every schema we have, and
for any bytes either return what fastavro returns or raise where fastavro raises (or where the module
docstring says the compiled reader is stricter)."""

from __future__ import annotations

import io
import json
import re
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockledger.avroreader import compile_reader
from stockledger.codec import SCHEMA_DIR, Codec, DecodeError, local_schema
from tests.stockledger.test_avrowriter import datums, decimals

SCHEMAS = sorted(SCHEMA_DIR.glob("*.avsc")) + sorted((SCHEMA_DIR / "history").glob("*.avsc"))
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])

# Every kind the reader compiles that our own schemas do not use (and some they do, nested otherwise).
ALL_KINDS = {"type": "record", "name": "AllKinds", "fields": [
    {"name": "flag", "type": "boolean"}, {"name": "small", "type": "int"}, {"name": "single", "type": "float"},
    {"name": "double", "type": "double"}, {"name": "raw", "type": "bytes"},
    {"name": "fixed", "type": {"type": "fixed", "name": "Three", "size": 3}},
    {"name": "enum", "type": {"type": "enum", "name": "Letter", "symbols": ["A", "B", "C"]}},
    {"name": "three", "type": ["null", "string", "long"]}, {"name": "one", "type": ["string"]},
    {"name": "map", "type": {"type": "map", "values": ["null", "int"]}},
    {"name": "nulls", "type": {"type": "array", "items": "null"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "time_ms", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "time_us", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "local_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "fixed_dec", "type": {"type": "fixed", "name": "Eight", "size": 8, "logicalType": "decimal",
                                   "precision": 10, "scale": 2}},
    {"name": "wide_dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 10}},
    {"name": "unknown_logical", "type": {"type": "string", "logicalType": "no-such-type"}},
    {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": {"type": "array",
                                                                                      "items": "long"}}}},
    {"name": "empty", "type": {"type": "record", "name": "Empty", "fields": []}},
]}
LONG = st.integers(-(1 << 63), (1 << 63) - 1)


def all_kinds() -> st.SearchStrategy[dict]:
    fields = {f["name"]: datums(f["type"]) for f in ALL_KINDS["fields"]
              if f["name"] in ("flag", "raw", "three", "one", "map", "nulls", "nested", "unknown_logical")}
    fields.update(small=st.integers(-(1 << 31), (1 << 31) - 1), single=st.floats(width=32),
                  double=st.floats(), fixed=st.binary(min_size=3, max_size=3), enum=st.sampled_from("ABC"),
                  day=st.integers(-700_000, 2_900_000), uuid=st.uuids().map(str),
                  time_ms=st.integers(0, 86_399_999), time_us=st.integers(0, 86_399_999_999),
                  ts_us=st.integers(-(1 << 55), 1 << 55), local_ms=st.integers(-(1 << 45), 1 << 45),
                  fixed_dec=decimals({"precision": 10, "scale": 2}),
                  wide_dec=decimals({"precision": 38, "scale": 10}), empty=st.just({}))
    return st.fixed_dictionaries({f["name"]: fields[f["name"]] for f in ALL_KINDS["fields"]})


def parsed(path: Path) -> Any:
    return fastavro.parse_schema(json.loads(path.read_text()))


def encode(schema: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, dicts in the same key order, the same repr for floats
    (nan, -0.0), datetimes, times, dates, Decimals and UUIDs."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (float, datetime, date, time, Decimal, UUID)):
        return repr(a) == repr(b) and (a == b or isinstance(a, float))
    return bool(a == b)


# The deliberate differences of the module docstring where fastavro returns a record and the compiled reader
# raises. (An array or map block count beyond the bytes left makes fastavro raise too, for the item types of
# these schemas, so it is not one of them here.)
STRICTER = re.compile(r"varint at byte \d+ is longer than 10 bytes or beyond 64 bits"
                      r"|(union|enum) index -\d+ out of range 0\.\.\d+"
                      r"|decimal of \d+ bytes is longer than 256")


def agree(schema: Any, read: Any, body: bytes, prefix: bytes = b"") -> str:
    """Read `body` both ways ("ok" / "raise" / "stricter"); fail unless they agree as the docstring says."""
    try:
        theirs: Any = fastavro.schemaless_reader(io.BytesIO(body), schema, None)
        theirs_ok = True
    except Exception as exc:  # noqa: BLE001
        theirs, theirs_ok = exc, False
    try:
        ours = read(prefix + body, len(prefix))
    except Exception as exc:  # noqa: BLE001
        if theirs_ok:
            assert isinstance(exc, ValueError) and STRICTER.fullmatch(str(exc)), (body, exc, theirs)
            return "stricter"
        return "raise"
    assert theirs_ok, (body, ours, theirs)
    assert same(ours, theirs), (body, ours, theirs)
    return "ok"


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_every_schema_compiles(path: Path) -> None:
    assert compile_reader(parsed(path)) is not None


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_same_record_as_fastavro(path: Path) -> None:
    """Generated records, encoded by fastavro, read at any position of a longer buffer: fastavro's record."""
    schema = parsed(path)
    read = compile_reader(schema)
    assert read is not None

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(datums(schema), st.binary(max_size=6))
    def check(datum: Any, prefix: bytes) -> None:
        body = encode(schema, datum)
        assert agree(schema, read, body, prefix) in ("ok", "raise")  # raise: a timestamp beyond datetime's years

    check()


def test_every_kind_it_compiles_reads_as_fastavro() -> None:
    schema = fastavro.parse_schema(ALL_KINDS)
    read = compile_reader(schema)
    assert read is not None

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(all_kinds())
    def check(datum: dict) -> None:
        body = encode(schema, datum)
        assert agree(schema, read, body, b"\x00\x01") == "ok"

    check()


CORRUPTIBLE = [*SCHEMAS, "all kinds"]


def schema_of(path: Path | str) -> tuple[Any, st.SearchStrategy[Any]]:
    if isinstance(path, str):  # without its array of nulls: fastavro reads a corrupted count of them forever
        fields = [f for f in ALL_KINDS["fields"] if f["name"] != "nulls"]
        return (fastavro.parse_schema({**ALL_KINDS, "fields": fields}),
                all_kinds().map(lambda datum: {k: v for k, v in datum.items() if k != "nulls"}))
    schema = parsed(path)
    return schema, datums(schema)


@pytest.mark.parametrize("path", CORRUPTIBLE, ids=lambda p: getattr(p, "name", p))
def test_corrupted_encodings_are_read_as_fastavro_reads_them_or_refused(path: Path | str) -> None:
    """Every truncation of a record raises in both; each byte flipped (three ways), bytes inserted, bytes
    appended (ignored by both) and random bodies: the same record, both raise, or a documented refusal."""
    schema, records = schema_of(path)
    read = compile_reader(schema)
    assert read is not None

    @SLOW
    @given(records, st.integers(1, 255), st.binary(min_size=1, max_size=12), st.binary(max_size=64))
    def check(datum: Any, mask: int, extra: bytes, noise: bytes) -> None:
        body = encode(schema, datum)
        for k in range(len(body)):
            assert agree(schema, read, body[:k]) == "raise", k
        for k in range(len(body)):
            for flip in (mask, 0x80, 0xFF):
                agree(schema, read, body[:k] + bytes([body[k] ^ flip]) + body[k + 1:])
            agree(schema, read, body[:k] + extra + body[k:])
        whole = agree(schema, read, body)  # "raise": a timestamp beyond datetime's years, in both
        assert agree(schema, read, body + extra) == whole in ("ok", "raise")
        if whole == "ok":
            assert same(read(body + extra, 0), read(body, 0))
        agree(schema, read, noise)
        agree(schema, read, noise + body)

    check()


def test_trailing_bytes_are_ignored_as_fastavro_ignores_them() -> None:
    schema = local_schema("inventory_change")
    read = compile_reader(schema)
    assert read is not None
    body = encode(schema, {"event_id": "e1", "event_type": "inventory.change", "tenant_id": "t1", "timestamp": 5,
                           "data": {"sku": "A", "quantity_change": -3}})
    for tail in (b"\x00", b"\xff" * 40, body):
        assert same(read(b"\x00" * 5 + body + tail, 5), fastavro.schemaless_reader(io.BytesIO(body + tail), schema))


# -- hostile lengths and counts ---------------------------------------------------------------------------------
def catalog_head() -> tuple[Any, bytes]:
    """catalog.update's bytes up to its variants array (its block count comes next)."""
    schema = local_schema("catalog_update")
    full = encode(schema, {"event_id": "e", "event_type": "catalog.update", "tenant_id": "t", "timestamp": 0,
                           "data": {"product_group_id": "g", "group_name": "G", "variants": []}})
    assert full.endswith(b"\x00")
    return schema, full[:-1]


@pytest.mark.parametrize("count", [1 << 62, (1 << 63) - 1, -(1 << 63), 10 ** 6])
def test_a_huge_block_count_raises_before_reading_items(count: int) -> None:
    schema, head = catalog_head()
    read = compile_reader(schema)
    assert read is not None
    zigzag = (count << 1) ^ (count >> 63)
    body = head + fastavro_long(zigzag) + (fastavro_long(4) if count < 0 else b"") + b"\x02A" * 3
    with pytest.raises(ValueError, match=r"^block count \d+ is more than \d+ bytes left can hold$"):
        read(body, 0)
    with pytest.raises(Exception):  # noqa: B017 (fastavro: whatever the end of the body makes it raise)
        fastavro.schemaless_reader(io.BytesIO(body), schema, None)


def fastavro_long(zigzag: int) -> bytes:
    out = bytearray()
    while zigzag >= 0x80:
        out.append(zigzag & 0x7F | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def test_items_of_no_bytes_are_capped_at_the_bytes_left() -> None:
    """An array of nulls takes no bytes per item: fastavro would build as many Nones as any count says (2^62:
    it never returns); the compiled reader refuses a count beyond the bytes left, over all blocks together."""
    schema = fastavro.parse_schema({"type": "array", "items": "null"})
    read = compile_reader(schema)
    assert read is not None
    three = b"\x06\x00\x00\x00"  # 3 nulls, the end of the array, 2 bytes ignored
    assert read(three, 0) == [None] * 3 == fastavro.schemaless_reader(io.BytesIO(three), schema)
    for body in (fastavro_long(1 << 63) + b"\x00", b"\x06\x00\x00", b"\x04\x04\x00\x00\x00"):
        with pytest.raises(ValueError, match=r"^block count \d+ is more than \d+ bytes left can hold$"):
            read(body, 0)


@pytest.mark.parametrize(("length", "error"), [
    (fastavro_long(1 << 62), r"^Expected 2305843009213693952 bytes, read 3$"),
    (b"\x0c", r"^Expected 6 bytes, read 3$"),
    (b"\x01", r"^negative length$"),
    (fastavro_long((1 << 64) - 1), r"^negative length -9223372036854775808 at byte 11$"),
])
def test_a_length_beyond_the_bytes_left_or_negative_raises_in_both(length: bytes, error: str) -> None:
    for kind in ("string", "bytes"):
        schema = fastavro.parse_schema({"type": kind})
        read = compile_reader(schema)
        assert read is not None
        with pytest.raises(ValueError if "negative" in error else EOFError, match=error):
            read(b"\x00" + length + b"abc", 1)
        with pytest.raises(EOFError):
            fastavro.schemaless_reader(io.BytesIO(length + b"abc"), schema, None)


def test_invalid_utf8_raises_in_both() -> None:
    schema = fastavro.parse_schema({"type": "string"})
    read = compile_reader(schema)
    assert read is not None
    for raw in (b"\xff", b"\xed\xa0\x80", b"a\xc3"):
        body = fastavro_long(2 * len(raw)) + raw
        with pytest.raises(UnicodeDecodeError):
            read(body, 0)
        with pytest.raises(UnicodeDecodeError):
            fastavro.schemaless_reader(io.BytesIO(body), schema, None)


# -- the deliberate differences ---------------------------------------------------------------------------------
def test_a_varint_beyond_64_bits_is_refused_where_fastavro_wraps_it() -> None:
    schema = fastavro.parse_schema({"type": "long"})
    read = compile_reader(schema)
    assert read is not None
    longest = b"\xfe" + b"\xff" * 8 + b"\x01"  # 10 bytes: the largest long
    assert read(longest, 0) == (1 << 63) - 1 == fastavro.schemaless_reader(io.BytesIO(longest), schema)
    for body in (b"\xff" * 9 + b"\x7f", b"\xff" * 11 + b"\x01", b"\x80" * 10 + b"\x00"):
        fastavro.schemaless_reader(io.BytesIO(body), schema)  # some number
        with pytest.raises(ValueError, match=r"^varint at byte 0 is longer than 10 bytes or beyond 64 bits$"):
            read(body, 0)


def test_a_negative_union_or_enum_index_is_refused_where_fastavro_counts_from_the_end() -> None:
    union = fastavro.parse_schema(["null", "string"])
    enum = fastavro.parse_schema({"type": "enum", "name": "E", "symbols": ["A", "B"]})
    assert fastavro.schemaless_reader(io.BytesIO(b"\x01\x02a"), union) == "a"
    assert fastavro.schemaless_reader(io.BytesIO(b"\x01"), enum) == "B"
    read_union, read_enum = compile_reader(union), compile_reader(enum)
    assert read_union is not None and read_enum is not None
    with pytest.raises(ValueError, match=r"^union index -1 out of range 0\.\.1$"):
        read_union(b"\x01\x02a", 0)
    with pytest.raises(ValueError, match=r"^enum index -1 out of range 0\.\.1$"):
        read_enum(b"\x01", 0)
    with pytest.raises(ValueError, match=r"^union index 2 out of range 0\.\.1$"):
        read_union(b"\x04", 0)


def test_a_decimal_beyond_its_precision_is_rounded_as_fastavro_rounds_it_and_a_huge_one_refused() -> None:
    """More digits than the precision: fastavro rounds them to it (its context has the schema's precision),
    and so does the compiled reader; trailing zeros beyond it (as fastavro's writer writes 10^18 - 1 at scale
    4 in a precision of 18) stay exact. An encoding longer than 256 bytes is refused: fastavro's conversion
    takes time quadratic in its length."""
    for kind in ({"type": "bytes"}, {"type": "fixed", "name": "Three", "size": 3}):
        schema = fastavro.parse_schema({**kind, "logicalType": "decimal", "precision": 4, "scale": 2})
        read = compile_reader(schema)
        assert read is not None
        length = b"\x06" if kind["type"] == "bytes" else b""
        for raw, text in ((b"\x00\x27\x0f", "99.99"), (b"\xff\xd8\xf1", "-99.99"), (b"\x0f\x42\x40", "1.000E+4"),
                          (b"\x01\x00\x00", "655.4"), (b"\x01\x86\x9f", "1000"), (b"\xfe\x79\x61", "-1000")):
            for _ in range(2):  # read, then remembered
                ours, theirs = read(length + raw, 0), fastavro.schemaless_reader(io.BytesIO(length + raw), schema)
                assert same(ours, theirs) and str(ours) == text, (raw, ours, theirs)
    schema = fastavro.parse_schema({"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4})
    read = compile_reader(schema)
    assert read is not None
    for size in (17, 64, 256):
        longest = fastavro_long(2 * size) + b"\x7f" + b"\xab" * (size - 1)
        assert same(read(longest, 0), fastavro.schemaless_reader(io.BytesIO(longest), schema))
    huge = fastavro_long(2 * 257) + b"\x00" * 257
    assert fastavro.schemaless_reader(io.BytesIO(huge), schema) == 0
    with pytest.raises(ValueError, match=r"^decimal of 257 bytes is longer than 256$"):
        read(huge, 0)


@pytest.mark.parametrize("stem", ["sale", "payment", "customer_credit", "catalog_update"])
def test_decimals_wider_than_the_schema_are_read_as_fastavro_reads_them(stem: str) -> None:
    """A producer of its own may write amounts of any width (tests/streams/core/foldkit.wide_schema: the
    wire format has no precision): read with the real schema, both round them to its precision alike."""
    from tests.streams.core.foldkit import wide_schema

    schema, wide = local_schema(stem), wide_schema(stem)
    read = compile_reader(schema)
    assert read is not None

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(datums(wide))
    def check(datum: Any) -> None:
        assert agree(schema, read, encode(wide, datum)) in ("ok", "raise")  # raise: a timestamp beyond the years

    check()


def test_a_remembered_decimal_is_the_value_of_its_own_bytes() -> None:
    schema = local_schema("ledger_payment")
    read = compile_reader(schema)
    assert read is not None
    base = {"tenant_id": "t", "payment_id": "P1", "customer_ref": None, "sale_id": "S1", "method": "CASH",
            "currency": "KES", "reference": None, "received_at": 1, "allocations": []}
    for text in ["1.5", "-1.5", "0", "1.5", "-0.0001", "99999999999999.9999", "0", "-1.5"]:
        body = encode(schema, {**base, "amount": Decimal(text)})
        got = read(body, 0)["amount"]
        assert same(got, fastavro.schemaless_reader(io.BytesIO(body), schema)["amount"])
        assert got == Decimal(text)


def test_what_it_does_not_compile_is_none() -> None:
    linked = {"type": "record", "name": "Node", "fields": [{"name": "v", "type": "long"},
                                                          {"name": "next", "type": ["null", "Node"]}]}
    assert compile_reader(fastavro.parse_schema(linked)) is None
    deep: Any = "long"
    for _ in range(12):  # 24 nested loops: more than Python's compiler takes
        deep = {"type": "array", "items": deep}
    assert compile_reader(fastavro.parse_schema(deep)) is None
    shallow: Any = "long"
    for _ in range(8):
        shallow = {"type": "array", "items": ["null", shallow]}
    read = compile_reader(fastavro.parse_schema(shallow))
    assert read is not None
    datum: Any = 7
    for _ in range(8):
        datum = [datum, None]
    body = encode(fastavro.parse_schema(shallow), datum)
    assert read(body, 0) == datum == fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(shallow))


# -- the codec --------------------------------------------------------------------------------------------------
def local_codec(sid: int, topic: str, schema: Any) -> Codec:
    codec = Codec("http://127.0.0.1:9")  # no registry: the schema is adopted under `sid`
    codec.adopt(topic, sid, schema)
    return codec


def test_the_codec_reads_with_the_compiled_reader_and_reports_a_truncated_body_with_its_schema_id() -> None:
    codec = local_codec(7, "inventory.changes", local_schema("inventory_change"))
    record = {"event_id": "e1", "event_type": "inventory.change", "tenant_id": "t1", "timestamp": 1_767_225_600_123,
              "source": None, "data": {"sku": "A", "location_id": None, "new_quantity": None, "quantity_change": -3,
                                       "reason": None, "reference_id": None}}
    value = codec.encode("inventory.changes", record)
    assert value[:5] == b"\x00\x00\x00\x00\x07"
    decoded = codec.decode(value)
    assert same(decoded, fastavro.schemaless_reader(io.BytesIO(value[5:]), local_schema("inventory_change")))
    assert decoded["timestamp"] == datetime.fromisoformat("2026-01-01T00:00:00.123+00:00")
    assert codec._read[7].__code__.co_filename == "<avro reader stockledger.events.InventoryChange>"
    for buffer in (bytearray(value), memoryview(value)):
        assert same(codec.decode(buffer), decoded)
    with pytest.raises(DecodeError) as err:
        codec.decode(value[:16])  # event_type ("inventory.change", 16 bytes) cut after 7
    assert str(err.value) == "corrupt Avro body for schema id 7: EOFError('Expected 16 bytes, read 7')"
    with pytest.raises(DecodeError) as err:
        codec.decode(value[:5])
    assert str(err.value) == "corrupt Avro body for schema id 7: EOFError('Avro body ends early (0 bytes)')"
    with pytest.raises(DecodeError) as err:
        codec.decode(value[:5] + b"\xff\xff\xff")
    assert str(err.value) == "corrupt Avro body for schema id 7: EOFError('Avro body ends early (3 bytes)')"


def test_the_codec_keeps_fastavro_for_a_schema_the_reader_does_not_compile() -> None:
    linked = fastavro.parse_schema({"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]})
    codec = local_codec(9, "inventory.changes", linked)
    record = {"v": 1, "next": {"v": 2, "next": None}}
    value = codec.encode("inventory.changes", record)
    assert codec.decode(value) == record
    with pytest.raises(DecodeError, match=r"^corrupt Avro body for schema id 9: "):
        codec.decode(value[:-1])
