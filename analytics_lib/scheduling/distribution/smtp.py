"""Sending mail: SMTP settings from the environment (never from a file in the repository) and one
send with errors sorted into temporary (retry later) and permanent ones.

=====================================  =========================================================
``PAYMENT_ANALYTICS_SMTP_HOST``        server name; e-mail targets fail (loudly) until it is set
``PAYMENT_ANALYTICS_SMTP_PORT``        default 587 for starttls, 465 for ssl, 25 for none
``PAYMENT_ANALYTICS_SMTP_SECURITY``    ``starttls`` (default), ``ssl`` (implicit TLS) or ``none``
``PAYMENT_ANALYTICS_SMTP_USER``        login name (no login when unset)
``PAYMENT_ANALYTICS_SMTP_PASSWORD``    its password, or ``PAYMENT_ANALYTICS_SMTP_PASSWORD_FILE``:
                                       a file holding it (a Docker/Kubernetes secret)
``PAYMENT_ANALYTICS_SMTP_FROM``        sender address (default ``payment-analytics@<host name>``)
``PAYMENT_ANALYTICS_SMTP_TIMEOUT``     seconds per network operation (default 30)
=====================================  =========================================================

They may also be put in the git-ignored ``.env`` at the project root.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from analytics_lib.config import ConfigError
from analytics_lib.scheduling.distribution.base import DeliveryError

PREFIX = "PAYMENT_ANALYTICS_SMTP_"
SECURITY = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    user: str | None
    password: str | None
    sender: str
    timeout: float

    def __repr__(self) -> str:  # never print the password
        return (f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
                f"user={self.user!r}, sender={self.sender!r}, timeout={self.timeout})")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SmtpSettings:
        env = dict(os.environ if env is None else env)
        host = env.get(PREFIX + "HOST", "").strip()
        if not host:
            raise DeliveryError(f"e-mail is not configured: set {PREFIX}HOST (see docs/scheduling.md)", retryable=False)
        security = env.get(PREFIX + "SECURITY", "starttls").strip().lower()
        if security not in SECURITY:
            raise ConfigError(f"{PREFIX}SECURITY={security!r}: use one of {', '.join(SECURITY)}")
        try:
            port = int(env.get(PREFIX + "PORT") or DEFAULT_PORTS[security])
            timeout = float(env.get(PREFIX + "TIMEOUT") or 30)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}PORT and {PREFIX}TIMEOUT must be numbers: {exc}") from None
        password = env.get(PREFIX + "PASSWORD")
        password_file = env.get(PREFIX + "PASSWORD_FILE")
        if not password and password_file:
            try:
                password = Path(password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{PREFIX}PASSWORD_FILE: cannot read {password_file}: {exc.strerror}") from None
        user = env.get(PREFIX + "USER") or None
        sender = env.get(PREFIX + "FROM") or f"payment-analytics@{socket.getfqdn() or 'localhost'}"
        return cls(host, port, security, user, password or None, sender, timeout)


def send(message: EmailMessage, recipients: list[str], smtp: SmtpSettings) -> dict[str, tuple[int, bytes]]:
    """Send ``message`` to ``recipients`` (the envelope); return the recipients the server refused
    (when it accepted others). Raise :class:`DeliveryError`: retryable for timeouts, connection
    problems and 4xx replies, permanent for 5xx replies and failed logins."""
    try:
        if smtp.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            client.ehlo()
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            return client.send_message(message, from_addr=smtp.sender, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP login as {smtp.user} refused ({exc.smtp_code})", retryable=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        raise DeliveryError(f"SMTP server {smtp.host} refused every recipient ({', '.join(map(str, sorted(codes)))})",
                            retryable=all(400 <= c < 500 for c in codes)) from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP server {smtp.host} replied {exc.smtp_code} {text.strip()[:200]}",
                            retryable=400 <= exc.smtp_code < 500) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"SMTP server {smtp.host}: {exc} (check {PREFIX}SECURITY)", retryable=False) from None
    except TimeoutError:
        raise DeliveryError(f"SMTP server {smtp.host}:{smtp.port} timed out after {smtp.timeout:g} s") from None
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib turns a read timeout into a disconnect
            raise DeliveryError(f"SMTP server {smtp.host}:{smtp.port} timed out after {smtp.timeout:g} s") from None
        raise DeliveryError(f"SMTP server {smtp.host}:{smtp.port} closed the connection: {exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DeliveryError(f"SMTP server {smtp.host}:{smtp.port}: {reason}") from None
