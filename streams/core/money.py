"""Money: currencies, their minor units, exact Decimal arithmetic and half-up rounding.

Money is `Decimal` everywhere and never float: a float cannot hold 0.10 exactly,
and the books must balance to the cent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from types import MappingProxyType
from typing import TypeGuard

__all__ = [
    "MINOR_UNITS",
    "UnknownCurrency",
    "ZERO",
    "is_known_currency",
    "minor_unit",
    "round_money",
    "is_whole_minor",
    "exact",
    "EXACT",
    "to_decimal",
]

ZERO = Decimal(0)

# ISO 4217 exponents (digits after the decimal point). Only currencies whose
# exponent is certain are listed; anything else is refused rather than guessed.
MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {
        # East Africa and the other currencies our producers trade in
        "KES": 2,
        "TZS": 2,
        "UGX": 0,
        "RWF": 0,
        "ETB": 2,
        "NGN": 2,
        "GHS": 2,
        "ZAR": 2,
        "EGP": 2,
        "MAD": 2,
        "XOF": 0,
        "XAF": 0,
        # Asia
        "INR": 2,
        "JPY": 0,
        "KRW": 0,
        "CNY": 2,
        "SGD": 2,
        "AED": 2,
        # three-decimal Gulf currencies
        "BHD": 3,
        "KWD": 3,
        "OMR": 3,
        "JOD": 3,
        # Europe and the Americas
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "CHF": 2,
        "CAD": 2,
        "AUD": 2,
    }
)

# Working precision for intermediate products: far above the 18 digits of the
# Avro decimals, so quantity x price x (100 - discount) is always exact.
_PRECISION = 80
# The contexts, made once (a Context per call cost more than the arithmetic): rounding half-up, and exact
# arithmetic where any inexact operation raises. Flags they gather are never read.
_ROUNDING = Context(prec=_PRECISION, rounding=ROUND_HALF_UP)
EXACT = Context(prec=_PRECISION, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_QUANTA: dict[str, Decimal] = {}  # currency -> its minor unit as a Decimal (0.01)


class UnknownCurrency(ValueError):
    """A currency code that is not in MINOR_UNITS (codes are upper-case ISO 4217)."""

    def __init__(self, code: object):
        super().__init__(f"unknown currency {code!r}")
        self.code = code


def is_known_currency(code: object) -> TypeGuard[str]:
    """True for an upper-case ISO 4217 code listed in MINOR_UNITS."""
    return isinstance(code, str) and code in MINOR_UNITS


def minor_unit(currency: str) -> int:
    """Digits after the point for `currency`; raises UnknownCurrency."""
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(currency) from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up (ties away from zero) to the currency's minor unit: 0.005 USD -> 0.01, 2.5 JPY -> 3.

    Negative ties round away from zero too (-0.005 USD -> -0.01), so rounding
    commutes with negation and a reversal mirrors its original exactly.
    """
    quantum = _QUANTA.get(currency)
    if quantum is None:
        quantum = _QUANTA[currency] = Decimal(1).scaleb(-minor_unit(currency))
    return amount.quantize(quantum, ROUND_HALF_UP, _ROUNDING)


def is_whole_minor(amount: Decimal, currency: str) -> bool:
    """True when `amount` needs no rounding in `currency` (e.g. 10.01 USD yes, 10.005 no)."""
    return round_money(amount, currency) == amount


@contextmanager
def exact() -> Iterator[None]:
    """Decimal context in which any inexact operation raises instead of silently rounding
    (`EXACT`'s methods do the same without switching contexts: `EXACT.multiply(a, b)`)."""
    with localcontext(EXACT):
        yield


def to_decimal(value: object) -> Decimal:
    """Decimal, int or numeric string -> finite Decimal; float and bool are refused (not exact)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"money must be Decimal, int or str, not {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"money must be Decimal, int or str, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result
