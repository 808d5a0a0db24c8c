"""Numbers as readers expect them in insight and summary sentences: money in the reporting
currency, percentages, counts and period names. (The insights layer formats its own sentences;
``analytics_lib.reporting`` formats tables and cards and sits to the right of this layer.)
"""

from __future__ import annotations

import math
from datetime import date

from analytics_lib.metrics.period import Period
from analytics_lib.warehouse.countries import country_name

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "TRY": "₺", "JPY": "¥", "INR": "₹", "BRL": "R$"}


def money(value: float, currency: str) -> str:
    """``$1,235`` for amounts of 1,000 and more, ``$11.19`` below; ``-$20`` for negatives."""
    sign = "-" if value < 0 else ""
    amount = abs(value)
    text = f"{amount:,.0f}" if amount >= 1000 else f"{amount:,.2f}"
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


def percent(value: float, decimals: int | None = None) -> str:
    """``12.3%``; rates under 1 % keep two decimals (``0.56%``) so thresholds stay readable."""
    pct = value * 100
    if decimals is None:
        decimals = 2 if abs(pct) < 1 else 1
    return f"{pct:.{decimals}f}%"


def points(value: float) -> str:
    """A difference of two rates in percentage points: ``2.3 points``."""
    pts = abs(value) * 100
    return f"{pts:.2f} points" if pts < 1 else f"{pts:.1f} points"


def count(value: float) -> str:
    return f"{int(round(value)):,}"


def multiple(value: float) -> str:
    """``1.54x`` below 2 (so a value just over a 1.5x threshold does not read as 1.5x), ``3.2x`` above."""
    return f"{value:.2f}x" if value < 2 else f"{value:.1f}x"


def p_value(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def country(code: str) -> str:
    name = country_name(code)
    return name if name else code


def period_name(period: Period) -> str:
    """``October 2026``, ``Q3 2026``, ``2026``, ``week 2026-W18``, ``1 May 2024`` or a date range."""
    if period.kind == "month":
        return f"{period.start:%B %Y}"
    if period.kind == "quarter":
        return f"Q{(period.start.month - 1) // 3 + 1} {period.start.year}"
    if period.kind == "year":
        return str(period.start.year)
    if period.kind == "week":
        return f"week {period.label}"
    if period.kind == "day":
        return _day(period.start)
    return f"{_day(period.start)} to {_day(period.last_day)}"


def _day(d: date) -> str:
    return f"{d.day} {d:%B %Y}"


def join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


PROVIDERS = {"stripe": "Stripe", "adyen": "Adyen", "paypal": "PayPal", "iyzico": "iyzico",
             "braintree": "Braintree", "checkout": "Checkout.com", "worldpay": "Worldpay"}
METHODS = {"card": "Cards", "paypal": "PayPal", "apple_pay": "Apple Pay", "google_pay": "Google Pay",
           "bank_transfer": "Bank transfer"}


def provider(code: str) -> str:
    """Display name of a provider id (``paypal`` -> ``PayPal``)."""
    return PROVIDERS.get(str(code).lower(), str(code))


def method(code: str) -> str:
    """Display name of a payment method id (``apple_pay`` -> ``Apple Pay``)."""
    return METHODS.get(str(code).lower(), str(code).replace("_", " ").capitalize())


def decimal(value: float, decimals: int = 2) -> str:
    """A plain number without a negative zero (``-0.00`` reads as a sign error)."""
    return f"{round(value, decimals) + 0.0:.{decimals}f}"


def probability(value: float) -> str:
    """``87%``; never ``100%`` or ``0%``, which no estimate from data can claim."""
    if value > 0.99:
        return "over 99%"
    if value < 0.01:
        return "under 1%"
    return percent(value, 0)


def period_end_name(period: Period) -> str:
    """``the end of October 2026`` (or of the period's last day)."""
    if period.kind in ("month", "quarter", "year"):
        return f"the end of {period_name(period)}"
    return _day(period.last_day)


def sentence_start(value: str) -> str:
    """Upper-case the first letter only (``str.capitalize`` would lower-case the rest)."""
    return value[:1].upper() + value[1:]


def during(period: Period) -> str:
    """``in October 2026``, ``on 1 May 2024``, ``from 1 May 2024 to 31 May 2024``."""
    if period.kind == "day":
        return f"on {period_name(period)}"
    if period.kind == "custom":
        return f"from {_day(period.start)} to {_day(period.last_day)}"
    return f"in {period_name(period)}"


def previous_name(period: Period) -> str:
    """The period before ``period`` by name (``September 2026``), or ``the previous 31 days``."""
    if period.kind == "custom":
        return f"the previous {period.days} days"
    return period_name(period.previous())


def previous_during(period: Period) -> str:
    """``in September 2026``, ``on 30 April 2024``, ``in the previous 31 days``."""
    if period.kind == "custom":
        return f"in the previous {period.days} days"
    return during(period.previous())
