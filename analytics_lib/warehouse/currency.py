"""ISO 4217 currencies and the conversion between major and minor units.

Money is stored as integer minor units plus a currency code (CONVENTIONS.md 4). This module
is the one place that knows a currency's exponent (JPY 0, USD 2, KWD 3) and turns an amount in
major units into minor units and back.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# ISO 4217 minor-unit exponents for active currencies (funds and precious metals omitted).
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
    "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
    "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{c: 2 for c in _EXPONENT_2.split()},
    **{c: 0 for c in _EXPONENT_0.split()},
    **{c: 3 for c in _EXPONENT_3.split()},
    **{c: 4 for c in _EXPONENT_4.split()},
}


class UnknownCurrencyError(ValueError):
    """The code is not an active ISO 4217 currency."""


def normalise_currency(code: object) -> str:
    """Upper-case ISO 4217 code, or :class:`UnknownCurrencyError`."""
    if isinstance(code, str) and code in CURRENCY_EXPONENTS:
        return code
    if not isinstance(code, str):
        raise UnknownCurrencyError(f"currency must be a 3-letter ISO 4217 code, got {code!r}")
    upper = code.strip().upper()
    if upper not in CURRENCY_EXPONENTS:
        raise UnknownCurrencyError(f"unknown currency {code!r}")
    return upper


def exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit."""
    return CURRENCY_EXPONENTS[normalise_currency(currency)]


def to_minor(amount: object, currency: str) -> int:
    """Amount in major units (number or numeric string) -> integer minor units.

    Rounds half to even at the currency's precision, so ``to_minor("10.005", "USD") == 1000``
    and ``to_minor(1500, "JPY") == 1500``. Raises ``ValueError`` for non-numbers, NaN, infinity
    and booleans.
    """
    if isinstance(amount, bool) or amount is None:
        raise ValueError(f"amount must be a number, got {amount!r}")
    try:
        if isinstance(amount, float):
            value = Decimal(repr(amount))
        elif isinstance(amount, (int, Decimal)):
            value = Decimal(amount)
        elif isinstance(amount, str):
            value = Decimal(amount.strip())
        else:
            raise TypeError(type(amount).__name__)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"amount must be a number, got {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"amount must be finite, got {amount!r}")
    scaled = (value * (Decimal(10) ** exponent(currency))).quantize(Decimal(1), ROUND_HALF_EVEN)
    return int(scaled)


def to_major(amount_minor: int, currency: str) -> float:
    """Integer minor units -> float major units (for display and JSON)."""
    return amount_minor / (10 ** exponent(currency))
