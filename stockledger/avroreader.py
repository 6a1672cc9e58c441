"""Compiled Avro readers: one generated Python function per schema, for the codec's hot path.

fastavro's generic reader walks the schema for every record, reads the body one `BytesIO.read` at a time and
calls back into Python for each decimal and timestamp; a reader generated once per schema (straight-line code
per field, the one-byte varints, union indexes and string lengths inline, decimals remembered by their bytes)
returns the same record in about half the time. `compile_reader(schema)` returns `read(data, pos) -> record`
for a parsed schema: it reads the Avro body that starts at `data[pos]` (the codec passes the whole
Confluent-framed value and 5), or None when the schema uses something it does not compile (a named-type
reference such as a recursive record, an `error` type, a decimal precision `decimal.Context` refuses, arrays,
maps and unions nested deeper than Python's compiler takes); the codec then keeps fastavro for that schema.

The record is fastavro's (`schemaless_reader(io.BytesIO(data[pos:]), schema, None)`), key for key, type for
type: logical types go through fastavro's own `LOGICAL_READERS` as they were when the reader was compiled
(decimal and timestamp-millis with fastavro's own arithmetic, inline). Bytes after the record are ignored, as
fastavro ignores them. tests/stockledger/test_avroreader.py checks that on every schema of stockledger/schemas
with generated records, and on corrupted encodings of them. For any bytes both return the same record or both
raise, except these deliberate differences, where only the compiled reader raises (a ValueError; fastavro
would return garbage or take unbounded time):
- a varint of more than 10 bytes or beyond 64 bits (fastavro wraps it around silently);
- a negative union branch or enum index (fastavro indexes the list from its end);
- an array or map block count larger than the bytes left could hold at the item type's smallest encoding
  (fastavro fails at the end of the body instead; for an item that can take 0 bytes, such as null, the items
  of the whole array are capped at the bytes left: fastavro would loop for as long as the count says);
- a decimal encoding longer than 256 bytes (an unscaled value beyond 10^616; fastavro's conversion takes time
  quadratic in the length: 78 us for 1 KB, 0.7 s for 100 KB, 74 s for 1 MB). A shorter one with more digits
  than the schema's precision is rounded to the precision, as fastavro rounds it (the bounds then refuse it).
An index past the end of the body, a negative or too long length, invalid UTF-8 ('strict', like fastavro), a
union or enum index past the end of its list and a timestamp or date out of range raise in both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import timedelta
from decimal import Context
from typing import Any

from stockledger.codegen import Source

__all__ = ["compile_reader"]

_NEG = 1 << 63  # the length that a one-byte negative length stands for (no long read from the wire is this big)
_ZZ = [(b >> 1) ^ -(b & 1) for b in range(128)]  # the value of each one-byte varint
_LEN = [_NEG if b & 1 else b >> 1 for b in range(128)]  # the length of each one-byte varint, _NEG if negative


def _uvarint_source() -> str:
    """`_uvarint(data, p) -> (n, p)`: the unsigned varint at data[p], unrolled (a timestamp in millis takes 6)."""
    lines = ["def _uvarint(data, p):", "    b = data[p]", "    if b < 128:", "        return b, p + 1",
             "    n = b & 127"]
    for i in range(1, 10):
        lines += [f"    b = data[p + {i}]",
                  f"    if b < {2 if i == 9 else 128}:", f"        return n | b << {7 * i}, p + {i + 1}"]
        if i < 9:
            lines.append(f"    n |= (b & 127) << {7 * i}")
    lines.append('    raise ValueError(f"varint at byte {p} is longer than 10 bytes or beyond 64 bits")')
    return "\n".join(lines)


_scope: dict[str, Any] = {}
exec(compile(_uvarint_source(), "<avro varint>", "exec"), _scope)
_uvarint: Callable[[bytes, int], tuple[int, int]] = _scope["_uvarint"]


def _long(data: bytes, p: int) -> tuple[int, int]:
    n, p = _uvarint(data, p)
    return (n >> 1) ^ -(n & 1), p


def _length(data: bytes, p: int) -> tuple[int, int]:
    n, p = _long(data, p)
    if n < 0:
        raise ValueError(f"negative length {n} at byte {p}")
    return n, p


def _overrun(n: int, left: int) -> Exception:
    if n == _NEG:
        return ValueError("negative length")
    return EOFError(f"Expected {n} bytes, read {left}")


def _bad_index(n: int, size: int, what: str) -> Exception:
    return ValueError(f"{what} index {(n >> 1) ^ -(n & 1)} out of range 0..{size - 1}")


def _too_many(n: int, left: int) -> Exception:
    return ValueError(f"block count {n} is more than {left} bytes left can hold")


def _enum(data: bytes, p: int, symbols: list[str]) -> tuple[str, int]:
    n, p = _uvarint(data, p)
    i = (n >> 1) ^ -(n & 1)
    if not 0 <= i < len(symbols):
        raise _bad_index(n, len(symbols), "enum")
    return symbols[i], p


_DECIMALS_KEPT = 4096  # per decimal field of a schema: the values of the last encodings read, by their bytes
_DECIMAL_KEY = 16  # the longest encoding kept (an unscaled value of 38 digits takes 16 bytes)
_DECIMAL_BYTES = 256  # the longest decimal encoding read (an unscaled value of up to 616 digits)
_DOUBLE, _FLOAT = struct.Struct("<d").unpack_from, struct.Struct("<f").unpack_from


def _decimal_field(schema: dict) -> tuple[dict[bytes, Any], Callable[[bytes], Any]]:
    """A decimal field's cache (encoding -> Decimal) and its reader for what the cache does not hold:
    fastavro's `read_decimal` (a context of the schema's precision, so an unscaled value of more digits is
    rounded to it as fastavro rounds it; create_decimal, then scaleb), refusing an encoding longer than
    _DECIMAL_BYTES."""
    precision, scale = schema["precision"], schema.get("scale", 0)
    if not isinstance(scale, int) or not isinstance(precision, int):
        raise _Unsupported(f"decimal {schema}")
    context = Context(prec=precision)  # fastavro's: decimal.Context() with the precision
    kept: dict[bytes, Any] = {}

    def read(raw: bytes) -> Any:
        if len(raw) > _DECIMAL_BYTES:
            raise ValueError(f"decimal of {len(raw)} bytes is longer than {_DECIMAL_BYTES}")
        value = context.create_decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale, context)
        if len(raw) <= _DECIMAL_KEY:
            if len(kept) >= _DECIMALS_KEPT:
                kept.clear()
            kept[raw] = value
        return value
    return kept, read


class _Unsupported(Exception):
    pass


class _Compiler(Source):
    def __init__(self, logical: dict[str, Any]) -> None:
        from fastavro.logical_readers import _logical_readers as fastavro_own

        super().__init__()
        self.logical = logical
        self.own: Any = fastavro_own  # fastavro's own readers, to know them in LOGICAL_READERS

    # -- the pieces ---------------------------------------------------------------------------------------------
    def varint(self, t: str, indent: int, table: str, slow: str) -> None:
        """Code reading a varint into local `t`: one byte through `table` inline, longer ones through `slow`."""
        self.emit(indent, f"{t} = data[p]")
        self.emit(indent, f"if {t} < 128:")
        self.emit(indent + 1, "p += 1")
        self.emit(indent + 1, f"{t} = {table}[{t}]")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{t}, p = {slow}(data, p)")

    def long(self, t: str, indent: int) -> None:
        """Code reading a long into local `t`."""
        self.varint(t, indent, "_ZZ", "_long")

    def raw(self, t: str, indent: int, decode: bool) -> None:
        """Code reading bytes (a length, then as many bytes) into `t`, decoded as UTF-8 if `decode`."""
        e = self.name("_e")
        self.varint(t, indent, "_LEN", "_length")
        self.emit(indent, f"{e} = p + {t}")
        self.emit(indent, f"if {e} > end:")
        self.emit(indent + 1, f"raise _overrun({t}, end - p)")
        self.emit(indent, f"{t} = data[p:{e}].decode()" if decode else f"{t} = data[p:{e}]")
        self.emit(indent, f"p = {e}")

    def smallest(self, schema: Any) -> int:
        """The fewest bytes a value of `schema` takes."""
        if isinstance(schema, list):
            return 1 + min((self.smallest(s) for s in schema), default=0)
        if isinstance(schema, str):
            schema = {"type": schema}
        kind = schema["type"]
        sizes = {"null": 0, "float": 4, "double": 8}
        if kind in sizes:
            return sizes[kind]
        if kind == "fixed":
            return int(schema["size"])
        if kind == "record":
            return sum(self.smallest(f["type"]) for f in schema["fields"])
        return 1

    # -- values -------------------------------------------------------------------------------------------------
    def value(self, schema: Any, t: str, indent: int) -> None:
        """Code reading a value of `schema` into local `t` and moving `p` past it."""
        if isinstance(schema, list):
            self.union(schema, t, indent)
            return
        if isinstance(schema, str):
            schema = {"type": schema}
        kind, logical = schema["type"], schema.get("logicalType")
        if not isinstance(kind, str):
            raise _Unsupported(f"type {kind!r}")
        fn = self.logical.get(f"{kind}-{logical}") if logical else None
        if fn is not None and fn is self.own.read_decimal and kind in ("bytes", "fixed"):
            kept, read = _decimal_field(schema)
            if kind == "bytes":
                self.raw(t, indent, decode=False)
            else:
                self.plain(schema, kind, t, indent)
            d = self.name("_d")
            self.emit(indent, f"{d} = {self.const(kept)}.get({t})")
            self.emit(indent, f"{t} = {self.const(read)}({t}) if {d} is None else {d}")
            return
        self.plain(schema, kind, t, indent)
        if fn is self.own.read_timestamp_millis:
            self.emit(indent, f"{t} = _EPOCH + _timedelta(0, 0, {t} * 1000)")
        elif fn is not None:
            self.emit(indent, f"{t} = {self.const(fn)}({t}, {self.const(schema)}, None)")

    def plain(self, schema: dict, kind: str, t: str, indent: int) -> None:
        if kind == "null":
            self.emit(indent, f"{t} = None")
        elif kind in ("long", "int"):
            self.long(t, indent)
        elif kind == "string":
            self.raw(t, indent, decode=True)
        elif kind == "bytes":
            self.raw(t, indent, decode=False)
        elif kind == "boolean":
            self.emit(indent, f"{t} = data[p] != 0")
            self.emit(indent, "p += 1")
        elif kind in ("double", "float"):
            self.emit(indent, f"{t} = {'_DOUBLE' if kind == 'double' else '_FLOAT'}(data, p)[0]")
            self.emit(indent, f"p += {8 if kind == 'double' else 4}")
        elif kind == "fixed":
            size = schema["size"]
            if not isinstance(size, int) or size < 0:
                raise _Unsupported(f"fixed {schema}")
            self.emit(indent, f"if p + {size} > end:")
            self.emit(indent + 1, f"raise _overrun({size}, end - p)")
            self.emit(indent, f"{t} = data[p:p + {size}]")
            self.emit(indent, f"p += {size}")
        elif kind == "enum":
            symbols = list(schema["symbols"])
            table = [symbols[_ZZ[b]] if b < 128 and 0 <= _ZZ[b] < len(symbols) else None for b in range(256)]
            self.emit(indent, f"{t} = {self.const(table)}[data[p]]")
            self.emit(indent, f"if {t} is None:")
            self.emit(indent + 1, f"{t}, p = _enum(data, p, {self.const(symbols)})")
            self.emit(indent, "else:")
            self.emit(indent + 1, "p += 1")
        elif kind == "record":
            self.record(schema, t, indent)
        elif kind == "array":
            self.blocks(schema, t, indent, mapping=False)
        elif kind == "map":
            self.blocks(schema, t, indent, mapping=True)
        else:
            raise _Unsupported(f"type {kind}")

    def union(self, schema: list, t: str, indent: int) -> None:
        if not schema:
            raise _Unsupported("empty union")
        u = self.name("_u")
        self.emit(indent, f"{u} = data[p]")
        self.emit(indent, f"if {u} < 128:")
        self.emit(indent + 1, "p += 1")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{u}, p = _uvarint(data, p)")
        for i, branch in enumerate(schema):  # the zigzag of index i is 2i
            self.emit(indent, f"{'if' if i == 0 else 'elif'} {u} == {2 * i}:")
            self.value(branch, t, indent + 1)
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise _bad_index({u}, {len(schema)}, 'union')")

    def record(self, schema: dict, t: str, indent: int) -> None:
        names = []
        for field in schema["fields"]:
            local = self.name("_f")
            self.value(field["type"], local, indent)
            names.append(f"{field['name']!r}: {local}")
        self.emit(indent, f"{t} = {{{', '.join(names)}}}")

    def blocks(self, schema: dict, t: str, indent: int, mapping: bool) -> None:
        """An array or a map: blocks of a count (negative: the count is followed by the block's size in bytes,
        unused, as in fastavro) and as many items, until a count of 0."""
        out, n, item = self.name("_a"), self.name("_n"), self.name("_x")
        least = self.smallest(schema["values"]) + 1 if mapping else self.smallest(schema["items"])
        self.emit(indent, f"{out} = {{}}" if mapping else f"{out} = []")
        self.long(n, indent)
        self.emit(indent, f"while {n}:")
        self.emit(indent + 1, f"if {n} < 0:")
        self.emit(indent + 2, f"{n} = -{n}")
        self.emit(indent + 2, "p = _long(data, p)[1]")
        if least == 0:  # items that take no bytes: the whole array holds at most as many as the bytes left
            self.emit(indent + 1, f"if len({out}) + {n} > end - p:")
        else:
            self.emit(indent + 1, f"if {n} * {least} > end - p:" if least > 1 else f"if {n} > end - p:")
        self.emit(indent + 2, f"raise _too_many({n}, end - p)")
        self.emit(indent + 1, f"for _ in range({n}):")
        if mapping:
            key = self.name("_k")
            self.raw(key, indent + 2, decode=True)
            self.value(schema["values"], item, indent + 2)
            self.emit(indent + 2, f"{out}[{key}] = {item}")
        else:
            self.value(schema["items"], item, indent + 2)
            self.emit(indent + 2, f"{out}.append({item})")
        self.long(n, indent + 1)
        self.emit(indent, f"{t} = {out}")


def compile_reader(schema: Any) -> Callable[[bytes, int], Any] | None:
    """`read(data, pos) -> record` for a parsed schema (fastavro.parse_schema), reading the body at data[pos:]
    as fastavro's `schemaless_reader` does, or None if the schema has something this does not compile."""
    from fastavro.read import LOGICAL_READERS

    c = _Compiler(dict(LOGICAL_READERS))
    c.emit(0, "def read(data, pos):")
    c.emit(1, "p = pos")
    c.emit(1, "end = len(data)")
    c.emit(1, "try:")
    try:
        c.value(schema, "record", 2)
    except (_Unsupported, KeyError, TypeError, ValueError, ArithmeticError, RecursionError):
        return None
    c.emit(1, "except IndexError:")
    c.emit(2, 'raise EOFError(f"Avro body ends early ({end - pos} bytes)") from None')
    c.emit(1, "return record")
    scope: dict[str, Any] = {
        "_ZZ": _ZZ, "_LEN": _LEN, "_uvarint": _uvarint, "_long": _long, "_length": _length, "_overrun": _overrun,
        "_bad_index": _bad_index, "_too_many": _too_many, "_enum": _enum, "_DOUBLE": _DOUBLE, "_FLOAT": _FLOAT,
        "_EPOCH": c.own.epoch, "_timedelta": timedelta,
    }
    name = schema.get("name", "?") if isinstance(schema, dict) else "?"
    try:
        return c.define("read", f"<avro reader {name}>", scope)  # type: ignore[no-any-return]
    except (SyntaxError, RecursionError, MemoryError):  # nested deeper than Python's 20 blocks, say
        return None
