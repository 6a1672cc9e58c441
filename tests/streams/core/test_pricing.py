from decimal import Decimal

import pytest

from streams.core.pricing import (
    NO_PRICE,
    UNKNOWN_CURRENCY,
    CatalogItem,
    PricedLine,
    PricedSale,
    PricingError,
    price_lines,
)
from streams.core.sales import Sale, SaleLine, validate_sale

D = Decimal
CATALOG = {
    "A": CatalogItem("A", D("19.99"), D("16")),
    "B": CatalogItem("B", D("5.00"), None),
}


def lookup(sku):
    return CATALOG.get(sku)


def one(line, currency, default_tax=Decimal(0)):
    result = price_lines([line], currency, lookup, default_tax)
    assert isinstance(result, PricedSale)
    return result.lines[0]


def test_discount_then_tax_usd():
    line = one(SaleLine("X", 3, D("19.99"), D("10"), D("16")), "USD")
    # 3 x 19.99 = 59.97; less 10% = 53.973 -> 53.97; 16% of 53.97 = 8.6352 -> 8.64
    assert line == PricedLine(1, "X", 3, D("19.99"), D("10"), D("16"), D("53.97"), D("8.64"), D("62.61"), "LINE")


@pytest.mark.parametrize(
    ("currency", "qty", "price", "discount", "tax", "net", "tax_amount", "total"),
    [
        # half-up where half-even would go down
        ("USD", 1, "0.005", "0", "0", "0.01", "0.00", "0.01"),
        ("KES", 3, "33.335", "0", "16", "100.01", "16.00", "116.01"),  # 100.005 -> 100.01
        ("INR", 1, "0.125", "0", "18", "0.13", "0.02", "0.15"),  # tax 0.0234 -> 0.02
        ("INR", 1, "100", "12.5", "18", "87.50", "15.75", "103.25"),
        ("JPY", 1, "2.5", "0", "10", "3", "0", "3"),  # 2.5 -> 3, tax 0.3 -> 0
        ("JPY", 1, "1005", "10", "10", "905", "91", "996"),  # 904.5 -> 905, 90.5 -> 91
        ("JPY", 2, "0.25", "0", "0", "1", "0", "1"),  # 0.5 -> 1
    ],
)
def test_rounding_examples(currency, qty, price, discount, tax, net, tax_amount, total):
    line = one(SaleLine("X", qty, D(price), D(discount), D(tax)), currency)
    assert (str(line.net), str(line.tax), str(line.total)) == (net, tax_amount, total)


def test_totals_are_sums_of_rounded_lines():
    result = price_lines(
        [SaleLine("X", 1, D("0.005")), SaleLine("Y", 1, D("0.005"))], "USD", lookup
    )
    assert isinstance(result, PricedSale)
    # each line rounds to 0.01; the unrounded sum (0.01) is not what the invoice shows
    assert (result.net_total, result.tax_total, result.total) == (D("0.02"), D("0.00"), D("0.02"))
    assert str(result.total) == "0.02"


def test_defaults_come_from_line_then_catalog_then_tenant():
    result = price_lines(
        [
            {"sku": "A", "quantity": 2},  # catalog price 19.99 and tax_rate 16
            SaleLine("A", 1, D("10.00"), None, D("8")),  # line price and tax win
            SaleLine("B", 4),  # catalog price, no tax_rate -> tenant default
            SaleLine("Z", 1, D("3.00")),  # unknown to the catalog but priced on the line
        ],
        "KES",
        lookup,
        default_tax=D("14"),
    )
    assert isinstance(result, PricedSale)
    assert [(p.line_no, p.unit_price, p.discount_percent, p.tax_percent, p.net, p.tax) for p in result.lines] == [
        (1, D("19.99"), D(0), D("16"), D("39.98"), D("6.40")),
        (2, D("10.00"), D(0), D("8"), D("10.00"), D("0.80")),
        (3, D("5.00"), D(0), D("14"), D("20.00"), D("2.80")),
        (4, D("3.00"), D(0), D("14"), D("3.00"), D("0.42")),
    ]
    assert (result.net_total, result.tax_total, result.total) == (D("72.98"), D("10.42"), D("83.40"))


def test_unpriceable_line_names_the_sku():
    result = price_lines([SaleLine("A", 1), SaleLine("GHOST", 2)], "USD", lookup)
    assert result == PricingError(
        NO_PRICE, "line 2: sku 'GHOST' has no unit_price and is not in the catalog", 2, "GHOST"
    )


def test_unknown_currency_cannot_be_priced():
    result = price_lines([SaleLine("A", 1)], "XXX", lookup)
    assert isinstance(result, PricingError) and result.code == UNKNOWN_CURRENCY


def test_priced_sale_round_trips():
    result = price_lines([SaleLine("A", 2, None, D("2.5"))], "USD", lookup)
    assert PricedSale.from_dict(result.to_dict()) == result
    assert result.to_dict()["lines"][0]["net"] == "38.98"


SALE = {
    "sale_id": "S1",
    "channel": "POS",
    "currency": "KES",
    "payment_terms": "PAID",
    "line_items": [{"sku": "A", "quantity": 2, "unit_price": D("10.00")}],
    "payments": [{"method": "CASH", "amount": D("23.20")}],
}


def test_valid_sale_has_no_reasons_and_converts():
    assert validate_sale(SALE) == []
    sale = Sale.from_event("t1", SALE)
    assert sale.lines == (SaleLine("A", 2, D("10.00")),)
    assert sale.payments[0].amount == D("23.20")


def test_validate_sale_reasons():
    bad = {
        "sale_id": "",
        "channel": "FAX",
        "currency": "XYZ",
        "payment_terms": "ON_ACCOUNT",
        "line_items": [
            {"sku": "A", "quantity": 0},
            {"sku": "", "quantity": 1, "unit_price": D("-1"), "discount_percent": D("101"), "tax_percent": D("-5")},
        ],
        "payments": [{"method": "CHEQUE", "amount": D("0")}],
    }
    assert validate_sale(bad) == [
        "sale_id is missing or empty",
        "channel must be one of POS, WEB, ERP, got 'FAX'",
        "unknown currency 'XYZ'",
        "customer_ref is required for an ON_ACCOUNT sale",
        "line 1: quantity must be a positive integer, got 0",
        "line 2: sku is missing or empty",
        "line 2: unit_price must not be negative, got -1",
        "line 2: discount_percent must be between 0 and 100, got 101",
        "line 2: tax_percent must not be negative, got -5",
        "payments[] is only allowed with payment_terms PAID",
        "payment 1: method must be one of CASH, CARD, MOBILE, BANK, got 'CHEQUE'",
        "payment 1: amount must be positive, got 0",
    ]


def test_validate_sale_empty_lines_and_sub_cent_payment():
    assert validate_sale({**SALE, "line_items": []}) == ["line_items is empty"]
    assert validate_sale({**SALE, "payments": [{"method": "CARD", "amount": D("23.205")}]}) == [
        "payment 1: amount 23.205 has more decimals than KES allows"
    ]
    assert validate_sale({**SALE, "line_items": [{"sku": "A", "quantity": -3}]}) == [
        "line 1: quantity must be a positive integer, got -3"
    ]
