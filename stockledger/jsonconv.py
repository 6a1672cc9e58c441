"""JSON <-> Avro datums, walked by schema: the readable validation behind `produce` and `consume`.

Converters are compiled once per schema into closures, so validating 100k records costs
one call per field, and every error names the exact field path.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Converter = Callable[[Any, str], Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FieldError(ValueError):
    """A JSON value that does not fit its schema; `path` names the field."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path or '<record>'}: {message}")
        self.path = path
        self.message = message


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_timestamp(value: Any, path: str = "") -> int:
    """ISO-8601 text (Z or offset; naive means UTC) or epoch millis (number or digits) -> epoch millis."""
    if isinstance(value, bool):
        raise FieldError(path, f"expected an ISO-8601 timestamp, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value.isdigit():
        return int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise FieldError(path, f"expected an ISO-8601 timestamp, got {value!r}") from None
    else:
        raise FieldError(path, f"expected an ISO-8601 timestamp, got {_kind(value)}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_timestamp(value: datetime | int) -> str:
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def format_decimal(value: Decimal) -> str:
    """Exact text of a money value: trailing zeros dropped, but at least two decimals."""
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _decimal(schema: dict) -> Converter:
    scale = schema.get("scale", 0)
    limit = Decimal(10) ** (schema["precision"] - scale)

    def conv(value: Any, path: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal, float)):
            raise FieldError(path, f"expected a decimal number, got {_kind(value)}")
        try:
            number = Decimal(str(value)) if not isinstance(value, Decimal) else value
        except InvalidOperation:
            raise FieldError(path, f"expected a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise FieldError(path, f"expected a finite decimal, got {value!r}")
        if number.as_tuple().exponent < -scale:  # type: ignore[operator]
            raise FieldError(path, f"{value} has more than {scale} decimal places")
        if abs(number) >= limit:
            raise FieldError(path, f"AMOUNT_OUT_OF_RANGE: {value} is too large (at most {schema['precision']} digits)")
        return number

    return conv


def _primitive(name: str, logical: str | None) -> Converter:
    if logical == "timestamp-millis":
        return parse_timestamp
    if name == "string":
        def conv_str(value: Any, path: str) -> str:
            if not isinstance(value, str):
                raise FieldError(path, f"expected a string, got {_kind(value)}")
            return value
        return conv_str
    if name in ("int", "long"):
        def conv_int(value: Any, path: str) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, (Decimal, float)) and value == int(value):
                    raise FieldError(path, f"expected an integer, got {value} (write it without decimals)")
                raise FieldError(path, f"expected an integer, got {value!r}")
            return value
        return conv_int
    if name == "boolean":
        def conv_bool(value: Any, path: str) -> bool:
            if not isinstance(value, bool):
                raise FieldError(path, f"expected true or false, got {value!r}")
            return value
        return conv_bool
    if name in ("float", "double"):
        def conv_float(value: Any, path: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
                raise FieldError(path, f"expected a number, got {value!r}")
            return float(value)
        return conv_float
    if name == "bytes":
        def conv_bytes(value: Any, path: str) -> bytes:
            if isinstance(value, bytes):
                return value
            if isinstance(value, str):
                return base64.b64decode(value)
            raise FieldError(path, f"expected base64 text, got {_kind(value)}")
        return conv_bytes
    if name == "null":
        def conv_null(value: Any, path: str) -> None:
            if value is not None:
                raise FieldError(path, f"expected null, got {value!r}")
        return conv_null
    raise ValueError(f"unsupported Avro type {name}")


def compile_from_json(schema: Any, named: dict[str, Converter] | None = None) -> Converter:
    """A function turning a parsed-JSON value into the Avro datum of `schema`, or raising FieldError."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return named[schema]
        return _primitive(schema, None)
    if isinstance(schema, list):
        return _union(schema, named)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if kind == "bytes" and logical == "decimal":
        return _decimal(schema)
    if kind == "record":
        return _record(schema, named)
    if kind == "enum":
        symbols = set(schema["symbols"])

        def conv_enum(value: Any, path: str) -> str:
            if value not in symbols:
                raise FieldError(path, f"{value!r} is not one of {', '.join(schema['symbols'])}")
            return value
        named[schema["name"]] = conv_enum
        return conv_enum
    if kind == "array":
        item = compile_from_json(schema["items"], named)

        def conv_array(value: Any, path: str) -> list:
            if not isinstance(value, list):
                raise FieldError(path, f"expected a list, got {_kind(value)}")
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return conv_array
    if kind == "map":
        val = compile_from_json(schema["values"], named)

        def conv_map(value: Any, path: str) -> dict:
            if not isinstance(value, dict):
                raise FieldError(path, f"expected an object, got {_kind(value)}")
            return {k: val(v, f"{path}.{k}") for k, v in value.items()}
        return conv_map
    if isinstance(kind, (dict, list)):
        return compile_from_json(kind, named)
    return _primitive(kind, logical)


def _union(branches: list, named: dict[str, Converter]) -> Converter:
    others = [b for b in branches if b != "null"]
    nullable = len(others) < len(branches)
    if len(others) != 1:
        raise ValueError("only unions of null and one type are supported")
    inner = compile_from_json(others[0], named)

    def conv_union(value: Any, path: str) -> Any:
        if value is None:
            if nullable:
                return None
            raise FieldError(path, "must not be null")
        return inner(value, path)
    return conv_union


def _record(schema: dict, named: dict[str, Converter]) -> Converter:
    fields: list[tuple[str, Converter, bool, Any]] = []
    known: set[str] = set()

    def conv_record(value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise FieldError(path, f"expected an object, got {_kind(value)}")
        out = {}
        prefix = f"{path}." if path else ""
        for name, conv, has_default, default in fields:
            if name in value:
                out[name] = conv(value[name], prefix + name)
            elif has_default:
                out[name] = default
            else:
                raise FieldError(prefix + name, "is required")
        if len(value) > len(out) or not known.issuperset(value):
            extra = sorted(set(value) - known)
            if extra:
                raise FieldError(prefix + extra[0], "is not a field of this schema")
        return out

    named[schema["name"]] = conv_record
    if "namespace" in schema:
        named[f"{schema['namespace']}.{schema['name']}"] = conv_record
    for f in schema["fields"]:
        fields.append((f["name"], compile_from_json(f["type"], named), "default" in f, f.get("default")))
        known.add(f["name"])
    return conv_record


def to_json(value: Any) -> Any:
    """An Avro datum as JSON-able data: decimals as exact text, timestamps as ISO-8601 UTC, bytes as base64."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value
