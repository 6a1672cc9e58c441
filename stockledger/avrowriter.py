"""Compiled Avro writers: one generated Python function per schema, for the codec's hot path.

fastavro's generic writer walks the schema for every record and calls back into Python for each
decimal; a writer generated once per schema (straight-line code per field, a table of the small
longs) writes the same bytes in a third to a half of the time. `compile_writer(schema)` returns
`write(datum) -> bytes` for a parsed schema, or None when the schema uses something it does not
compile (a union other than null and one type, a named-type reference, fixed, a default it does not
know); the codec then keeps fastavro for that schema.

The bytes are fastavro's (`schemaless_writer`), field for field; tests/stockledger/test_avrowriter.py
checks that on every schema of stockledger/schemas with generated records. Where a datum is not
valid for its schema, both raise (the fold dead-letters that event), except that a float in an int or
long field is refused here, where fastavro would truncate it silently.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

from stockledger.codegen import Source

__all__ = ["compile_writer", "decimal_bytes"]

_SCALE = Context(prec=60)  # scaling a decimal of at most 38 digits by its scale is exact in it


def decimal_bytes(data: Any, schema: dict) -> Any:
    """A Decimal as Avro `bytes`/`decimal` (big-endian two's complement of the unscaled value, fewest bytes):
    byte for byte fastavro's `prepare_bytes_decimal`, with its errors, at less than half the cost."""
    if not isinstance(data, Decimal):
        return data
    _, digits, exp = data.as_tuple()
    if len(digits) > schema["precision"]:
        raise ValueError("The decimal precision is bigger than allowed by schema")
    scale = schema.get("scale", 0)
    if not isinstance(exp, int) or exp + scale < 0:
        raise ValueError("Scale provided in schema does not match the decimal")
    unscaled = int(data.scaleb(scale, _SCALE))
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


_DECIMALS_KEPT = 4096  # per decimal field of a schema: the encodings of the last values written, by their text


def _decimal_field(schema: dict) -> Callable[[Any], bytes]:
    """A decimal field's writer (length and bytes): `decimal_bytes`, remembering the encoding by the
    value's text (str of a Decimal is one-to-one with its sign, digits and exponent, so the checks hold
    for every text remembered); money repeats (prices, tax rates, zero)."""
    kept: dict[str, bytes] = {}

    def write(value: Any) -> bytes:
        if value.__class__ is not Decimal:
            return _bytes(decimal_bytes(value, schema))
        text = str(value)
        out = kept.get(text)
        if out is None:
            out = _bytes(decimal_bytes(value, schema))
            if len(kept) >= _DECIMALS_KEPT:
                kept.clear()
            kept[text] = out
        return out
    return write


_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = 1 << 12  # zigzag encodings of -_SMALL.._SMALL-1 are kept ready


def _zigzag(n: int) -> bytes:
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    n = (n << 1) ^ (n >> 63)
    if n < 1 << 49:  # up to 7 bytes, unrolled (a timestamp in millis takes 6)
        if n < 1 << 42:
            return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                          n >> 28 & 0x7F | 0x80, n >> 35)) if n >= 1 << 35 else _varint(n)
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28 & 0x7F | 0x80, n >> 35 & 0x7F | 0x80, n >> 42))
    return _varint(n)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_READY = [_zigzag(n) for n in range(-_SMALL, _SMALL)]


def _long(n: Any) -> bytes:
    if type(n) is not int:
        if not isinstance(n, int):  # a bool is an int (fastavro writes it as 0 or 1)
            raise TypeError(f"an integer is required, got {type(n).__name__}")
        n = int(n)
    if -_SMALL <= n < _SMALL:
        return _READY[n + _SMALL]
    return _zigzag(n)


def _string(value: Any) -> bytes:
    if type(value) is not str:
        raise TypeError(f"must be string, got {type(value).__name__}")
    raw = value.encode()
    return _long(len(raw)) + raw


def _bytes(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"must be bytes, got {type(value).__name__}")
    return _long(len(value)) + bytes(value)


def _timestamp(value: Any, schema: Any, prepare: Callable[[Any, Any], Any]) -> bytes:
    """timestamp-millis: an int as it is, a datetime through fastavro's own conversion."""
    return _long(value if type(value) is int else prepare(value, schema))


_DOUBLE, _FLOAT = struct.Struct("<d").pack, struct.Struct("<f").pack
_PRIMITIVE = {"string": "_string({v})", "long": "_long({v})", "int": "_long({v})", "bytes": "_bytes({v})",
              "boolean": '(b"\\x01" if {v} else b"\\x00")', "double": "_DOUBLE({v})", "float": "_FLOAT({v})",
              "null": '_null({v})'}


# A value fastavro's union refuses for a branch its plain writer would take (a bool is not an int there, a
# Decimal not a double, only a bool is a boolean).
_UNION_REFUSES = {"int": "{v}.__class__ is bool", "long": "{v}.__class__ is bool",
                  "float": "{v}.__class__ is bool or {v}.__class__ is Decimal",
                  "double": "{v}.__class__ is bool or {v}.__class__ is Decimal", "boolean": "{v}.__class__ is not bool"}


def _not_in_union(value: Any, schema: Any) -> None:
    raise ValueError(f"{value!r} (type {type(value)}) do not match {schema}")


def _null(value: Any) -> bytes:
    if value is not None:
        raise ValueError(f"{value!r} is not null")
    return b""


class _Unsupported(Exception):
    pass


class _Compiler(Source):
    def value(self, schema: Any, v: str, indent: int) -> None:
        """Code appending the encoding of expression `v` (a local name) to `out`."""
        if isinstance(schema, str):
            if schema not in _PRIMITIVE:
                raise _Unsupported(f"named type {schema}")
            self.emit(indent, f"add({_PRIMITIVE[schema].format(v=v)})")
            return
        if isinstance(schema, list):
            branches = [s for s in schema if s != "null"]
            if len(schema) != 2 or "null" not in schema or len(branches) != 1:
                raise _Unsupported(f"union {schema}")
            null_at = schema.index("null")
            self.emit(indent, f"if {v} is None:")
            self.emit(indent + 1, f"add({_long(null_at)!r})")
            self.emit(indent, "else:")
            branch = branches[0]
            refused = _UNION_REFUSES.get(branch if isinstance(branch, str) else branch.get("type"))
            if refused is not None:  # fastavro picks a union's branch by type, stricter than its plain writers
                self.emit(indent + 1, f"if {refused.format(v=v)}:")
                self.emit(indent + 2, f"_not_in_union({v}, {self.const(schema)})")
            self.emit(indent + 1, f"add({_long(1 - null_at)!r})")
            self.value(branch, v, indent + 1)
            return
        kind, logical = schema["type"], schema.get("logicalType")
        if kind == "bytes" and logical == "decimal":
            self.emit(indent, f"add({self.const(_decimal_field(schema))}({v}))")
        elif kind == "long" and logical == "timestamp-millis":
            self.emit(indent, f"add(_long({v}) if type({v}) is int else _timestamp({v}, {self.const(schema)}, "
                              "_prepare_ts))")
        elif logical is not None and kind in _PRIMITIVE:
            raise _Unsupported(f"logical type {logical}")
        elif kind in _PRIMITIVE:
            self.value(kind, v, indent)
        elif kind == "record":
            self.record(schema, v, indent)
        elif kind == "array":
            item = self.name("_i")
            self.emit(indent, f"if len({v}):")
            self.emit(indent + 1, f"add(_long(len({v})))")
            self.emit(indent + 1, f"for {item} in {v}:")
            self.value(schema["items"], item, indent + 2)
            self.emit(indent, 'add(b"\\x00")')
        elif kind == "map":
            key, val = self.name("_k"), self.name("_m")
            self.emit(indent, f"if len({v}):")
            self.emit(indent + 1, f"add(_long(len({v})))")
            self.emit(indent + 1, f"for {key}, {val} in {v}.items():")
            self.emit(indent + 2, f"add(_string({key}))")
            self.value(schema["values"], val, indent + 2)
            self.emit(indent, 'add(b"\\x00")')
        elif kind == "enum":
            index = {s: _long(i) for i, s in enumerate(schema["symbols"])}
            self.emit(indent, f"add({self.const(index)}[{v}])")
        else:
            raise _Unsupported(f"type {kind}")

    def record(self, schema: dict, v: str, indent: int) -> None:
        for field in schema["fields"]:
            name = field["name"]
            local = self.name("_f")
            if "default" in field:
                default = field["default"]
                if default is not None and not isinstance(default, (bool, int, str)) and default not in ([], {}):
                    raise _Unsupported(f"default {default!r}")
                self.emit(indent, f"{local} = {v}.get({name!r}, {self.const(default)})")
            else:
                self.emit(indent, f"{local} = {v}[{name!r}]")
            self.value(field["type"], local, indent)


def compile_writer(schema: Any) -> Callable[[Any], bytes] | None:
    """`write(datum) -> bytes` for a parsed schema (fastavro.parse_schema), or None if it has something
    this does not compile."""
    from fastavro.write import LOGICAL_WRITERS

    c = _Compiler()
    c.emit(0, "def write(datum):")
    c.emit(1, "out = []")
    c.emit(1, "add = out.append")
    try:
        c.value(schema, "datum", 1)
    except _Unsupported:
        return None
    c.emit(1, 'return b"".join(out)')
    scope: dict[str, Any] = {
        "_string": _string, "_long": _long, "_bytes": _bytes, "_null": _null, "_not_in_union": _not_in_union,
        "Decimal": Decimal, "_DOUBLE": _DOUBLE, "_FLOAT": _FLOAT,
        "_timestamp": _timestamp, "_prepare_ts": LOGICAL_WRITERS["long-timestamp-millis"],
    }
    name = schema.get("name", "?") if isinstance(schema, dict) else "?"
    return c.define("write", f"<avro writer {name}>", scope)  # type: ignore[no-any-return]
