"""JSON -> Avro conversion: exact values and errors that name the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stockledger.codec import local_schema
from stockledger.jsonconv import (
    FieldError,
    compile_from_json,
    format_decimal,
    format_timestamp,
    parse_timestamp,
    to_json,
)

SALE = compile_from_json(local_schema("sale"))


def sale(**data) -> dict:
    base = {"sale_id": "S1", "channel": "POS", "currency": "KES",
            "line_items": [{"sku": "A", "quantity": 2, "unit_price": "10.5"}]}
    return {"event_id": "e1", "event_type": "sale.completed", "tenant_id": "t", "timestamp": "2024-01-20T10:00:00Z",
            "data": {**base, **data}}


def test_converts_decimals_timestamps_defaults():
    rec = SALE(sale(), "")
    assert rec["timestamp"] == 1705744800000
    assert rec["data"]["line_items"][0]["unit_price"] == Decimal("10.5")
    assert rec["data"]["payment_terms"] == "PAID"
    assert rec["data"]["payments"] is None and rec["source"] is None


@pytest.mark.parametrize("data,path,message", [
    ({"channel": "FAX"}, "data.channel", "'FAX' is not one of POS, WEB, ERP"),
    ({"line_items": [{"sku": "A", "quantity": 1, "unit_price": "1.23456"}]}, "data.line_items[0].unit_price",
     "1.23456 has more than 4 decimal places"),
    ({"line_items": [{"sku": "A", "quantity": "2"}]}, "data.line_items[0].quantity", "expected an integer, got '2'"),
    ({"line_items": [{"quantity": 2}]}, "data.line_items[0].sku", "is required"),
    ({"line_items": [{"sku": "A", "quantity": 1, "unit_price": "1e20"}]}, "data.line_items[0].unit_price",
     "AMOUNT_OUT_OF_RANGE: 1e20 is too large (at most 18 digits)"),
    ({"payments": [{"method": "CASH", "amount": "abc"}]}, "data.payments[0].amount",
     "expected a decimal number, got 'abc'"),
])
def test_errors_name_the_field(data, path, message):
    with pytest.raises(FieldError) as err:
        SALE(sale(**data), "")
    assert (err.value.path, err.value.message) == (path, message)


def test_bad_timestamp_is_named():
    with pytest.raises(FieldError) as err:
        SALE({**sale(), "timestamp": "yesterday"}, "")
    assert str(err.value) == "timestamp: expected an ISO-8601 timestamp, got 'yesterday'"


def test_timestamp_forms():
    assert parse_timestamp("2024-01-20T10:00:00Z") == 1705744800000
    assert parse_timestamp("2024-01-20T15:30:00+05:30") == 1705744800000
    assert parse_timestamp("2024-01-20T10:00:00") == 1705744800000
    assert parse_timestamp("1705744800123") == 1705744800123
    assert format_timestamp(1705744800123) == "2024-01-20T10:00:00.123Z"


def test_decimal_text_keeps_cents():
    assert format_decimal(Decimal("79900.0000")) == "79900.00"
    assert format_decimal(Decimal("0.1250")) == "0.125"
    assert format_decimal(Decimal("-3")) == "-3.00"
    assert to_json({"a": [Decimal("1.5000")], "b": b"\x00\x01"}) == {"a": ["1.50"], "b": "AAE="}
