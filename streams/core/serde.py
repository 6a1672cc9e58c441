"""The one dataclass -> record converter of the core, and back.

The shell keeps states in its stores as JSON, so every state and document converts to JSON-able dicts
and back: Decimals as strings (exact, no float on the way), timestamps already epoch-millis ints, tuples
as lists (`to_plain`, `Plain.to_dict`, `from_plain`). Outputs go to Avro, which takes Decimal money as
it is: `to_datum` is the same walk with Decimals (and floats) kept. One generic walker driven by the
dataclass fields keeps the classes free of hand-written, drift-prone converters; the few hand-written
`to_dict`s kept for speed on the hot path equal the generic form exactly (tests/streams/core/test_serde_fast.py).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Self

__all__ = ["Plain", "to_plain", "to_datum", "from_plain", "evolve"]


_NAMES: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names (fields() is slow per call)
_EVOLVERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}


def evolve(obj: Any, /, **changes: Any) -> Any:
    """`dataclasses.replace` for the core's frozen, slotted dataclasses at a quarter of its cost: a copy of
    `obj` with `changes`, made by a function generated once per class that sets each slot (no field walk
    and no keyword __init__ per call). Other dataclasses (a __post_init__, an init=False field, no slots)
    go through `dataclasses.replace`. An unknown field name is a TypeError, as there."""
    make = _EVOLVERS.get(obj.__class__)
    if make is None:
        make = _EVOLVERS[obj.__class__] = _evolver(obj.__class__)
    return make(obj, changes)


def _evolver(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    slots = getattr(cls, "__slots__", ())
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields) or sorted(slots) != sorted(names):
        return lambda obj, changes: dataclasses.replace(obj, **changes)
    scope: dict[str, Any] = {"NEW": object.__new__, "CLS": cls, "NAMES": frozenset(names)}
    lines = ["def make(o, c):", "    if not NAMES.issuperset(c):",
             "        raise TypeError(f'{CLS.__name__} has no field(s) {sorted(set(c) - NAMES)}')",
             "    new = NEW(CLS)"]
    for i, name in enumerate(names):
        scope[f"SET{i}"] = getattr(cls, name).__set__  # the slot's descriptor: a frozen class's own __setattr__
        lines.append(f"    SET{i}(new, c[{name!r}] if {name!r} in c else o.{name})")  # refuses
    lines.append("    return new")
    exec("\n".join(lines), scope)
    return scope["make"]  # type: ignore[no-any-return]


def _walker(datum: bool) -> Callable[[Any], Any]:
    """The walk from a dataclass (or anything inside one) to dicts and lists. `datum`: Decimals and floats
    are kept and anything else unknown passes as it is (Avro's writer checks it); else Decimals become
    text and anything unknown is a TypeError (the form must be JSON)."""
    scalars = frozenset({str, int, bool, type(None)} | ({float, Decimal} if datum else set()))

    def walk(value: Any) -> Any:
        cls = value.__class__
        if cls in scalars:
            return value
        names = _NAMES.get(cls)
        if names is None:
            if datum:
                if cls is tuple or cls is list:
                    return [v if v.__class__ in scalars else walk(v) for v in value]
                if isinstance(value, Mapping):
                    return {k: walk(v) for k, v in value.items()}
                if not dataclasses.is_dataclass(value) or isinstance(value, type):
                    return value
            else:
                if isinstance(value, (str, int, bool)):
                    return value
                if isinstance(value, Decimal):
                    return format(value, "f")
                if isinstance(value, (tuple, list)):
                    return [walk(v) for v in value]
                if not dataclasses.is_dataclass(value) or isinstance(value, type):
                    if isinstance(value, Mapping):
                        return {str(k): walk(v) for k, v in value.items()}
                    raise TypeError(f"cannot convert {cls.__name__} to a plain value")
            names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(value))
        out = {}
        for name in names:
            v = getattr(value, name)
            out[name] = v if v.__class__ in scalars else walk(v)
        return out
    return walk


to_plain = _walker(datum=False)
to_plain.__doc__ = "A dataclass (or anything inside one) -> JSON-able dicts, lists, str, int, bool, None."
to_datum = _walker(datum=True)
to_datum.__doc__ = """A core dataclass (document, journal entry, alert) as an Avro datum: dicts and lists,
Decimal money and int epoch-millis kept as they are."""


@cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved type, has default) per field; memoised because resolving hints is slow."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    )


def from_plain(tp: Any, value: Any) -> Any:
    """Plain value -> instance of `tp` (dataclass, Decimal, tuple, optional, scalar)."""
    return _reader(tp)(value)


@cache
def _reader(tp: Any) -> Callable[[Any], Any]:
    """A converter compiled once per type: the hints are walked here, not for every value."""
    if tp is Any:
        return lambda value: value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        nullable = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported union {tp}")
        inner = _reader(rest[0])
        return lambda value: None if value is None and nullable else inner(value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _reader(args[0])

            def read_seq(value: Any) -> tuple:
                if not isinstance(value, (list, tuple)):
                    raise TypeError(f"expected a list for {tp}, got {type(value).__name__}")
                return tuple(item(v) for v in value)
            return read_seq
        items = tuple(_reader(a) for a in args)

        def read_tuple(value: Any) -> tuple:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"expected a list for {tp}, got {type(value).__name__}")
            return tuple(r(v) for r, v in zip(items, value, strict=True))
        return read_tuple
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        kt, vt = typing.get_args(tp) or (str, Any)
        kr, vr = _reader(kt), _reader(vt)
        return lambda value: {kr(k): vr(v) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        fields = tuple((name, _reader(ftp), has_default) for name, ftp, has_default in _fields(tp))

        def read_dataclass(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected a mapping for {tp.__name__}, got {type(value).__name__}")
            kwargs = {}
            for name, read, has_default in fields:
                if name in value:
                    kwargs[name] = read(value[name])
                elif not has_default:
                    raise KeyError(f"{tp.__name__}.{name} is missing")
            return tp(**kwargs)
        return read_dataclass
    if tp is Decimal:
        def read_decimal(value: Any) -> Decimal:
            if isinstance(value, Decimal):
                return value
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise TypeError(f"expected a decimal string, got {type(value).__name__}")
            try:
                return Decimal(value)
            except InvalidOperation:
                raise ValueError(f"not a decimal: {value!r}") from None
        return read_decimal
    if tp is int:
        def read_int(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"expected an int, got {type(value).__name__}")
            return value
        return read_int
    if tp in (str, bool):
        def read_scalar(value: Any) -> Any:
            if not isinstance(value, tp):
                raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
            return value
        return read_scalar
    raise TypeError(f"unsupported type {tp}")


class Plain:
    """Mixin giving a frozen dataclass `to_dict()` / `from_dict()`."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (Decimals as strings, millis as ints)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of `to_dict`; missing fields with defaults take their default."""
        return from_plain(cls, data)
