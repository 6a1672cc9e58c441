"""`codec.decimal_bytes` writes exactly what fastavro's own decimal writer writes, errors included."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fastavro._logical_writers_py import prepare_bytes_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

from stockledger.avrowriter import decimal_bytes

SCHEMA = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}


@settings(max_examples=2000, deadline=None)
@given(st.integers(-(10**18) + 1, 10**18 - 1), st.integers(-4, 6), st.booleans())
def test_same_bytes_as_fastavro(unscaled: int, exponent: int, negative_zero: bool) -> None:
    value = Decimal(unscaled).scaleb(exponent)
    if negative_zero and unscaled == 0:
        value = Decimal(f"-0E{exponent}")
    try:
        expected: bytes | str = prepare_bytes_decimal(value, SCHEMA)
    except ValueError as exc:
        expected = str(exc)
    try:
        got: bytes | str = decimal_bytes(value, SCHEMA)
    except ValueError as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize(("value", "raw"), [
    (Decimal("0"), b"\x00"), (Decimal("-0.0001"), b"\xff"), (Decimal("1"), b"'\x10"), (Decimal("-1"), b"\xd8\xf0"),
    (Decimal("128"), b"\x13\x88\x00"), (Decimal("-128"), b"\xecx\x00"), (Decimal("1E+3"), b"\x00\x98\x96\x80"),
])
def test_known_values(value: Decimal, raw: bytes) -> None:
    assert decimal_bytes(value, SCHEMA) == raw


@pytest.mark.parametrize(("value", "message"), [
    (Decimal("0.00001"), "Scale provided in schema does not match the decimal"),
    (Decimal("1234567890123456789"), "The decimal precision is bigger than allowed by schema"),
    (Decimal("NaN"), "Scale provided in schema does not match the decimal"),
])
def test_refusals(value: Decimal, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decimal_bytes(value, SCHEMA)


def test_not_a_decimal_passes_through() -> None:
    assert decimal_bytes(b"\x01", SCHEMA) == b"\x01"
