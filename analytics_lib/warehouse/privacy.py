"""Personal data on the way in: keyed hashes for e-mails and IPs, device class for user agents.

DESIGN.md: personal data is never shown; analysis uses derived fields. The warehouse stores no
clear-text e-mail, IP address or user agent. Hashes are keyed (HMAC-SHA256) with a salt from
``PAYMENT_ANALYTICS_HASH_SALT`` so that a hashed IPv4 address cannot be reversed by trying all
four billion addresses; keep the salt stable, or joins across loads break.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from functools import lru_cache
from urllib.parse import urlsplit

ENV_SALT = "PAYMENT_ANALYTICS_HASH_SALT"
_DEFAULT_SALT = "payment-analytics-demo-salt"  # set PAYMENT_ANALYTICS_HASH_SALT in production


def _salt() -> bytes:
    return os.environ.get(ENV_SALT, _DEFAULT_SALT).encode()


def keyed_hash(value: str) -> str:
    return _keyed_hash(_salt(), value)


@lru_cache(maxsize=65536)
def _keyed_hash(salt: bytes, value: str) -> str:
    return hmac.new(salt, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_email(email: str | None) -> str | None:
    """Keyed hash of the trimmed, lower-cased e-mail; None for empty input."""
    if not email or not email.strip():
        return None
    return keyed_hash(email.strip().lower())


def hash_ip(ip: str | None) -> str | None:
    if not ip or not ip.strip():
        return None
    return keyed_hash(ip.strip())


_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))", re.I)
_MOBILE = re.compile(r"mobi|iphone|ipod|android|blackberry|opera mini|windows phone", re.I)
_BOT = re.compile(r"bot|crawl|spider|curl|wget|python-requests|headless", re.I)


@lru_cache(maxsize=4096)
def device_class(user_agent: str | None) -> str:
    """desktop, mobile, tablet, bot or unknown from a user-agent string."""
    if not user_agent or not user_agent.strip():
        return "unknown"
    if _BOT.search(user_agent):
        return "bot"
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


@lru_cache(maxsize=4096)
def referrer_domain(referrer: str | None) -> str | None:
    """Host of a referrer URL (no path or query, which may carry personal data)."""
    if not referrer or not referrer.strip():
        return None
    text = referrer.strip()
    host = urlsplit(text if "//" in text else "//" + text).hostname
    return host.lower()[:255] if host else None


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_JSON_PERSONAL = re.compile(
    r'("(?:ipAddress|ip_address|ip|userAgent|user_agent|email|customerEmail|customer_email)"\s*:\s*)'
    r'"(?:[^"\\]|\\.)*"',
    re.I,
)
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    """Remove personal data from raw input text kept for people to read (ingest rejects):
    e-mail addresses, IPv4 addresses, and the values of JSON keys that hold an IP address,
    user agent or e-mail."""
    text = _JSON_PERSONAL.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)
    text = _EMAIL.sub(REDACTED, text)
    return _IPV4.sub(REDACTED, text)
