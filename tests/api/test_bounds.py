"""SPEC 2 "Bounds" at the HTTP door, over real sockets: an out-of-range quantity or amount is a 400 naming
the field, and nothing is published (the API converts through `stockledger.produce.convert`)."""

from __future__ import annotations

from tests.api.support import problem, records

LONG_MAX = 9223372036854775807


def test_an_out_of_range_quantity_or_amount_is_a_400_naming_the_field(api, creds, settings):
    adjust = {"reference_id": "R-1", "adjustments": [{"sku": "A", "quantity_change": 1},
                                                     {"sku": "B", "quantity_change": LONG_MAX}]}
    body = problem(api.commerce(creds, "/api/v1/inventory/adjust", adjust, "adj-big"), 400)
    assert (body["field"], body["detail"]) == (
        "adjustments[1].quantity_change",
        "adjustments[1].quantity_change: QUANTITY_OUT_OF_RANGE: 9223372036854775807 is beyond +-1,000,000,000")
    sale = {"sale_id": "S1", "currency": "KES", "payment_terms": "PAID",
            "line_items": [{"sku": "A", "quantity": 1_000_000_001, "unit_price": "1.00"}]}
    body = problem(api.pos(creds, "sales", sale, "k-S1"), 400)
    assert (body["field"], body["detail"]) == (
        "line_items[0].quantity",
        "line_items[0].quantity: QUANTITY_OUT_OF_RANGE: 1000000001 is beyond +-1,000,000,000")
    priced = {**sale, "sale_id": "S2", "line_items": [{"sku": "A", "quantity": 1, "unit_price": "123456789012345"}]}
    body = problem(api.pos(creds, "sales", priced, "k-S2"), 400)
    assert (body["field"], body["detail"]) == (
        "line_items[0].unit_price",
        "line_items[0].unit_price: AMOUNT_OUT_OF_RANGE: 123456789012345 is too large (at most 18 digits)")
    assert records(settings, "inventory.changes", creds.tenant) == []
    assert records(settings, "sales", creds.tenant) == []
