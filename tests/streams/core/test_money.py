from decimal import Decimal, Inexact

import pytest

from streams.core.money import (
    MINOR_UNITS,
    UnknownCurrency,
    exact,
    is_known_currency,
    is_whole_minor,
    round_money,
    to_decimal,
)

D = Decimal


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),
        ("0.004", "USD", "0.00"),
        ("0.015", "USD", "0.02"),  # half-even would give 0.02 too; 0.025 below tells them apart
        ("0.025", "USD", "0.03"),
        ("10.125", "KES", "10.13"),
        ("10.1249", "KES", "10.12"),
        ("0.125", "INR", "0.13"),
        ("2.345", "INR", "2.35"),
        ("0.5", "JPY", "1"),
        ("2.5", "JPY", "3"),
        ("1.49", "JPY", "1"),
        ("1.2345", "BHD", "1.235"),
        ("-0.005", "USD", "-0.01"),
        ("-2.5", "JPY", "-3"),
        ("7", "EUR", "7.00"),
    ],
)
def test_round_money_half_up(amount, currency, expected):
    result = round_money(D(amount), currency)
    assert result == D(expected)
    assert str(result) == expected


def test_minor_units_of_the_spec_currencies():
    assert {c: MINOR_UNITS[c] for c in ("KES", "INR", "USD", "EUR", "JPY", "UGX")} == {
        "KES": 2,
        "INR": 2,
        "USD": 2,
        "EUR": 2,
        "JPY": 0,
        "UGX": 0,
    }


def test_unknown_currency_is_refused():
    assert is_known_currency("KES")
    assert not is_known_currency("usd")
    assert not is_known_currency("XXX")
    assert not is_known_currency(None)
    with pytest.raises(UnknownCurrency) as err:
        round_money(D("1.00"), "XXX")
    assert err.value.code == "XXX"


def test_is_whole_minor():
    assert is_whole_minor(D("10.01"), "USD")
    assert is_whole_minor(D("10.0100"), "USD")
    assert not is_whole_minor(D("10.005"), "USD")
    assert not is_whole_minor(D("1.5"), "JPY")


def test_to_decimal_refuses_float_and_non_finite():
    assert to_decimal("1.50") == D("1.50")
    assert to_decimal(3) == D(3)
    assert to_decimal(D("2.5")) == D("2.5")
    with pytest.raises(TypeError):
        to_decimal(1.5)
    with pytest.raises(TypeError):
        to_decimal(True)
    with pytest.raises(ValueError):
        to_decimal("NaN")
    with pytest.raises(ValueError):
        to_decimal("abc")


def test_exact_context_refuses_silent_rounding():
    with exact():
        assert D("123456789012345.6789") * 1000 * D("99.99") / 100 == D("123444443333444444.33211")
        with pytest.raises(Inexact):
            D(1) / D(3)
