"""Anomaly detection over the live window, and the alerts table that records what it found.

``detect_anomalies(session, now)`` looks at the last complete clock hour and the clock hour so
far (business time zone) and compares them with the same hours on the same weekday in earlier
weeks. Six rules, each with a statistical test (docs/live.md has the worked reasoning):

===================  ======================================================================
rule                 test
===================  ======================================================================
volume_spike/drop    payments in the window against a negative binomial prediction from the
                     same window in the last ``baseline_weeks`` weeks (:func:`stats.count_test`)
success_rate_drop    settled success rate against the same windows, overall and per provider,
                     random-effects two-proportion test (:func:`stats.proportion_test`)
fraud_score_spike    share of scored payments at or above the review threshold, same test
high_value_payment   each payment above ``high_value_threshold`` (reporting currency);
                     confidence from the share of baseline payments at least as large
unusual_country      a customer with history paying from a country none of their payments in
                     the lookback came from; confidence = 1 - Good-Turing chance of a new country
===================  ======================================================================

An alert is reported when its test's p-value is below ``alpha`` (``confidence = 1 - p``); its
id is a hash of type, subject and window, so detecting the same anomaly again (every few
seconds on a dashboard) gives the same id, and :func:`record_alerts` updates the stored row
instead of adding one. Every query is bounded by time, so the cost follows the window and the
number of baseline weeks, not the length of the history.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import pyarrow as pa

from analytics_lib.live import stats
from analytics_lib.metrics.api import BLOCK_THRESHOLD, REVIEW_THRESHOLD
from analytics_lib.metrics.engine import Filters, MetricSession, MissingRateError
from analytics_lib.metrics.period import Period
from analytics_lib.warehouse import Warehouse, WriteResult, new_batch_id
from analytics_lib.warehouse.privacy import keyed_hash
from analytics_lib.warehouse.schema import ANOMALY_ALERT_TYPES

log = logging.getLogger(__name__)

ALERT_TYPES: tuple[str, ...] = ANOMALY_ALERT_TYPES
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
#: columns of the frame :func:`detect_anomalies` returns (the table adds ``alert_month``)
COLUMNS: tuple[str, ...] = (
    "alert_id", "alert_type", "severity", "value", "expected_value", "unit", "confidence",
    "subject", "message", "detected_at", "window_start", "window_end",
)
#: the rules whose cost follows the window (all but the country rule, which reads the customers'
#: lookback): what a dashboard can run on every refresh
WINDOW_RULES: tuple[str, ...] = tuple(r for r in ALERT_TYPES if r != "unusual_country")
#: the reference document's high-value threshold ($10,000), here in the reporting currency
DEFAULT_HIGH_VALUE_THRESHOLD = 10_000.0


@dataclass(frozen=True)
class AnomalyOptions:
    """Settings of the anomaly rules. Defaults are documented in docs/live.md.

    Attributes
    ----------
    rules : tuple of str
        Rules to run (default all of :data:`ALERT_TYPES`).
    baseline_weeks : int, default 8
        Earlier weeks whose same weekday and hour form the expected value.
    min_baseline_weeks : int, default 4
        Fewer weeks of history than this: the volume, success and fraud rules stay silent.
    alpha : float, default 1e-4
        Largest p-value reported (``confidence >= 1 - alpha``). Per-provider success tests share
        it (Bonferroni over providers). The window is re-tested every few seconds as the hour
        fills, so alpha is set well below the usual 0.05.
    min_window_minutes : int, default 10
        The hour so far is tested once this many minutes have passed (the last complete hour is
        always tested).
    min_window_payments : int, default 20
        Settled (success rule) or scored (fraud rule) payments a window needs before its share
        is tested.
    high_value_threshold : float, default 10000
        Payments at or above this amount, in major units of the reporting currency, are alerts.
    review_threshold, block_threshold : float, default 65 and 75
        Risk-score thresholds (the metric layer's): the fraud rule counts scores at or above the
        review threshold; an unusual-country payment scoring above them is medium or high.
    country_lookback_days : int, default 90
        History searched for a customer's earlier payment countries.
    min_country_history : int, default 5
        Earlier payments a customer needs in the lookback before a new country is unusual.
    min_country_confidence : float, default 0.8
        Smallest ``1 - P(new country)`` (Good-Turing) that makes a new country unusual.
    by_provider : bool, default True
        Also test the success rate of each provider.
    timezone : str, optional
        Business time zone of hours and weekdays (default the settings' time zone).
    """

    rules: tuple[str, ...] = ALERT_TYPES
    baseline_weeks: int = 8
    min_baseline_weeks: int = 4
    alpha: float = 1e-4
    min_window_minutes: int = 10
    min_window_payments: int = 20
    high_value_threshold: float = DEFAULT_HIGH_VALUE_THRESHOLD
    review_threshold: float = REVIEW_THRESHOLD
    block_threshold: float = BLOCK_THRESHOLD
    country_lookback_days: int = 90
    min_country_history: int = 5
    min_country_confidence: float = 0.8
    by_provider: bool = True
    timezone: str | None = None

    def __post_init__(self) -> None:
        unknown = [r for r in self.rules if r not in ALERT_TYPES]
        if unknown:
            raise ValueError(f"unknown anomaly rule {unknown[0]!r}; rules: {', '.join(ALERT_TYPES)}")
        if not 1 <= self.baseline_weeks <= 52:
            raise ValueError("baseline_weeks must be between 1 and 52")
        if not 1 <= self.min_baseline_weeks <= self.baseline_weeks:
            raise ValueError("min_baseline_weeks must be between 1 and baseline_weeks")
        if not 0 < self.alpha < 0.5:
            raise ValueError("alpha must be between 0 and 0.5")
        if not 0 <= self.min_window_minutes <= 60:
            raise ValueError("min_window_minutes must be between 0 and 60")
        if self.min_window_payments < 1:
            raise ValueError("min_window_payments must be at least 1")
        if not (math.isfinite(self.high_value_threshold) and self.high_value_threshold > 0):
            raise ValueError("high_value_threshold must be a positive amount")
        if not 0 <= self.review_threshold <= self.block_threshold <= 100:
            raise ValueError("thresholds must satisfy 0 <= review <= block <= 100")
        if not 1 <= self.country_lookback_days <= 3660:
            raise ValueError("country_lookback_days must be between 1 and 3660")
        if self.min_country_history < 1:
            raise ValueError("min_country_history must be at least 1")
        if not 0 < self.min_country_confidence < 1:
            raise ValueError("min_country_confidence must be between 0 and 1")
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError(f"unknown time zone {self.timezone!r}") from None


# -- severity ladders (docs/live.md): effect sizes, applied only to significant results ---------
def _volume_spike_severity(ratio: float) -> str:
    return "low" if ratio < 2 else "medium" if ratio < 4 else "high" if ratio < 8 else "critical"


def _volume_drop_severity(ratio: float) -> str:
    return "low" if ratio > 0.75 else "medium" if ratio > 0.5 else "high" if ratio > 0.2 else "critical"


def _success_drop_severity(points: float) -> str:
    return "low" if points < 5 else "medium" if points < 10 else "high" if points < 25 else "critical"


def _fraud_spike_severity(ratio: float) -> str:
    return "low" if ratio < 2 else "medium" if ratio < 3 else "high" if ratio < 5 else "critical"


def _high_value_severity(multiple: float) -> str:
    return "medium" if multiple < 2 else "high" if multiple < 5 else "critical"


def _country_severity(risk: float | None, options: AnomalyOptions) -> str:
    if risk is not None and risk >= options.block_threshold:
        return "high"
    if risk is not None and risk >= options.review_threshold:
        return "medium"
    return "low"


# -- SQL ---------------------------------------------------------------------------------------
@cache
def _queries() -> dict[str, str]:
    text = resources.files("analytics_lib.live").joinpath("sql", "anomalies.sql").read_text("utf-8")
    parts = re.split(r"^--\s*name:\s*(\w+)\s*$", text, flags=re.M)
    return {name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _month(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m}"


@dataclass(frozen=True)
class _Span:
    name: str  # "previous" (last complete hour) or "current" (hour so far)
    start: datetime  # week 0, UTC
    end: datetime

    def shifted(self, weeks: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The same local weekday and wall-clock times ``weeks`` weeks earlier (DST-safe)."""
        return tuple(  # type: ignore[return-value]
            (t.astimezone(tz) - timedelta(weeks=weeks)).astimezone(UTC) for t in (self.start, self.end)
        )


@dataclass
class _Context:
    session: MetricSession
    now: datetime
    tz: ZoneInfo
    options: AnomalyOptions
    spans: list[_Span]
    weeks: list[int] = field(default_factory=list)  # available baseline weeks (>= 1)
    currency: str = "USD"
    params: dict[str, Any] = field(default_factory=dict)
    week_ranges: str = "false"

    def query(self, name: str) -> str:
        """A query of sql/anomalies.sql with its week ranges filled in (only ``$`` names are values)."""
        return _queries()[name].replace("{week_ranges}", self.week_ranges)

    def local(self, ts: datetime, with_day: bool = False) -> str:
        value = ts.astimezone(self.tz)
        return value.strftime("%a %H:%M" if with_day else "%H:%M")

    def span_text(self, span: _Span) -> str:
        return f"between {self.local(span.start)} and {self.local(span.end)} ({self.tz.key})"


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC instants)")
    return now.astimezone(UTC)


def _spans(now: datetime, tz: ZoneInfo, options: AnomalyOptions) -> list[_Span]:
    local = now.astimezone(tz)
    hour = local.replace(minute=0, second=0, microsecond=0)
    previous = _Span("previous", (hour - timedelta(hours=1)).astimezone(UTC), hour.astimezone(UTC))
    spans = [previous]
    if now - hour.astimezone(UTC) >= timedelta(minutes=max(options.min_window_minutes, 0)) and now > hour:
        spans.append(_Span("current", hour.astimezone(UTC), now))
    return spans


def alert_id(alert_type: str, subject: str, window_key: str) -> str:
    """Stable id of an anomaly: the same rule, subject and window always give the same id."""
    return hashlib.sha256(f"{alert_type}\x1f{subject}\x1f{window_key}".encode()).hexdigest()[:24]


def customer_subject(customer_id: str) -> str:
    """``customer:<keyed hash>``: an alert names a customer without personal data."""
    return "customer:" + keyed_hash(customer_id)[:16]


# -- public API ----------------------------------------------------------------------------------
def detect_anomalies(
    session: MetricSession,
    now: datetime | None = None,
    *,
    options: AnomalyOptions | None = None,
    filters: Filters | Mapping[str, Any] | None = None,
    currency: str | None = None,
) -> pd.DataFrame:
    """Anomalies of the last complete hour and the hour so far, as alerts.

    Parameters
    ----------
    session : MetricSession
        The snapshot to read (its scope is changed: call the metric functions again after this).
    now : datetime, optional
        The detection instant (timezone-aware; default the current time). Payments created at
        or after it are ignored, so a warehouse holding later rows can be replayed.
    options : AnomalyOptions, optional
        Rule settings (defaults documented on :class:`AnomalyOptions`).
    filters : Filters or mapping, optional
        Metric-layer filters (country, provider, ...) applied to the window and its baseline;
        a customer's country history is never filtered.
    currency : str, optional
        Reporting currency of the high-value rule (default the settings' currency).

    Returns
    -------
    pandas.DataFrame
        One row per alert with the columns of :data:`COLUMNS`, most severe first; empty (with
        those columns) when nothing is unusual.
    """
    options = options or AnomalyOptions()
    now = _utc(now)
    tz = ZoneInfo(options.timezone or session.settings.timezone)
    ctx = _Context(session=session, now=now, tz=tz, options=options, spans=_spans(now, tz, options))
    alerts: list[dict[str, Any]] = []
    with session.lock:
        _scope(ctx, filters, currency)
        _set_baseline(ctx)
        rules = set(options.rules)
        if ctx.weeks and rules & {"volume_spike", "volume_drop", "success_rate_drop", "fraud_score_spike"}:
            counts = _span_counts(ctx)
            if rules & {"volume_spike", "volume_drop"}:
                alerts += _volume_alerts(ctx, counts)
            if "success_rate_drop" in rules:
                alerts += _success_alerts(ctx, counts)
            if "fraud_score_spike" in rules:
                alerts += _fraud_alerts(ctx, counts)
        if rules & {"high_value_payment", "unusual_country"}:
            session.con.execute(_queries()["live_window"])
            if "high_value_payment" in rules:
                alerts += _high_value_alerts(ctx)
            if "unusual_country" in rules:
                alerts += _country_alerts(ctx)
    return _frame(alerts)


def _frame(alerts: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(alerts, columns=list(COLUMNS))
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})
        return frame
    frame["_rank"] = frame["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    frame = frame.sort_values(["_rank", "confidence", "alert_type", "subject"],
                              ascending=[False, False, True, True], kind="stable")
    return frame.drop(columns="_rank").reset_index(drop=True)


def _dtype(column: str) -> str:
    if column in ("value", "expected_value", "confidence"):
        return "float64"
    if column in ("detected_at", "window_start", "window_end"):
        return "datetime64[us, UTC]"
    return "object"


# -- set-up --------------------------------------------------------------------------------------
def _scope(ctx: _Context, filters: Any, currency: str | None) -> None:
    """Scope the session to the window (start of the last complete hour .. now)."""
    start = ctx.spans[0].start
    tz_name = ctx.tz.key
    period = Period(start.astimezone(ctx.tz).date(), ctx.now.astimezone(ctx.tz).date() + timedelta(days=1),
                    "custom", tz_name)
    try:
        scope = ctx.session.scope(period, Filters.of(filters), currency, window=(start, ctx.now))
        ctx.currency = scope.currency
    except MissingRateError as exc:
        # the scope is set; only the conversion of some window payment failed: the high-value
        # rule skips payments without a rate, every other rule needs no conversion
        log.warning("anomaly detection without some FX rates: %s", exc)
        ctx.currency = ctx.session.current.currency


def _set_baseline(ctx: _Context) -> None:
    """Register the spans of week 0 and of every available earlier week."""
    options = ctx.options
    con = ctx.session.con
    oldest = ctx.spans[0].shifted(options.baseline_weeks, ctx.tz)[0]
    # usually the oldest baseline week's month already has earlier payments: one month is read
    first = con.execute(_queries()["data_start"], {
        "first_month": _month(oldest), "last_month": _month(oldest), "now": ctx.now,
    }).fetchall()[0][0]
    if first is None or first > oldest:
        first = con.execute(_queries()["data_start"], {
            "first_month": _month(oldest), "last_month": _month(ctx.now), "now": ctx.now,
        }).fetchall()[0][0]
    weeks = []
    if first is not None:
        for k in range(1, options.baseline_weeks + 1):
            if ctx.spans[0].shifted(k, ctx.tz)[0] >= first:
                weeks.append(k)
    ctx.weeks = weeks if len(weeks) >= options.min_baseline_weeks else []
    rows: dict[str, list] = {"week": [], "span": [], "start_at": [], "end_at": [], "as_of": []}
    for k in [0, *weeks]:
        as_of = _Span("as_of", ctx.now, ctx.now).shifted(k, ctx.tz)[0]
        for span in ctx.spans:
            start, end = span.shifted(k, ctx.tz)
            rows["week"].append(k)
            rows["span"].append(span.name)
            rows["start_at"].append(start)
            rows["end_at"].append(end)
            rows["as_of"].append(as_of)
    ts = pa.timestamp("us", tz="UTC")
    table = pa.table({"week": pa.array(rows["week"], pa.int32()), "span": pa.array(rows["span"], pa.string()),
                      "start_at": pa.array(rows["start_at"], ts), "end_at": pa.array(rows["end_at"], ts),
                      "as_of": pa.array(rows["as_of"], ts)})
    con.register("live_spans_src", table)
    con.execute("CREATE OR REPLACE TEMP TABLE live_spans AS SELECT * FROM live_spans_src")
    con.unregister("live_spans_src")
    first_start = min(rows["start_at"])
    last_end = max(rows["end_at"])
    ctx.params = {"first_month": _month(first_start), "last_month": _month(last_end)}
    # one contiguous range per week (its spans are adjacent): bound values, pruned per range
    ranges = []
    for k in [0, *weeks]:
        starts = [s for w, s in zip(rows["week"], rows["start_at"], strict=True) if w == k]
        ends = [e for w, e in zip(rows["week"], rows["end_at"], strict=True) if w == k]
        ctx.params[f"start_{k}"], ctx.params[f"end_{k}"] = min(starts), max(ends)
        ranges.append(f"(t.created_at >= $start_{k} AND t.created_at < $end_{k})")
    ctx.week_ranges = " OR ".join(ranges)


def _span_counts(ctx: _Context) -> pd.DataFrame:
    """Counts per week, span and provider (provider NaN = all), zeros filled in."""
    params = {**ctx.params, "review": float(ctx.options.review_threshold)}
    frame = ctx.session.con.execute(ctx.query("span_counts"), params).df()
    frame["provider"] = frame["provider"].astype(object).where(frame["provider"].notna(), "")
    return frame


def _history(counts: pd.DataFrame, span: str, provider: str, weeks: Sequence[int], columns: Sequence[str]
             ) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Week 0's numbers and each baseline week's numbers for one span and provider ("" = all)."""
    part = counts[(counts["span"] == span) & (counts["provider"] == provider)].set_index("week")

    def at(k: int) -> dict[str, int]:
        if k in part.index:
            return {c: int(part.at[k, c]) for c in columns}
        return dict.fromkeys(columns, 0)

    return at(0), [at(k) for k in weeks]


def _base_alert(ctx: _Context, alert_type: str, subject: str, span: _Span, **values: Any) -> dict[str, Any]:
    key = f"{span.start.astimezone(UTC):%Y-%m-%dT%H:%M}"
    return {"alert_id": alert_id(alert_type, subject, key), "alert_type": alert_type, "subject": subject,
            "detected_at": ctx.now, "window_start": span.start, "window_end": span.end, **values}


def _weeks_text(ctx: _Context, span: _Span) -> str:
    day = span.start.astimezone(ctx.tz).strftime("%A")
    return f"the same hour on the last {len(ctx.weeks)} {day}s"


# -- rules ---------------------------------------------------------------------------------------
def _volume_alerts(ctx: _Context, counts: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for span in ctx.spans:
        now_counts, history = _history(counts, span.name, "", ctx.weeks, ["attempts"])
        observed = now_counts["attempts"]
        series = [h["attempts"] for h in history]
        for alert_type, direction in (("volume_spike", "greater"), ("volume_drop", "less")):
            if alert_type not in ctx.options.rules:
                continue
            p_value, prediction = stats.count_test(observed, series, direction)
            if p_value >= ctx.options.alpha:
                continue
            ratio = observed / prediction.mean
            if direction == "greater":
                severity = _volume_spike_severity(ratio)
                change = f"{ratio:.1f}x"
            else:
                severity = _volume_drop_severity(ratio)
                change = f"{1 - ratio:.0%} below"
            message = (f"{observed:,} payments {ctx.span_text(span)}, {change} the {prediction.mean:,.1f} "
                       f"expected from {_weeks_text(ctx, span)} (confidence {_pct(1 - p_value)}).")
            out.append(_base_alert(ctx, alert_type, "all", span, severity=severity, value=float(observed),
                                   expected_value=prediction.mean, unit="payments",
                                   confidence=1 - p_value, message=message))
    return out


def _success_alerts(ctx: _Context, counts: pd.DataFrame) -> list[dict[str, Any]]:
    options = ctx.options
    providers = [""]
    if options.by_provider:
        providers += sorted(p for p in counts["provider"].unique() if p)
    alpha_provider = options.alpha / max(1, len(providers) - 1)
    out = []
    for span in ctx.spans:
        for provider in providers:
            now_counts, history = _history(counts, span.name, provider, ctx.weeks,
                                           ["settled_success", "settled_failed"])
            ok, failed = now_counts["settled_success"], now_counts["settled_failed"]
            trials = ok + failed
            baseline = [(h["settled_success"], h["settled_success"] + h["settled_failed"]) for h in history]
            if trials < options.min_window_payments or sum(n for _, n in baseline) == 0:
                continue
            test = stats.proportion_test(ok, trials, baseline, "less")
            if test.p_value >= (alpha_provider if provider else options.alpha):
                continue
            points = 100 * (test.expected - test.observed)
            who = f"{provider}: s" if provider else "S"
            message = (f"{who}uccess rate {test.observed:.1%} ({ok:,} of {trials:,} settled payments) "
                       f"{ctx.span_text(span)}, {points:.1f} points below the {test.expected:.1%} of "
                       f"{_weeks_text(ctx, span)} (confidence {_pct(1 - test.p_value)}).")
            out.append(_base_alert(ctx, "success_rate_drop", f"provider:{provider}" if provider else "all", span,
                                   severity=_success_drop_severity(points), value=test.observed,
                                   expected_value=test.expected, unit="rate", confidence=1 - test.p_value,
                                   message=message))
    return out


def _fraud_alerts(ctx: _Context, counts: pd.DataFrame) -> list[dict[str, Any]]:
    options = ctx.options
    out = []
    for span in ctx.spans:
        now_counts, history = _history(counts, span.name, "", ctx.weeks, ["high_risk", "scored"])
        high, scored = now_counts["high_risk"], now_counts["scored"]
        baseline = [(h["high_risk"], h["scored"]) for h in history]
        if scored < options.min_window_payments or sum(n for _, n in baseline) == 0:
            continue
        test = stats.proportion_test(high, scored, baseline, "greater")
        if test.p_value >= options.alpha:
            continue
        ratio = test.observed / test.expected
        message = (f"{test.observed:.1%} of scored payments ({high:,} of {scored:,}) had a risk score of "
                   f"{options.review_threshold:g} or more {ctx.span_text(span)}, {ratio:.1f}x the "
                   f"{test.expected:.1%} of {_weeks_text(ctx, span)} (confidence {_pct(1 - test.p_value)}).")
        out.append(_base_alert(ctx, "fraud_score_spike", "all", span, severity=_fraud_spike_severity(ratio),
                               value=test.observed, expected_value=test.expected, unit="share",
                               confidence=1 - test.p_value, message=message))
    return out


def _span_of(ctx: _Context, created_at: datetime) -> _Span:
    for span in ctx.spans:
        if span.start <= created_at < span.end:
            return span
    # a payment between the last complete hour and a current span not yet tested
    return _Span("current", ctx.spans[-1].end, ctx.now)


def _high_value_alerts(ctx: _Context) -> list[dict[str, Any]]:
    options = ctx.options
    con = ctx.session.con
    candidates = con.execute(
        "SELECT transaction_id, created_at, status, payment_method, amount_rc FROM live_window "
        "WHERE amount_rc >= ? ORDER BY created_at, transaction_id", [options.high_value_threshold]).df()
    if candidates.empty:
        return []
    reference: dict[str, tuple[int, int]] = {}
    if ctx.weeks:
        con.register("live_candidates_src", pa.Table.from_pandas(
            candidates[["transaction_id", "amount_rc"]], preserve_index=False))
        con.execute("CREATE OR REPLACE TEMP TABLE live_candidates AS SELECT * FROM live_candidates_src")
        con.unregister("live_candidates_src")
        for tx, exceeding, total in con.execute(ctx.query("high_value_reference"), ctx.params).fetchall():
            reference[tx] = (int(exceeding), int(total))
    out = []
    threshold = options.high_value_threshold
    for row in candidates.itertuples(index=False):
        exceeding, total = reference.get(row.transaction_id, (0, 0))
        p_value = stats.empirical_tail(exceeding, total)
        created = row.created_at.to_pydatetime().astimezone(UTC)
        span = _span_of(ctx, created)
        multiple = row.amount_rc / threshold
        method = str(row.payment_method).replace("_", " ")
        basis = (f"larger than {1 - exceeding / total:.1%} of the {total:,} payments in {_weeks_text(ctx, span)}"
                 if total else "no baseline payments to compare with")
        message = (f"A {_money(row.amount_rc, ctx.currency)} {method} payment ({row.status}) at "
                   f"{ctx.local(created)} ({ctx.tz.key}), {multiple:.1f}x the {_money(threshold, ctx.currency)} "
                   f"threshold; {basis}.")
        subject = f"transaction:{row.transaction_id}"
        alert = _base_alert(ctx, "high_value_payment", subject, span, severity=_high_value_severity(multiple),
                            value=float(row.amount_rc), expected_value=float(threshold), unit=ctx.currency,
                            confidence=1 - p_value, message=message)
        alert["alert_id"] = alert_id("high_value_payment", subject, "")  # one alert per payment
        out.append(alert)
    return out


def _country_alerts(ctx: _Context) -> list[dict[str, Any]]:
    options = ctx.options
    con = ctx.session.con
    window = con.execute(
        "SELECT customer_id, payment_country, min(created_at) AS first_at, count(*) AS payments, "
        "max(risk_score) AS risk FROM live_window WHERE payment_country IS NOT NULL GROUP BY ALL").df()
    if window.empty:
        return []
    lookback_start = ctx.spans[0].start - timedelta(days=options.country_lookback_days)
    history = con.execute(_queries()["country_history"], {
        "lookback_month": _month(lookback_start), "lookback_start": lookback_start}).df()
    known: dict[str, dict[str, int]] = {}
    for row in history.itertuples(index=False):
        known.setdefault(row.customer_id, {})[row.payment_country] = int(row.payments)
    out = []
    for row in window.sort_values(["first_at", "customer_id", "payment_country"]).itertuples(index=False):
        countries = known.get(row.customer_id)
        if not countries or row.payment_country in countries:
            continue
        n = sum(countries.values())
        if n < options.min_country_history:
            continue
        p_new = stats.new_category_probability(list(countries.values()))
        if 1 - p_new < options.min_country_confidence:
            continue
        created = row.first_at.to_pydatetime().astimezone(UTC)
        span = _span_of(ctx, created)
        subject = customer_subject(row.customer_id)
        usual = ", ".join(f"{c} ({k})" for c, k in sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        risk = None if pd.isna(row.risk) else float(row.risk)
        message = (f"Customer {subject.split(':', 1)[1]} paid from {row.payment_country} for the first time at "
                   f"{ctx.local(created)} ({ctx.tz.key}): their {n} payments in the previous "
                   f"{options.country_lookback_days} days came from {usual}"
                   + (f"; risk score {risk:g}" if risk is not None else "") + ".")
        alert = _base_alert(ctx, "unusual_country", subject, span, severity=_country_severity(risk, options),
                            value=float(row.payments), expected_value=float(row.payments) * p_new,
                            unit="payments", confidence=1 - p_new, message=message)
        alert["alert_id"] = alert_id("unusual_country", subject, str(row.payment_country))
        out.append(alert)
    return out


def _pct(confidence: float) -> str:
    """99.99%-style text that never rounds a confidence below 1 up to 100%."""
    if confidence >= 1:
        return "100%"
    digits = max(0, min(8, math.ceil(-math.log10(max(1 - confidence, 1e-12))) - 2))
    text = f"{100 * math.floor(confidence * 10 ** (digits + 2)) / 10 ** (digits + 2):.{digits}f}%"
    return text


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


# -- the alerts table ----------------------------------------------------------------------------
def record_alerts(warehouse: Warehouse, frame: pd.DataFrame, batch_id: str | None = None) -> WriteResult:
    """Upsert alerts into ``anomaly_alerts``, idempotently.

    Recording the same frame again changes nothing (no commit); an alert already stored keeps
    its first ``detected_at`` and takes the numbers of the newer detection (the one whose window
    ends later), whatever the order in which detections are recorded.
    """
    if frame is None or frame.empty:
        return WriteResult(table="anomaly_alerts")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"alerts frame lacks columns: {', '.join(missing)}")
    rows = frame[list(COLUMNS)].copy()
    for col in ("detected_at", "window_start", "window_end"):
        rows[col] = pd.to_datetime(rows[col], utc=True)
    rows = rows.sort_values(["window_end", "detected_at"]).drop_duplicates("alert_id", keep="last")
    rows["alert_month"] = rows["window_start"].dt.strftime("%Y-%m")
    stored = _stored_alerts(warehouse, list(rows["alert_id"]), sorted(set(rows["alert_month"])))
    if not stored.empty:
        stored = stored.set_index("alert_id")
        merged = []
        for row in rows.to_dict("records"):
            old = stored.loc[row["alert_id"]].to_dict() if row["alert_id"] in stored.index else None
            if old is not None:
                first = min(pd.Timestamp(old["detected_at"]), pd.Timestamp(row["detected_at"]))
                if pd.Timestamp(old["window_end"]) > pd.Timestamp(row["window_end"]):
                    row = {**{c: old[c] for c in COLUMNS if c != "alert_id"}, "alert_id": row["alert_id"],
                           "alert_month": old["alert_month"]}
                row["detected_at"] = first
            merged.append(row)
        rows = pd.DataFrame(merged)
    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
    return warehouse.upsert("anomaly_alerts", table, batch_id or new_batch_id())


def _stored_alerts(warehouse: Warehouse, ids: list[str], months: list[str]) -> pd.DataFrame:
    if not warehouse.exists("anomaly_alerts"):
        return pd.DataFrame()
    with warehouse.snapshot(tables=["anomaly_alerts"]) as snap:
        return snap.sql(
            "SELECT * EXCLUDE (_row_hash, _batch_id, _ingested_at) FROM anomaly_alerts "
            "WHERE list_contains(?, alert_month) AND list_contains(?, alert_id)", [months, ids])


def recent_alerts(session: MetricSession, now: datetime | None = None, hours: int = 24) -> pd.DataFrame:
    """Stored alerts whose window ended in the ``hours`` before ``now``, most recent first."""
    now = _utc(now)
    start = now - timedelta(hours=hours)
    return session.con.execute(
        "SELECT * EXCLUDE (_row_hash, _batch_id, _ingested_at, alert_month) FROM anomaly_alerts "
        "WHERE alert_month BETWEEN ? AND ? AND window_end > ? AND window_start <= ? "
        "ORDER BY window_end DESC, alert_id",
        [_month(start - timedelta(days=1)), _month(now), start, now]).df()
