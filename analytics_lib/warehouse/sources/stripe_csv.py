"""``stripe``: the Stripe Dashboard payments export (Payments -> Export, "all columns").

One row per charge. Header names are matched case-insensitively; the classic export says
``Created (UTC)`` and newer ones ``Created date (UTC)`` (both accepted; a zone other than UTC in
the header, e.g. ``Created date (Europe/Berlin)``, is honoured). Required columns: ``id``,
``Created (UTC)``, ``Amount``, ``Currency``, ``Status``; every other column is optional.

Mapping (see docs/sources.md for the full table):

* amounts are major units, possibly with thousands separators ("1,234.50"), converted to minor
  units by the currency's exponent;
* ``Status`` Paid/succeeded -> completed, Failed -> failed, Blocked -> failed (outcome blocked),
  Refunded/Partially refunded and ``Amount Refunded`` -> refunded or partially_refunded,
  Pending/Uncaptured -> pending, Canceled -> canceled; an open or lost dispute -> disputed;
* ``Fee`` > 0 -> a ``fees`` row ``{id}:fee`` (in ``Converted Currency``, the account's balance
  currency, when given); ``Amount Refunded`` > 0 -> a ``refunds`` row ``{id}:refund``
  (status succeeded, reason null, created_at = the charge's time: the export has no refund
  date); ``Disputed Amount`` > 0 -> a ``disputes`` row ``{id}:dispute``;
* ``Customer ID`` -> customer_id; a guest charge gets ``stripe-guest:<Card Fingerprint>`` (or
  ``stripe-guest:<charge id>``); ``Customer Email`` only as a keyed hash on the customer row;
  ``Customer Description``, card holder name and address are never read;
* country_code from ``Card Address Country``, else ``Card Issue Country``, else the row is
  rejected;
* rows with ``Mode`` = Test are rejected: test payments are not business.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from analytics_lib.warehouse import privacy
from analytics_lib.warehouse.sources import base
from analytics_lib.warehouse.sources.base import IngestError, Progress, Record, Reject, RowError
from analytics_lib.warehouse.sources.mapped_csv import (
    PERSONAL_HEADER,
    CsvHeader,
    country_text,
    csv_raw_rows,
    iter_csv,
    number_text,
    parse_int,
    parse_timestamp,
    read_header,
    wrong_width,
)
from analytics_lib.warehouse.sources.platform_json import _outcome

PROVIDER = "stripe"

#: logical column -> accepted header spellings (normalised: lower-case, single spaces)
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "amount": ("amount",),
    "amount_refunded": ("amount refunded",),
    "currency": ("currency",),
    "converted_currency": ("converted currency",),
    "fee": ("fee",),
    "status": ("status",),
    "seller_message": ("seller message",),
    "mode": ("mode",),
    "captured": ("captured",),
    "customer_id": ("customer id",),
    "customer_email": ("customer email",),
    "card_fingerprint": ("card fingerprint",),
    "card_brand": ("card brand",),
    "card_funding": ("card funding",),
    "card_last4": ("card last4",),
    "card_exp_month": ("card exp month",),
    "card_exp_year": ("card exp year",),
    "card_address_country": ("card address country",),
    "card_issue_country": ("card issue country",),
    "card_tokenization": ("card tokenization method",),
    "payment_source_type": ("payment source type", "payment method type"),
    "disputed_amount": ("disputed amount",),
    "dispute_status": ("dispute status",),
    "dispute_reason": ("dispute reason",),
    "product_id": ("course_id (metadata)", "courseid (metadata)", "product_id (metadata)"),
    "subscription_id": ("subscription_id (metadata)", "subscriptionid (metadata)"),
    "plan_type": ("plan_type (metadata)", "plantype (metadata)"),
    "campaign_id": ("campaign_id (metadata)", "campaignid (metadata)"),
    "discount_code": ("discount_code (metadata)", "discountcode (metadata)"),
}
#: timestamp columns: logical name -> header pattern; the zone is read from the parentheses
TIME_COLUMNS: dict[str, re.Pattern[str]] = {
    "created": re.compile(r"^created(?: date)? \(([^)]+)\)$"),
    "dispute_date": re.compile(r"^dispute date \(([^)]+)\)$"),
    "dispute_evidence_due": re.compile(r"^dispute evidence due \(([^)]+)\)$"),
}
REQUIRED = ("id", "created", "amount", "currency", "status")
_REQUIRED_LABEL = {"id": "id", "created": "Created (UTC) / Created date (UTC)", "amount": "Amount",
                   "currency": "Currency", "status": "Status"}

STATUS_MAP = {
    "paid": "completed", "succeeded": "completed", "successful": "completed", "captured": "completed",
    "complete": "completed", "completed": "completed",
    "failed": "failed", "declined": "failed", "blocked": "failed",
    "refunded": "refunded", "partially_refunded": "partially_refunded", "partial_refund": "partially_refunded",
    "pending": "pending", "uncaptured": "pending", "incomplete": "pending", "processing": "pending",
    "requires_action": "pending", "requires_capture": "pending",
    "canceled": "canceled", "cancelled": "canceled", "voided": "canceled",
    "disputed": "disputed", "in_dispute": "disputed",
}
SOURCE_TYPE_MAP = {
    "card": "card", "card_present": "card", "paypal": "paypal", "apple_pay": "apple_pay",
    "google_pay": "google_pay", "sepa_debit": "bank_transfer", "ach_debit": "bank_transfer",
    "ach_credit_transfer": "bank_transfer", "us_bank_account": "bank_transfer",
    "bank_account": "bank_transfer", "bacs_debit": "bank_transfer", "au_becs_debit": "bank_transfer",
    "customer_balance": "bank_transfer", "sofort": "bank_transfer", "ideal": "bank_transfer",
}
WALLETS = {"apple_pay": "apple_pay", "google_pay": "google_pay", "android_pay": "google_pay"}
BRAND_ALIASES = {"american_express": "amex", "master_card": "mastercard", "diners_club": "diners"}
DISPUTE_STATUS = {
    "needs_response": "needs_response", "warning_needs_response": "needs_response",
    "under_review": "under_review", "warning_under_review": "under_review",
    "won": "won", "warning_closed": "won", "lost": "lost", "charge_refunded": "lost",
}
DISPUTE_REASONS = ("fraudulent", "product_not_received", "duplicate", "subscription_canceled",
                   "unrecognized", "general")
#: Seller Message text -> failure_reason (first match wins)
FAILURE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"insufficient[ _]funds", re.I), "insufficient_funds"),
    (re.compile(r"expired", re.I), "expired_card"),
    (re.compile(r"do[ _]not[ _]honou?r", re.I), "do_not_honor"),
    (re.compile(r"authenticat|3d ?secure", re.I), "authentication_required"),
    (re.compile(r"incorrect[ _]cvc|security code", re.I), "incorrect_cvc"),
    (re.compile(r"fraud|too risky|blocked|radar", re.I), "fraudulent"),
    (re.compile(r"processing[ _]error", re.I), "processing_error"),
)
_BLOCKED = re.compile(r"blocked|too risky|radar", re.I)


def failure_reason(message: str | None) -> str:
    """Normalised failure reason from Stripe's seller message; card_declined when unrecognised."""
    for pattern, reason in FAILURE_PATTERNS:
        if message and pattern.search(message):
            return reason
    return "card_declined"


class StripeCsvSource(base.Source):
    name = "stripe"
    description = "Stripe Dashboard payments export (CSV, amounts in major units, times in UTC)"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._header: CsvHeader | None = None

    # -- header ----------------------------------------------------------------------------
    def _columns(self, header: CsvHeader, path: Path) -> tuple[dict[str, int], dict[str, Any]]:
        index: dict[str, int] = {}
        zones: dict[str, Any] = {}
        for logical, names in COLUMNS.items():
            i = header.find(*names)
            if i is not None:
                index[logical] = i
        for logical, pattern in TIME_COLUMNS.items():
            for key, i in header.index.items():
                m = pattern.match(key)
                if m:
                    # the zone as written (IANA names are case-sensitive)
                    original = re.match(pattern.pattern, " ".join(header.names[i].split()), re.I)
                    zone_name = (original or m).group(1).strip()
                    if zone_name.lower() in ("utc", "gmt", "z"):
                        zones[logical] = UTC
                    else:
                        try:
                            zones[logical] = ZoneInfo(zone_name)
                        except (ZoneInfoNotFoundError, ValueError, OSError):
                            raise IngestError(f"{path.name}: column {header.names[i]!r}: unknown time zone "
                                              f"{zone_name!r}") from None
                    index[logical] = i
                    break
        missing = [_REQUIRED_LABEL[c] for c in REQUIRED if c not in index]
        if missing:
            raise IngestError(f"{path.name}: missing required columns: {', '.join(missing)} "
                              f"(is this a Stripe payments export?)")
        dupes = [n for n in ("id", "amount", "currency", "status") if n in header.duplicates]
        if dupes:
            raise IngestError(f"{path.name}: column {dupes[0]!r} appears more than once in the header")
        header.redact_matching(PERSONAL_HEADER)
        return index, zones

    # -- reading ---------------------------------------------------------------------------
    def read(self, path: Path, progress: Progress | None = None) -> Iterator[Record | Reject]:
        self.rows_read = 0
        records = iter_csv(path, ",", progress)
        header = read_header(records, path)
        self._header = header
        index, zones = self._columns(header, path)
        width = len(header.names)
        for rec in records:
            self.rows_read += 1
            problem = wrong_width(rec, width)
            if problem:
                yield Reject(rec.line, problem, header.redact_raw(rec))
                continue
            values = {k: rec.fields[i] for k, i in index.items()}  # type: ignore[index]
            try:
                record = parse_charge(values, zones)
            except RowError as exc:
                yield Reject(rec.line, str(exc), header.redact_raw(rec))
                continue
            record.lines = (rec.line,)
            yield record
        if self.rows_read == 0:
            raise IngestError(f"{path.name}: no data rows (only a header)")

    def raw_rows(self, path: Path, lines: set[int]) -> dict[int, str]:
        header = self._header
        return csv_raw_rows(path, lines, ",", header.redact_raw if header else None)


# -- one charge ----------------------------------------------------------------------------


def _get(values: dict[str, str], key: str) -> str | None:
    text = values.get(key)
    if text is None:
        return None
    text = text.strip()
    if base.has_control_chars(text):
        raise RowError(f"{key} contains control characters")
    return text or None


def _money(values: dict[str, str], key: str, label: str, cur: str, positive: bool = False) -> int | None:
    text = _get(values, key)
    if text is None:
        return None
    return base.amount_minor(number_text(text, label), cur, label, positive=positive, allow_str=True)


def parse_charge(values: dict[str, str], zones: dict[str, Any]) -> Record:
    """One export row -> the transaction record with its fee/refund/dispute rows."""
    charge_id = base.identifier(values.get("id"), "id")
    mode = _get(values, "mode")
    if mode and mode.lower() == "test":
        raise RowError("test-mode payment (Mode Test): not ingested")
    created_text = _get(values, "created")
    if created_text is None:
        raise RowError("Created (UTC) is missing")
    created = parse_timestamp(created_text, "Created (UTC)", zones.get("created", UTC))
    cur = base.currency(_get(values, "currency"), "Currency")
    amount = _money(values, "amount", "Amount", cur, positive=True)
    if amount is None:
        raise RowError("Amount is missing")
    raw_status = _get(values, "status")
    if raw_status is None:
        raise RowError("Status is missing")
    key = raw_status.lower().replace("-", "_").replace(" ", "_")
    if key not in STATUS_MAP:
        raise RowError(f"Status {raw_status[:40]!r} is not a known Stripe status")
    status = STATUS_MAP[key]
    seller_message = _get(values, "seller_message")

    # refunds: amount refunded, or implied by a Refunded status when the column is absent/blank
    refunded = _money(values, "amount_refunded", "Amount Refunded", cur)
    if refunded is not None and refunded > amount:
        raise RowError(f"refund above the payment: Amount Refunded {values['amount_refunded'].strip()} > "
                       f"Amount {values['amount'].strip()}")
    captured = status in ("completed", "refunded", "partially_refunded", "disputed")
    if refunded is None:
        refunded = amount if status == "refunded" else 0
    elif refunded == 0 and status in ("refunded", "partially_refunded"):
        raise RowError(f"Status {raw_status!r} but Amount Refunded is 0")
    if refunded and not captured:
        raise RowError(f"Amount Refunded on a payment that was never captured (Status {raw_status!r})")

    # disputes
    disputed = _money(values, "disputed_amount", "Disputed Amount", cur)
    dispute_row = None
    if disputed:
        if not captured:
            raise RowError(f"Disputed Amount on a payment that was never captured (Status {raw_status!r})")
        if disputed > amount:
            raise RowError(f"dispute above the payment: Disputed Amount {values['disputed_amount'].strip()} > "
                           f"Amount {values['amount'].strip()}")
        d_status_text = _get(values, "dispute_status")
        d_status = "needs_response"
        if d_status_text:
            d_key = d_status_text.lower().replace(" ", "_")
            if d_key not in DISPUTE_STATUS:
                raise RowError(f"Dispute Status {d_status_text[:40]!r} is not one of "
                               f"{', '.join(DISPUTE_STATUS)}")
            d_status = DISPUTE_STATUS[d_key]
        d_reason_text = _get(values, "dispute_reason")
        d_reason = "general"
        if d_reason_text:
            d_reason = d_reason_text.lower().replace(" ", "_")
            d_reason = d_reason if d_reason in DISPUTE_REASONS else "general"
        d_date = _get(values, "dispute_date")
        d_created = parse_timestamp(d_date, "Dispute Date (UTC)", zones.get("dispute_date", UTC)) if d_date else created
        due = _get(values, "dispute_evidence_due")
        dispute_row = {
            "dispute_id": f"{charge_id}:dispute",
            "transaction_id": charge_id,
            "customer_id": None,  # filled below
            "amount_minor": disputed,
            "currency": cur,
            "reason": d_reason,
            "status": d_status,
            "outcome": d_status if d_status in ("won", "lost") else None,
            "created_at": d_created,
            "evidence_due_at": parse_timestamp(due, "Dispute Evidence Due (UTC)",
                                               zones.get("dispute_evidence_due", UTC)) if due else None,
            "closed_at": None,
        }

    # final status: open or lost dispute > refunds > the export's status
    if captured:
        if dispute_row is not None and dispute_row["status"] != "won":
            status = "disputed"
        elif refunded:
            status = "refunded" if refunded == amount else "partially_refunded"
        elif status == "disputed":
            status = "disputed"
        else:
            status = "completed"

    # failure
    reason = None
    blocked = False
    if status == "failed":
        blocked = key == "blocked" or bool(seller_message and _BLOCKED.search(seller_message))
        reason = "fraudulent" if blocked else failure_reason(seller_message)
    outcome = "blocked" if blocked else _outcome(status, reason)

    # payment method and card
    tokenization = (_get(values, "card_tokenization") or "").lower().replace(" ", "_")
    source_type = (_get(values, "payment_source_type") or "").lower().replace(" ", "_")
    has_card = any(_get(values, k) for k in ("card_brand", "card_funding", "card_last4", "card_fingerprint"))
    if tokenization in WALLETS:
        method = WALLETS[tokenization]
    elif source_type:
        method = SOURCE_TYPE_MAP.get(source_type, "unknown")
    else:
        method = "card" if has_card else "unknown"
    card_based = method in ("card", "apple_pay", "google_pay")
    brand = base.name_value(_get(values, "card_brand"), "Card Brand", required=False,
                            aliases=BRAND_ALIASES) if card_based else None
    issue_country_text = _get(values, "card_issue_country")
    issue_country = country_text(issue_country_text, "Card Issue Country") if issue_country_text else None
    address_country_text = _get(values, "card_address_country")
    address_country = country_text(address_country_text, "Card Address Country") if address_country_text else None
    country = address_country or issue_country
    if country is None:
        raise RowError("no country: Card Address Country and Card Issue Country are empty")
    expiry = None
    exp_month, exp_year = _get(values, "card_exp_month"), _get(values, "card_exp_year")
    if exp_month and exp_year:
        month = parse_int(exp_month, "Card Exp Month", 1, 12)
        year = parse_int(exp_year, "Card Exp Year", 0, 2100)
        year = year + 2000 if year < 100 else year
        if not 2000 <= year <= 2100:
            raise RowError(f"Card Exp Year {exp_year!r} is outside 2000..2100")
        expiry = date(year, month, 1)

    # customer
    customer_id = base.identifier(_get(values, "customer_id"), "Customer ID", required=False)
    is_guest = customer_id is None
    if is_guest:
        fingerprint = _get(values, "card_fingerprint")
        try:
            customer_id = base.identifier(f"stripe-guest:{fingerprint}", "Card Fingerprint") if fingerprint \
                else f"stripe-guest:{charge_id}"
        except RowError:
            customer_id = f"stripe-guest:{charge_id}"
    assert customer_id is not None

    fee_currency = base.currency(_get(values, "converted_currency") or cur, "Converted Currency")
    fee = _money(values, "fee", "Fee", fee_currency)

    plan_type = _get(values, "plan_type")
    subscription_id = base.identifier(_get(values, "subscription_id"), "subscription_id (metadata)", required=False)
    row: dict[str, Any] = {
        "transaction_id": charge_id,
        "customer_id": customer_id,
        "amount_minor": amount,
        "currency": cur,
        "status": status,
        "outcome_type": outcome,
        "payment_method": method,
        "card_brand": brand,
        "card_country": issue_country if card_based else None,
        "card_age_days": None,
        "card_expiry_month": expiry if card_based else None,
        "provider": PROVIDER,
        "created_at": created,
        "completed_at": created if captured else None,
        "failed_at": created if status == "failed" else None,
        "failure_reason": reason,
        "attempt_number": 1,
        "original_transaction_id": None,
        "billing_reason": "subscription_cycle" if subscription_id else "purchase",
        "product_id": base.identifier(_get(values, "product_id"), "course_id (metadata)", required=False),
        "subscription_id": subscription_id,
        "plan_type": base.name_value(plan_type, "plan_type (metadata)", required=False) if plan_type else None,
        "country_code": country,
        "ip_country": None,
        "ip_hash": None,
        "device_class": None,
        "referrer_domain": None,
        "campaign_id": base.identifier(_get(values, "campaign_id"), "campaign_id (metadata)", required=False),
        "discount_code": base.identifier(_get(values, "discount_code"), "discount_code (metadata)", required=False),
        "risk_score": None,
        "fraud_indicators": [],
        "created_month": base.month_of(created),
    }
    children: list[tuple[str, dict[str, Any]]] = []
    if fee:
        children.append(("fees", {
            "fee_id": f"{charge_id}:fee", "transaction_id": charge_id, "fee_type": "processing",
            "amount_minor": fee, "currency": fee_currency, "provider": PROVIDER, "created_at": created,
        }))
    if refunded:
        children.append(("refunds", {
            "refund_id": f"{charge_id}:refund", "transaction_id": charge_id, "customer_id": customer_id,
            "amount_minor": refunded, "currency": cur, "reason": None, "status": "succeeded",
            "created_at": created,
        }))
    if dispute_row is not None:
        dispute_row["customer_id"] = customer_id
        children.append(("disputes", dispute_row))
    email = values.get("customer_email")
    if email is not None and base.has_control_chars(email):
        raise RowError("Customer Email contains control characters")
    derived = [("customers", {
        "customer_id": customer_id,
        "email_hash": privacy.hash_email(email),
        "country_code": country,
        "signup_at": None,
        "acquisition_channel": "unknown",
        "campaign_id": row["campaign_id"],
        "device_class": None,
        "is_guest": is_guest,
    })]
    return Record(lines=(), table="transactions", row=row, children=children, derived=derived)

