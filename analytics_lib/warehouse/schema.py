"""The warehouse data model: every table's grain, keys, partitioning and columns.

This module is the single description of the warehouse. Ingestion validates and casts against
it, the Delta tables are created from it, snapshots expose it to SQL, and ``docs/data-model.md``
is generated from it (``payment-analytics schema --markdown``).

Rules (DESIGN.md "Data model"):

* money is an integer in minor units of the row's ``currency`` (``*_minor`` columns);
* timestamps are UTC (``timestamp`` columns are ``timestamp[us, tz=UTC]``);
* a payment keeps one row per id with its latest state; refunds, disputes and fees are their own
  tables with their own ids, so re-ingesting a newer export updates and never duplicates;
* personal data is not stored in the clear: e-mails and IP addresses are hashed on the way in,
  user agents reduced to a device class.

Every keyed table also carries three system columns written by the warehouse:
``_row_hash`` (content hash of the business columns, to tell updated from unchanged rows),
``_batch_id`` (the ingestion batch that last wrote the row) and ``_ingested_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

# Logical types and their Arrow / DuckDB spellings.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "list<string>": pa.list_(pa.string()),
}
_DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE",
    "list<string>": "VARCHAR[]",
}


@dataclass(frozen=True)
class Column:
    """One column: logical type, whether it may be null, its unit and meaning."""

    name: str
    type: str
    description: str
    nullable: bool = True
    unit: str = ""
    allowed: tuple[str, ...] = ()

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class TableSpec:
    """A warehouse table: grain (what one row is), natural key, partitioning and columns."""

    name: str
    grain: str
    keys: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str = ""
    partition_by: tuple[str, ...] = ()
    sort_by: tuple[str, ...] = ()
    system_columns: bool = True
    all_columns: tuple[Column, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cols = list(self.columns)
        if self.system_columns:
            cols += list(SYSTEM_COLUMNS)
        object.__setattr__(self, "all_columns", tuple(cols))
        names = [c.name for c in cols]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column names")
        for key in (*self.keys, *self.partition_by, *self.sort_by):
            if key not in names:
                raise ValueError(f"table {self.name}: {key!r} is not a column")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.all_columns]

    @property
    def business_columns(self) -> list[str]:
        """Columns that describe the entity (what the content hash covers)."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.all_columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.all_columns]
        )


SYSTEM_COLUMNS: tuple[Column, ...] = (
    Column("_row_hash", "string", "md5 of the business columns; equal hash = unchanged row", False),
    Column("_batch_id", "string", "ingestion batch that last inserted or changed the row", False),
    Column("_ingested_at", "timestamp", "when that batch committed the row (UTC)", False),
)

# Allowed values, shared by ingestion checks, the generator and the docs.
PAYMENT_STATUSES = (
    "pending", "completed", "failed", "canceled", "refunded", "partially_refunded", "disputed",
)
#: statuses of a payment whose money was captured at some point (later refunds do not undo it)
SUCCESSFUL_STATUSES = ("completed", "refunded", "partially_refunded", "disputed")
PAYMENT_METHODS = ("card", "paypal", "apple_pay", "google_pay", "bank_transfer", "unknown")
OUTCOME_TYPES = ("authorized", "issuer_declined", "blocked", "provider_error", "pending")
FAILURE_REASONS = (
    "insufficient_funds", "expired_card", "do_not_honor", "authentication_required",
    "processing_error", "fraudulent", "card_declined", "incorrect_cvc", "other",
)
BILLING_REASONS = ("purchase", "subscription_create", "subscription_cycle", "retry")
SUBSCRIPTION_EVENT_TYPES = ("trial_start", "start", "upgrade", "downgrade", "cancel", "reactivate")
SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "canceled", "unpaid")
CHECKOUT_STEPS = (
    "view_product", "begin_checkout", "enter_payment", "submit_payment", "payment_succeeded",
)

_id = "opaque identifier"

TABLES: dict[str, TableSpec] = {}


def _table(spec: TableSpec) -> TableSpec:
    TABLES[spec.name] = spec
    return spec


_table(TableSpec(
    name="customers",
    grain="one row per customer (a paying or trialling account, or a guest checkout)",
    keys=("customer_id",),
    description="Accounts that have paid or started a trial. No clear-text personal data.",
    columns=(
        Column("customer_id", "string", "platform user id (userId)", False),
        Column("email_hash", "string", "sha256 of the lower-cased, trimmed e-mail; null if unknown"),
        Column("country_code", "string", "ISO 3166-1 alpha-2 country of the account"),
        Column("signup_at", "timestamp", "account creation time (UTC)"),
        Column("acquisition_channel", "string", "organic, paid_search, social, affiliate, email, or unknown"),
        Column("campaign_id", "string", "marketing campaign that acquired the customer"),
        Column("device_class", "string", "desktop, mobile or tablet at signup"),
        Column("is_guest", "bool", "true for checkouts without an account (e.g. retail guests)", False),
    ),
))

_table(TableSpec(
    name="products",
    grain="one row per sellable product: a course or a subscription plan",
    keys=("product_id",),
    columns=(
        Column("product_id", "string", "course id (courseId) or plan id", False),
        Column("product_type", "string", "course or subscription_plan", False, allowed=("course", "subscription_plan")),
        Column("name", "string", "display name", False),
        Column("category", "string", "course topic or plan tier"),
        Column("plan_interval_months", "int32", "billing interval of a plan (1 monthly, 12 annual); null for courses"),
        Column("list_price_minor", "int64", "list price per purchase or per billing interval", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 currency of the list price", False),
        Column("trial_days", "int32", "free trial length of a plan; 0 for none"),
        Column("active", "bool", "still on sale", False),
        Column("created_at", "timestamp", "when the product went on sale (UTC)"),
    ),
))

_table(TableSpec(
    name="subscriptions",
    grain="one row per subscription, in its latest state",
    keys=("subscription_id",),
    columns=(
        Column("subscription_id", "string", "subscription id (subscriptionId)", False),
        Column("customer_id", "string", "owner", False),
        Column("product_id", "string", "current plan", False),
        Column("status", "string", "latest state", False, allowed=SUBSCRIPTION_STATUSES),
        Column("price_minor", "int64", "current price per billing interval before discount", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 billing currency", False),
        Column("billing_interval_months", "int32", "1 monthly, 12 annual", False),
        Column("discount_percent", "float64", "permanent discount on the price, 0-100", False, "percent"),
        Column("discount_code", "string", "code that granted the discount"),
        Column("started_at", "timestamp", "subscription creation (UTC); a trial starts here", False),
        Column("trial_end_at", "timestamp", "end of the free trial; null without trial"),
        Column("current_period_start", "timestamp", "start of the paid period in force"),
        Column("current_period_end", "timestamp", "end of the paid period in force"),
        Column("cancel_at_period_end", "bool", "cancellation requested, effective at period end", False),
        Column("canceled_at", "timestamp", "when the customer (or dunning) asked to cancel"),
        Column("ended_at", "timestamp", "when access and billing stopped"),
    ),
))

_table(TableSpec(
    name="subscription_events",
    grain="one row per change of a subscription (the history behind MRR movements)",
    keys=("event_id",),
    sort_by=("occurred_at",),
    description=(
        "Each event carries the subscription's price terms after the event, so the MRR in force "
        "at any time is the terms of the latest event at or before it. A cancel event's "
        "effective_at is the end of the paid period (or occurred_at for an immediate cancel)."
    ),
    columns=(
        Column("event_id", "string", _id, False),
        Column("subscription_id", "string", "subscription changed", False),
        Column("customer_id", "string", "owner", False),
        Column("event_type", "string", "what happened", False, allowed=SUBSCRIPTION_EVENT_TYPES),
        Column("occurred_at", "timestamp", "when the change was made (UTC)", False),
        Column("effective_at", "timestamp", "when the change takes effect for billing (UTC)", False),
        Column("product_id", "string", "plan after the event", False),
        Column("previous_product_id", "string", "plan before the event (upgrade/downgrade)"),
        Column("price_minor", "int64", "price per billing interval after the event, before discount", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 billing currency", False),
        Column("billing_interval_months", "int32", "1 monthly, 12 annual", False),
        Column("discount_percent", "float64", "permanent discount after the event, 0-100", False, "percent"),
        Column("reason", "string", "cancellation reason: voluntary, payment_failed, ...; null otherwise"),
    ),
))

_table(TableSpec(
    name="transactions",
    grain="one row per payment attempt (a retry is its own row), in its latest state",
    keys=("transaction_id",),
    partition_by=("created_month",),
    sort_by=("created_at",),
    description=(
        "The platform's payment record. amount_minor is what was charged, before fees, refunds "
        "and disputes (those live in their own tables). Retries of a failed renewal point to the "
        "first attempt through original_transaction_id."
    ),
    columns=(
        Column("transaction_id", "string", "payment id", False),
        Column("customer_id", "string", "paying customer (userId)", False),
        Column("amount_minor", "int64", "amount charged", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 charge currency", False),
        Column("status", "string", "latest payment state", False, allowed=PAYMENT_STATUSES),
        Column("outcome_type", "string", "authorization outcome: authorized, issuer_declined, blocked (our fraud rules), provider_error, pending", False, allowed=OUTCOME_TYPES),
        Column("payment_method", "string", "card, paypal, apple_pay, google_pay, bank_transfer", False, allowed=PAYMENT_METHODS),
        Column("card_brand", "string", "visa, mastercard, amex, troy; null for non-card"),
        Column("card_country", "string", "ISO country that issued the card or wallet funding"),
        Column("card_age_days", "int32", "days since the card was first seen on the platform", unit="days"),
        Column("card_expiry_month", "date", "first day of the card's expiry month"),
        Column("provider", "string", "payment service provider (stripe, adyen, paypal, iyzico, ...)", False),
        Column("created_at", "timestamp", "attempt created (UTC)", False),
        Column("completed_at", "timestamp", "capture succeeded (UTC)"),
        Column("failed_at", "timestamp", "attempt failed (UTC)"),
        Column("failure_reason", "string", "normalised decline/failure reason", allowed=FAILURE_REASONS),
        Column("attempt_number", "int32", "1 for a first attempt, 2.. for dunning retries", False),
        Column("original_transaction_id", "string", "first attempt of a retried charge; null on first attempts"),
        Column("billing_reason", "string", "purchase, subscription_create, subscription_cycle, retry", False, allowed=BILLING_REASONS),
        Column("product_id", "string", "course (courseId) or plan bought"),
        Column("subscription_id", "string", "subscription charged (subscriptionId)"),
        Column("plan_type", "string", "course, monthly or annual (planType)"),
        Column("country_code", "string", "ISO country of the buyer (countryCode)", False),
        Column("ip_country", "string", "country of the buyer's IP address, where known"),
        Column("ip_hash", "string", "sha256 of the IP address (never the address itself)"),
        Column("device_class", "string", "desktop, mobile, tablet or unknown, derived from the user agent"),
        Column("referrer_domain", "string", "host of the referrer URL"),
        Column("campaign_id", "string", "marketing campaign (campaignId)"),
        Column("discount_code", "string", "discount code applied (discountCode)"),
        Column("risk_score", "float64", "fraud risk score at authorization, 0-100", unit="score 0-100"),
        Column("fraud_indicators", "list<string>", "rule names that fired (e.g. country_mismatch, velocity)"),
        Column("created_month", "string", "YYYY-MM of created_at in UTC (partition column)", False),
    ),
))

_table(TableSpec(
    name="fees",
    grain="one row per fee line charged by a provider on a payment",
    keys=("fee_id",),
    sort_by=("created_at",),
    columns=(
        Column("fee_id", "string", _id, False),
        Column("transaction_id", "string", "payment the fee belongs to", False),
        Column("fee_type", "string", "processing, fixed, fx, cross_border, dispute", False),
        Column("amount_minor", "int64", "fee amount", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 currency of the fee (the payment's)", False),
        Column("provider", "string", "provider charging the fee", False),
        Column("created_at", "timestamp", "when the fee was charged (UTC)", False),
    ),
))

_table(TableSpec(
    name="refunds",
    grain="one row per refund (a payment may have several partial refunds)",
    keys=("refund_id",),
    sort_by=("created_at",),
    columns=(
        Column("refund_id", "string", _id, False),
        Column("transaction_id", "string", "refunded payment", False),
        Column("customer_id", "string", "customer refunded", False),
        Column("amount_minor", "int64", "amount refunded (positive)", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 currency (the payment's)", False),
        Column("reason", "string", "requested_by_customer, duplicate, fraudulent, not_as_described, other"),
        Column("status", "string", "succeeded, pending or failed", False, allowed=("succeeded", "pending", "failed")),
        Column("created_at", "timestamp", "refund issued (UTC)", False),
    ),
))

_table(TableSpec(
    name="disputes",
    grain="one row per dispute (chargeback) on a payment",
    keys=("dispute_id",),
    sort_by=("created_at",),
    columns=(
        Column("dispute_id", "string", _id, False),
        Column("transaction_id", "string", "disputed payment", False),
        Column("customer_id", "string", "customer who disputed", False),
        Column("amount_minor", "int64", "amount disputed (positive)", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 currency (the payment's)", False),
        Column("reason", "string", "fraudulent, product_not_received, duplicate, subscription_canceled, unrecognized, general", False),
        Column("status", "string", "needs_response, under_review, won, lost", False, allowed=("needs_response", "under_review", "won", "lost")),
        Column("outcome", "string", "won or lost once closed; null while open", allowed=("won", "lost")),
        Column("created_at", "timestamp", "dispute opened (UTC)", False),
        Column("evidence_due_at", "timestamp", "deadline for evidence (UTC)"),
        Column("closed_at", "timestamp", "when the outcome was decided (UTC)"),
    ),
))

_table(TableSpec(
    name="fx_rates",
    grain="one row per currency per day",
    keys=("rate_date", "currency"),
    description="Daily reference rates. Conversion to any reporting currency R: amount x usd_per_unit(c) / usd_per_unit(R).",
    columns=(
        Column("rate_date", "date", "day the rate applies to (UTC date)", False),
        Column("currency", "string", "ISO 4217 currency", False),
        Column("usd_per_unit", "float64", "US dollars per one major unit of currency (USD itself is 1.0)", False, "USD"),
    ),
))

_table(TableSpec(
    name="marketing_spend",
    grain="one row per campaign per day",
    keys=("spend_date", "campaign_id"),
    columns=(
        Column("spend_date", "date", "day of the spend (business time zone)", False),
        Column("campaign_id", "string", "campaign", False),
        Column("channel", "string", "paid_search, social, affiliate, email, display", False),
        Column("country_code", "string", "target country of the campaign"),
        Column("spend_minor", "int64", "amount spent", False, "minor units of currency"),
        Column("currency", "string", "ISO 4217 currency of the spend", False),
        Column("impressions", "int64", "ad impressions"),
        Column("clicks", "int64", "ad clicks"),
    ),
))

_table(TableSpec(
    name="checkout_events",
    grain="one row per checkout funnel step reached in a session",
    keys=("event_id",),
    partition_by=("occurred_month",),
    sort_by=("occurred_at",),
    columns=(
        Column("event_id", "string", _id, False),
        Column("session_id", "string", "checkout session", False),
        Column("customer_id", "string", "customer if signed in"),
        Column("step", "string", "funnel step", False, allowed=CHECKOUT_STEPS),
        Column("occurred_at", "timestamp", "when the step was reached (UTC)", False),
        Column("product_id", "string", "product in the checkout"),
        Column("payment_method", "string", "method chosen (from enter_payment on)"),
        Column("country_code", "string", "ISO country of the visitor"),
        Column("device_class", "string", "desktop, mobile or tablet"),
        Column("campaign_id", "string", "campaign of the visit"),
        Column("transaction_id", "string", "payment created by submit_payment / payment_succeeded"),
        Column("occurred_month", "string", "YYYY-MM of occurred_at in UTC (partition column)", False),
    ),
))

_table(TableSpec(
    name="user_activity",
    grain="one row per customer per day with any activity",
    keys=("customer_id", "activity_date"),
    partition_by=("activity_month",),
    columns=(
        Column("customer_id", "string", "customer", False),
        Column("activity_date", "date", "day (UTC)", False),
        Column("logins", "int32", "sign-ins that day", False),
        Column("lesson_views", "int32", "lessons opened that day", False),
        Column("minutes_watched", "float64", "video minutes watched", False, "minutes"),
        Column("activity_month", "string", "YYYY-MM of activity_date (partition column)", False),
    ),
))

_table(TableSpec(
    name="support_tickets",
    grain="one row per support ticket",
    keys=("ticket_id",),
    sort_by=("created_at",),
    columns=(
        Column("ticket_id", "string", _id, False),
        Column("customer_id", "string", "customer who opened it", False),
        Column("created_at", "timestamp", "opened (UTC)", False),
        Column("category", "string", "billing, technical, content, account, refund_request", False),
        Column("priority", "string", "low, normal, high, urgent", False),
        Column("status", "string", "open, pending, solved, closed", False),
        Column("resolved_at", "timestamp", "solved (UTC)"),
        Column("satisfaction", "int32", "CSAT 1-5 when rated"),
    ),
))

_table(TableSpec(
    name="fraud_alerts",
    grain="one row per fraud alert raised on a payment or customer",
    keys=("alert_id",),
    sort_by=("created_at",),
    columns=(
        Column("alert_id", "string", _id, False),
        Column("transaction_id", "string", "payment concerned"),
        Column("customer_id", "string", "customer concerned"),
        Column("alert_type", "string", "card_testing, country_mismatch, velocity, high_risk_score, high_value, ...", False),
        Column("severity", "string", "low, medium, high, critical", False, allowed=("low", "medium", "high", "critical")),
        Column("risk_score", "float64", "risk score that triggered it, 0-100"),
        Column("created_at", "timestamp", "raised (UTC)", False),
        Column("status", "string", "open, confirmed_fraud, false_positive", False, allowed=("open", "confirmed_fraud", "false_positive")),
        Column("reviewed_at", "timestamp", "when a reviewer decided (UTC)"),
    ),
))

#: anomaly rules of analytics_lib.live.anomalies (docs/live.md)
ANOMALY_ALERT_TYPES = (
    "volume_spike", "volume_drop", "success_rate_drop", "unusual_country", "high_value_payment",
    "fraud_score_spike",
)

_table(TableSpec(
    name="anomaly_alerts",
    grain="one row per anomaly: rule, subject and window (re-detections update the row)",
    keys=("alert_id",),
    partition_by=("alert_month",),
    sort_by=("window_start",),
    description=(
        "Alerts of the live anomaly rules (analytics_lib.live.anomalies, docs/live.md), so reports "
        "can count them. Detecting the same anomaly again updates its numbers and never adds a row; "
        "detected_at keeps the first detection."
    ),
    columns=(
        Column("alert_id", "string", "hash of alert type, subject and window (stable across re-detections)", False),
        Column("alert_type", "string", "rule that fired", False, allowed=ANOMALY_ALERT_TYPES),
        Column("severity", "string", "low, medium, high, critical", False, allowed=("low", "medium", "high", "critical")),
        Column("value", "float64", "what the window showed, in `unit`", False),
        Column("expected_value", "float64", "what history predicts for the window (the threshold for high_value_payment), in `unit`"),
        Column("unit", "string", "payments, rate (0-1), share (0-1), or the ISO 4217 reporting currency", False),
        Column("confidence", "float64", "1 - p-value of the rule's statistical test, 0-1", False, "probability"),
        Column("subject", "string", "what the alert is about: all, provider:<name>, customer:<keyed hash>, transaction:<id>; never personal data", False),
        Column("message", "string", "one plain sentence with the numbers", False),
        Column("detected_at", "timestamp", "first detection (UTC)", False),
        Column("window_start", "timestamp", "start of the window the rule looked at (UTC)", False),
        Column("window_end", "timestamp", "end of that window (UTC, exclusive)", False),
        Column("alert_month", "string", "YYYY-MM of window_start in UTC (partition column)", False),
    ),
))

_table(TableSpec(
    name="ingest_rejects",
    grain="one row per rejected input row (same file, line and reason are stored once)",
    keys=("reject_id",),
    columns=(
        Column("reject_id", "string", "hash of source, file name, line and reason", False),
        Column("batch_id", "string", "batch that first rejected the row", False),
        Column("source", "string", "ingestion source name", False),
        Column("file", "string", "input file name", False),
        Column("line", "int64", "1-based line (or record) number in the file", False),
        Column("reason", "string", "why the row was rejected", False),
        Column("raw", "string", "the row as read, cut to 4096 characters", False),
        Column("raw_length", "int64", "length of the row before cutting", False, "characters"),
        Column("rejected_at", "timestamp", "when (UTC)", False),
    ),
    system_columns=False,
))

_table(TableSpec(
    name="ingest_batches",
    grain="one row per ingestion batch (a file or a generated load)",
    keys=("batch_id",),
    columns=(
        Column("batch_id", "string", _id, False),
        Column("source", "string", "ingestion source name", False),
        Column("file", "string", "input file name"),
        Column("file_sha256", "string", "content hash of the input file"),
        Column("started_at", "timestamp", "batch start (UTC)", False),
        Column("finished_at", "timestamp", "batch end (UTC)", False),
        Column("rows_read", "int64", "input rows read", False),
        Column("inserted", "int64", "input rows that inserted a new record", False),
        Column("updated", "int64", "input rows that changed an existing record", False),
        Column("unchanged", "int64", "input rows identical to the stored record", False),
        Column("rejected", "int64", "input rows rejected (see ingest_rejects)", False),
        Column("table_versions", "string", "JSON: Delta version of each table after the batch", False),
    ),
    system_columns=False,
))


#: dependency order, parents first. Writers commit in this order and snapshots pin tables in the
#: reverse order, so a snapshot never shows a fee, refund or dispute whose payment it cannot see.
WRITE_ORDER: tuple[str, ...] = (
    "fx_rates", "products", "customers", "subscriptions", "subscription_events", "transactions",
    "fees", "refunds", "disputes", "marketing_spend", "checkout_events", "user_activity",
    "support_tickets", "fraud_alerts", "anomaly_alerts", "ingest_rejects", "ingest_batches",
)
assert set(WRITE_ORDER) == set(TABLES), "WRITE_ORDER must list every table"


def get_table(name: str) -> TableSpec:
    """The spec of a table, or a ``KeyError`` naming the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def markdown() -> str:
    """The data model as Markdown (docs/data-model.md is generated from this)."""
    lines = [
        "# Data model",
        "",
        "Generated from `analytics_lib/warehouse/schema.py` by `payment-analytics schema --markdown`;",
        "do not edit by hand.",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
    ]
    for spec in TABLES.values():
        lines += [f"## {spec.name}", "", f"**Grain:** {spec.grain}  ", f"**Key:** `{', '.join(spec.keys)}`  "]
        if spec.partition_by:
            lines.append(f"**Partitioned by:** `{', '.join(spec.partition_by)}`  ")
        if spec.description:
            lines += ["", spec.description]
        lines += ["", "| column | type | null | unit | meaning |", "|---|---|---|---|---|"]
        for col in spec.all_columns:
            meaning = col.description
            if col.allowed:
                meaning += f" (one of: {', '.join(col.allowed)})"
            lines.append(
                f"| `{col.name}` | {col.type} | {'yes' if col.nullable else 'no'} | {col.unit} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines)
