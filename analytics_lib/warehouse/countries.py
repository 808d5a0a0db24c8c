"""ISO 3166-1 countries: validation of codes and display names (from pycountry)."""

from __future__ import annotations

from functools import lru_cache

import pycountry

#: names people use in exports that are not ISO names (Online Retail says "EIRE", "RSA", ...)
_ALIASES = {
    "EIRE": "IE", "RSA": "ZA", "USA": "US", "UK": "GB", "GREAT BRITAIN": "GB",
    "CHANNEL ISLANDS": "JE", "EUROPEAN COMMUNITY": "EU", "CZECH REPUBLIC": "CZ",
    "KOREA": "KR", "SOUTH KOREA": "KR", "TURKEY": "TR", "RUSSIA": "RU",
}
#: codes that are not countries but appear in payment data
_EXTRA = {"EU": "European Union", "XK": "Kosovo"}


@lru_cache(maxsize=1)
def _codes() -> dict[str, str]:
    table = {c.alpha_2: getattr(c, "common_name", None) or c.name for c in pycountry.countries}
    table.update(_EXTRA)
    return table


def is_country_code(code: object) -> bool:
    return isinstance(code, str) and code.upper() in _codes()


def country_name(code: str | None) -> str:
    if not code:
        return "Unknown"
    return _codes().get(code.upper(), code.upper())


def code_for_name(name: str | None) -> str | None:
    """ISO alpha-2 code for a country name, alias or code; None when it cannot be told."""
    if not name or not name.strip():
        return None
    text = name.strip()
    upper = text.upper()
    if upper in _ALIASES:
        return _ALIASES[upper]
    if len(upper) == 2 and upper in _codes():
        return upper
    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        return None


def all_countries() -> dict[str, str]:
    """Code -> display name for every known code."""
    return dict(_codes())
