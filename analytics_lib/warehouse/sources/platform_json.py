"""``platform-json``: the platform's own payment export, one JSON object per line.

The record is the platform's payment model (DESIGN.md), in camelCase with amounts in major
units::

    {"id", "userId", "amount", "currency", "status", "paymentMethod", "provider",
     "createdAt", "completedAt"?, "failedAt"?,
     "metadata": {"courseId"?, "subscriptionId"?, "planType"?, "countryCode", "ipAddress",
                  "userAgent", "referrer"?, "campaignId"?, "discountCode"?},
     "fees": [{"type", "amount", "currency"?}], "riskScore", "fraudIndicators": [...]}

Optional extensions the warehouse keeps when present: ``failureReason``, ``outcomeType``,
``attemptNumber``, ``originalTransactionId``, ``billingReason``, ``metadata.ipCountry`` and
``card: {brand, country, ageDays, expMonth, expYear}``. Amounts become minor units by the
currency's exponent (JPY 0, KWD 3). Timestamps must carry a zone (JavaScript's
``toISOString`` always does). The IP address is kept only as a keyed hash and the user agent
only as a device class.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from analytics_lib.warehouse import privacy
from analytics_lib.warehouse.schema import (
    BILLING_REASONS,
    FAILURE_REASONS,
    OUTCOME_TYPES,
    PAYMENT_STATUSES,
)
from analytics_lib.warehouse.sources import base
from analytics_lib.warehouse.sources.base import IngestError, Progress, Record, Reject, RowError

STATUS_ALIASES = {
    "succeeded": "completed", "success": "completed", "paid": "completed", "captured": "completed",
    "cancelled": "canceled", "declined": "failed", "error": "failed", "processing": "pending",
    "requires_action": "pending",
}
METHOD_ALIASES = {
    "credit_card": "card", "debit_card": "card", "creditcard": "card", "applepay": "apple_pay",
    "googlepay": "google_pay", "bank": "bank_transfer", "wire": "bank_transfer", "eft": "bank_transfer",
}
FAILURE_ALIASES = {
    "card_expired": "expired_card", "declined": "card_declined", "generic_decline": "card_declined",
    "fraud": "fraudulent", "3ds_required": "authentication_required",
}
PLAN_ALIASES = {"month": "monthly", "year": "annual", "yearly": "annual", "one_time": "course"}


def _outcome(status: str, failure_reason: str | None) -> str:
    if status == "pending":
        return "pending"
    if status in ("failed", "canceled"):
        if failure_reason == "fraudulent":
            return "blocked"
        if failure_reason == "processing_error":
            return "provider_error"
        return "issuer_declined"
    return "authorized"


def parse_payment(obj: Any) -> Record:
    """Validate one platform payment object; raise RowError with the first problem found."""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise RowError("metadata must be an object")
    tx_id = base.identifier(obj.get("id"), "id")
    customer_id = base.identifier(obj.get("userId"), "userId")
    cur = base.currency(obj.get("currency"))
    amount = base.amount_minor(obj.get("amount"), cur)
    status = base.one_of(obj.get("status"), "status", PAYMENT_STATUSES, STATUS_ALIASES)
    method = base.name_value(obj.get("paymentMethod"), "paymentMethod", aliases=METHOD_ALIASES)
    provider = base.name_value(obj.get("provider"), "provider")
    created = base.timestamp(obj.get("createdAt"), "createdAt")
    completed = base.timestamp(obj.get("completedAt"), "completedAt", required=False)
    failed = base.timestamp(obj.get("failedAt"), "failedAt", required=False)
    assert created is not None
    for label, ts in (("completedAt", completed), ("failedAt", failed)):
        if ts is not None and ts < created:
            raise RowError(f"{label} is before createdAt")
    failure_reason = base.one_of(
        obj.get("failureReason"), "failureReason", FAILURE_REASONS, FAILURE_ALIASES, required=False
    )
    if status == "failed" and failure_reason is None:
        failure_reason = "other"
    outcome = base.one_of(obj.get("outcomeType"), "outcomeType", OUTCOME_TYPES, required=False)
    attempt = base.integer(obj.get("attemptNumber"), "attemptNumber", 1, 100) or 1
    original = base.identifier(obj.get("originalTransactionId"), "originalTransactionId", required=False)
    plan_type = base.name_value(meta.get("planType"), "metadata.planType", required=False, aliases=PLAN_ALIASES)
    subscription_id = base.identifier(meta.get("subscriptionId"), "metadata.subscriptionId", required=False)
    billing_reason = base.one_of(obj.get("billingReason"), "billingReason", BILLING_REASONS, required=False)
    if billing_reason is None:
        billing_reason = "retry" if attempt > 1 else ("subscription_cycle" if subscription_id else "purchase")
    country = base.country(meta.get("countryCode"), "metadata.countryCode")
    risk = base.number(obj.get("riskScore"), "riskScore", 0, 100)
    indicators = obj.get("fraudIndicators") or []
    if not isinstance(indicators, list):
        raise RowError("fraudIndicators must be a list")
    indicators = [base.name_value(i, "fraudIndicators[]") for i in indicators]
    card = obj.get("card") or {}
    if not isinstance(card, dict):
        raise RowError("card must be an object")
    expiry = None
    if card.get("expYear") is not None and card.get("expMonth") is not None:
        year = base.integer(card.get("expYear"), "card.expYear", 2000, 2100)
        month = base.integer(card.get("expMonth"), "card.expMonth", 1, 12)
        expiry = date(int(year), int(month), 1)  # type: ignore[arg-type]
    ip = meta.get("ipAddress")
    if ip is not None and not isinstance(ip, str):
        raise RowError("metadata.ipAddress must be a string")
    ua = meta.get("userAgent")
    if ua is not None and not isinstance(ua, str):
        raise RowError("metadata.userAgent must be a string")
    referrer = base.text_value(meta.get("referrer"), "metadata.referrer", 2000)
    row = {
        "transaction_id": tx_id,
        "customer_id": customer_id,
        "amount_minor": amount,
        "currency": cur,
        "status": status,
        "outcome_type": outcome or _outcome(status, failure_reason),  # type: ignore[arg-type]
        "payment_method": method,
        "card_brand": base.name_value(card.get("brand"), "card.brand", required=False),
        "card_country": base.country(card.get("country"), "card.country", required=False),
        "card_age_days": base.integer(card.get("ageDays"), "card.ageDays", 0, 36500),
        "card_expiry_month": expiry,
        "provider": provider,
        "created_at": created,
        "completed_at": completed,
        "failed_at": failed,
        "failure_reason": failure_reason,
        "attempt_number": attempt,
        "original_transaction_id": original,
        "billing_reason": billing_reason,
        "product_id": base.identifier(meta.get("courseId"), "metadata.courseId", required=False),
        "subscription_id": subscription_id,
        "plan_type": plan_type,
        "country_code": country,
        "ip_country": base.country(meta.get("ipCountry"), "metadata.ipCountry", required=False),
        "ip_hash": privacy.hash_ip(ip),
        "device_class": privacy.device_class(ua),
        "referrer_domain": privacy.referrer_domain(referrer),
        "campaign_id": base.identifier(meta.get("campaignId"), "metadata.campaignId", required=False),
        "discount_code": base.identifier(meta.get("discountCode"), "metadata.discountCode", required=False),
        "risk_score": risk,
        "fraud_indicators": indicators,
        "created_month": base.month_of(created),
    }
    fees = obj.get("fees") or []
    if not isinstance(fees, list):
        raise RowError("fees must be a list")
    children = []
    for i, fee in enumerate(fees):
        if not isinstance(fee, dict):
            raise RowError(f"fees[{i}] must be an object")
        fee_currency = base.currency(fee.get("currency") or cur, f"fees[{i}].currency")
        fee_type = base.name_value(fee.get("type") or "processing", f"fees[{i}].type")
        children.append(("fees", {
            "fee_id": f"{tx_id}:fee:{i}",
            "transaction_id": tx_id,
            "fee_type": fee_type,
            "amount_minor": base.amount_minor(fee.get("amount"), fee_currency, f"fees[{i}].amount", positive=False),
            "currency": fee_currency,
            "provider": provider,
            "created_at": completed or failed or created,
        }))
    derived = [("customers", {
        "customer_id": customer_id,
        "email_hash": None,
        "country_code": country,
        "signup_at": None,
        "acquisition_channel": "unknown",
        "campaign_id": row["campaign_id"],
        "device_class": row["device_class"],
        "is_guest": False,
    })]
    return Record(lines=(), table="transactions", row=row, children=children, derived=derived)


class PlatformJsonSource(base.Source):
    name = "platform-json"
    description = "the platform's JSON-lines payment export (camelCase, amounts in major units)"

    def read(self, path: Path, progress: Progress | None = None) -> Iterator[Record | Reject]:
        self.rows_read = 0
        done = 0
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                done += len(raw)
                if progress and number % 20000 == 0:
                    progress(done)
                if not raw.strip():
                    continue  # blank lines are not rows
                self.rows_read += 1
                if len(raw) > base.MAX_ROW_BYTES:
                    yield Reject(number, f"line too long ({len(raw)} bytes, limit {base.MAX_ROW_BYTES})",
                                 raw[:4096].decode("utf-8", "replace"), len(raw))
                    continue
                text = base.check_utf8(raw, number).rstrip("\r\n")
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield Reject(number, f"malformed JSON: {exc.msg} at column {exc.colno}", text)
                    continue
                except RecursionError:
                    yield Reject(number, "malformed JSON: nested too deeply", text)
                    continue
                except ValueError:  # an integer over Python's 4300-digit conversion limit
                    yield Reject(number, "malformed JSON: a number with more than 4300 digits", text)
                    continue
                try:
                    record = parse_payment(obj)
                except RowError as exc:
                    yield Reject(number, str(exc), text)
                    continue
                record.lines = (number,)
                yield record
        if progress:
            progress(done)
        if self.rows_read == 0:
            raise IngestError(f"{path.name}: empty file (no JSON lines)")


def to_platform_json(row: dict[str, Any], fees: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A warehouse transaction row (plus its fee rows) as a platform export record.

    Used by the benchmark and tests to produce realistic export files from demo data; personal
    fields are synthetic placeholders since the warehouse holds only their hashes.
    """
    from analytics_lib.warehouse.currency import to_major

    def iso(ts: datetime | None) -> str | None:
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z") if ts else None

    cur = row["currency"]
    return {
        "id": row["transaction_id"],
        "userId": row["customer_id"],
        "amount": to_major(row["amount_minor"], cur),
        "currency": cur,
        "status": row["status"],
        "paymentMethod": row["payment_method"],
        "provider": row["provider"],
        "createdAt": iso(row["created_at"]),
        "completedAt": iso(row.get("completed_at")),
        "failedAt": iso(row.get("failed_at")),
        "failureReason": row.get("failure_reason"),
        "attemptNumber": row.get("attempt_number", 1),
        "originalTransactionId": row.get("original_transaction_id"),
        "metadata": {
            "courseId": row.get("product_id"),
            "subscriptionId": row.get("subscription_id"),
            "planType": row.get("plan_type"),
            "countryCode": row["country_code"],
            "ipAddress": "203.0.113.7",
            "userAgent": {"mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile",
                          "tablet": "Mozilla/5.0 (iPad; CPU OS 17_0)"}.get(
                              row.get("device_class") or "", "Mozilla/5.0 (X11; Linux x86_64)"),
            "campaignId": row.get("campaign_id"),
            "discountCode": row.get("discount_code"),
        },
        "fees": [{"type": f["fee_type"], "amount": to_major(f["amount_minor"], f["currency"]),
                  "currency": f["currency"]} for f in (fees or [])],
        "riskScore": row.get("risk_score"),
        "fraudIndicators": list(row.get("fraud_indicators") or []),
    }
