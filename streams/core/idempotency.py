"""Idempotency: is an event_id seen again a harmless duplicate or a conflicting reuse?

The shell keeps event_id -> fingerprint per key. A fingerprint covers the
business content only (event_type, tenant_id, data): the envelope timestamp
and source are left out on purpose, so a producer retry that restamps the
envelope is still recognised as the same action.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = ["Decision", "fingerprint", "canonical_json", "decide"]


class Decision(Enum):
    """What to do with an event given the fingerprint already stored for its event_id."""

    APPLY = "APPLY"  # first time this event_id is seen
    DUPLICATE = "DUPLICATE"  # same event_id, same content: ignore
    CONFLICT = "CONFLICT"  # same event_id, other content: refuse (IDEMPOTENCY_CONFLICT)


def _number(value: Decimal) -> str:
    """Canonical text of a finite number: 1.5, 1.50 and Decimal('15E-1') all give '1.5'."""
    if not value.is_finite():
        raise ValueError(f"cannot fingerprint non-finite number {value}")
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


_INT_EXACT = 10**28


def _string(value: str) -> str:
    """json.dumps(value, ensure_ascii=True), without its cost for the common plain string."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=True)


def _canon(value: Any) -> str:
    cls = value.__class__
    if cls is str:
        return _string(value)
    if cls is int and -_INT_EXACT < value < _INT_EXACT:
        return str(value)  # the same text as _number(Decimal(value)), which rounds beyond 28 digits
    if cls is Decimal:
        return _number(value)
    if cls is dict:  # a decoded record: its keys are text, sorted as they are (the Mapping branch's order)
        try:
            keys = sorted(value)
        except TypeError:
            keys = None
        if keys is not None and (not keys or keys[0].__class__ is str):
            parts = []
            for k in keys:
                v = value[k]
                if v is not None:
                    parts.append(_string(k) + ":" + _canon(v))
            return "{" + ",".join(parts) + "}"
    elif cls is list:
        return "[" + ",".join([_canon(v) for v in value]) + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Enum):
        return _canon(value.value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return _number(Decimal(value))
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, float):
        return _number(Decimal(repr(value)))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return _number(Decimal(round(value.timestamp() * 1000)))
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    if isinstance(value, (bytes, bytearray)):
        return json.dumps(bytes(value).hex())
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items() if v is not None)
        return "{" + ",".join(_string(k) + ":" + _canon(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canon(v) for v in value) + "]"
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, numbers normalised, null-valued keys dropped.

    A key holding null and an absent key mean the same thing (an optional
    field), so both canonicalise alike; list order is kept because it is
    meaningful (line order).
    """
    return _canon(value)


def fingerprint(event_type: str, tenant_id: str, data: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical business content of an event (no timestamp, no source)."""
    text = _canon([event_type, tenant_id, data])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decide(seen: str | None, fp: str) -> Decision:
    """APPLY when unseen, DUPLICATE when the stored fingerprint matches, else CONFLICT."""
    if seen is None:
        return Decision.APPLY
    return Decision.DUPLICATE if seen == fp else Decision.CONFLICT
