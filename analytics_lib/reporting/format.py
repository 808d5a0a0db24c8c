"""How numbers read in reports: money, percentages, counts and changes, one definition each."""

from __future__ import annotations

import math
import re
from typing import Any

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "TRY": "₺", "JPY": "¥", "INR": "₹", "BRL": "R$"}

MONEY_WORDS = ("revenue", "volume", "amount", "fees", "refunds", "chargebacks", "value", "spend")
MONEY_TOKENS = frozenset({"mrr", "arr", "cac", "ltv", "clv", "arpa", "arpu"})
#: names that are multiples (x times), not percentages, although they read like ratios
MULTIPLE_NAMES = ("ltv_to_cac", "quick_ratio")
#: whole-number columns (shown without decimals)
COUNT_WORDS = ("transactions", "count", "customers", "payments", "subscribers", "failures", "alerts", "failed",
               "successful", "retries", "cohorts", "sessions", "disputes", "attempts")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return isinstance(value, float) and not math.isfinite(value)
    except TypeError:
        return False


def column_kind(name: str) -> str | None:
    """How a numeric column reads, from its name: ``percent``, ``money``, ``multiple`` or None.

    Rates and shares (names ending in rate/share/ratio/_pct, containing ``_rate``, ``share_of``,
    ``growth``, ``retention`` or ``percent``, or money per money such as ``fee_per_net_revenue``) are
    percentages; names containing revenue, volume, amount, fees, refunds, chargebacks, value or
    spend, or the words mrr, arr, cac, ltv, clv, arpa, arpu, are money; ``ltv_to_cac`` and
    ``quick_ratio`` are multiples. Amounts in minor units (``*_minor``) and p-values are not
    money-formatted.
    """
    low = str(name).lower()
    if low.startswith(MULTIPLE_NAMES):
        return "multiple"
    if low.endswith(("p_value", "pvalue")):  # a probability, shown as it is
        return None
    if (low.endswith(("rate", "share", "ratio", "conversion", "drop_off")) or "_rate" in low or "share_of" in low
            or "growth" in low or "retention" in low or "percent" in low or low.endswith("_pct")):
        return "percent"
    if "_per_" in low and _is_money(low.split("_per_", 1)[1]):
        return "percent"
    return "money" if _is_money(low) else None


def _is_money(low: str) -> bool:
    tokens = set(re.split(r"[^a-z0-9]+", low))
    if "minor" in tokens:
        return False
    return any(w in low for w in MONEY_WORDS) or bool(tokens & MONEY_TOKENS)


def kind_of(name: str) -> str:
    """The display kind a metric's name implies: percent, money, multiple (one rule for reports,
    dashboards and exports: :func:`column_kind`), then ms, count or number."""
    kind = column_kind(name)
    if kind is not None:
        return kind
    low = str(name).lower()
    if "latency" in low or low.endswith("_ms"):
        return "ms"
    if any(w in low for w in COUNT_WORDS):
        return "count"
    return "number"


def money(value: Any, currency: str = "USD", decimals: int | None = None, compact: bool = False) -> str:
    """``$1,234.50``; compact gives ``$1.2M``; missing values read as an en dash."""
    if _missing(value):
        return "–"
    value = float(value)
    symbol = CURRENCY_SYMBOLS.get(currency.upper(), "")
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if compact and amount >= 1000:
        for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
            if amount >= limit:
                text = f"{amount / limit:.1f}{suffix}"
                break
    else:
        places = decimals if decimals is not None else (0 if amount >= 10000 else 2)
        text = f"{amount:,.{places}f}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction (0.125) as ``12.5%``."""
    if _missing(value):
        return "–"
    return f"{float(value) * 100:.{decimals}f}%"


def count(value: Any) -> str:
    if _missing(value):
        return "–"
    return f"{int(round(float(value))):,}"


def number(value: Any, decimals: int = 2) -> str:
    if _missing(value):
        return "–"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.{decimals}f}"


def change(value: Any, decimals: int = 1) -> str:
    """A relative change (0.12) as ``+12.0%``."""
    if _missing(value):
        return "–"
    return f"{float(value) * 100:+.{decimals}f}%"


def points(value: Any, decimals: int = 1) -> str:
    """A change between two rates in percentage points: ``+1.2 pp``."""
    if _missing(value):
        return "–"
    return f"{float(value) * 100:+.{decimals}f} pp"


def value(value: Any, kind: str, currency: str = "USD", compact: bool = False) -> str:
    """Format ``value`` as ``kind`` (see :func:`kind_of`)."""
    if kind == "money":
        return money(value, currency, compact=compact)
    if kind == "percent":
        return percent(value)
    if kind == "count":
        return count(value)
    if kind == "ms":
        return "–" if _missing(value) else f"{float(value):,.0f} ms"
    if kind == "multiple":
        return "–" if _missing(value) else f"{float(value):.1f}×"
    if isinstance(value, str):
        return value
    return number(value)
