from decimal import Decimal

import pytest

from analytics_lib.warehouse import privacy
from analytics_lib.warehouse.countries import code_for_name, country_name, is_country_code
from analytics_lib.warehouse.currency import UnknownCurrencyError, exponent, to_major, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (49.99, "USD", 4999),
        ("49.99", "USD", 4999),
        (0.1 + 0.2, "USD", 30),
        (1500, "JPY", 1500),
        ("12.345", "KWD", 12345),
        (Decimal("10.005"), "USD", 1000),  # half to even
        (Decimal("10.015"), "USD", 1002),
        ("1e3", "EUR", 100000),
        (100, "try", 10000),
    ],
)
def test_to_minor_uses_the_currency_exponent(amount, currency, minor):
    assert to_minor(amount, currency) == minor


def test_exponents_of_the_awkward_currencies():
    assert (exponent("JPY"), exponent("KRW"), exponent("KWD"), exponent("BHD"), exponent("TRY")) == (0, 0, 3, 3, 2)
    assert to_major(12345, "KWD") == 12.345
    assert to_major(1500, "JPY") == 1500


@pytest.mark.parametrize("bad", [None, True, "abc", float("nan"), float("inf"), [1]])
def test_to_minor_refuses_non_numbers(bad):
    with pytest.raises(ValueError):
        to_minor(bad, "USD")


def test_unknown_currency():
    with pytest.raises(UnknownCurrencyError, match="XYZ"):
        to_minor(1, "XYZ")


def test_hashes_are_keyed_stable_and_not_the_value(monkeypatch):
    h = privacy.hash_email("  Ada@Example.COM ")
    assert h == privacy.hash_email("ada@example.com")
    assert "ada" not in h and len(h) == 64
    monkeypatch.setenv(privacy.ENV_SALT, "another-salt")
    assert privacy.hash_email("ada@example.com") != h
    assert privacy.hash_email("") is None and privacy.hash_ip(None) is None


@pytest.mark.parametrize(
    ("ua", "device"),
    [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", "mobile"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari", "mobile"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) Safari", "tablet"),
        ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)", "tablet"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120", "desktop"),
        ("Googlebot/2.1", "bot"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_device_class(ua, device):
    assert privacy.device_class(ua) == device


def test_referrer_keeps_only_the_host():
    assert privacy.referrer_domain("https://www.Google.com/search?q=me@x.com") == "www.google.com"
    assert privacy.referrer_domain("news.example.org/path") == "news.example.org"
    assert privacy.referrer_domain("") is None


def test_countries():
    assert is_country_code("tr") and not is_country_code("ZZ")
    assert country_name("TR") in ("Türkiye", "Turkey")
    assert code_for_name("EIRE") == "IE" and code_for_name("United Kingdom") == "GB"
    assert code_for_name("Unspecified") is None
