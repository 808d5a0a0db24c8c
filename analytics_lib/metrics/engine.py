"""Running the metric SQL: named queries from ``sql/*.sql`` over a scoped snapshot.

A :class:`MetricSession` wraps a warehouse snapshot. ``session.scope(period, filters, currency)``
sets the scope as DuckDB variables (``getvariable('p_start')`` ...) and materialises the scoped
building blocks from ``sql/_scope.sql`` (payments of the period in the reporting currency,
refunds, disputes, fees, ...). Metric families then select from those. Filter values and
periods are only ever bound values; the SQL text never changes with user input, and filter
names and time grains come from allow-lists.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd
import pyarrow as pa

from analytics_lib.config import Settings, get_settings
from analytics_lib.metrics.period import Period
from analytics_lib.warehouse import Snapshot, Warehouse
from analytics_lib.warehouse.currency import CURRENCY_EXPONENTS, normalise_currency

#: filter name -> transactions column it restricts
FILTER_COLUMNS: dict[str, str] = {
    "currency": "currency",
    "country": "country_code",
    "payment_method": "payment_method",
    "provider": "provider",
    "plan_type": "plan_type",
    "product": "product_id",
    "campaign": "campaign_id",
    "discount_code": "discount_code",
}
GRAINS = ("hour", "day", "week", "month")
#: allow-listed values of the query parameters that choose a column: (family, query, parameter) -> values
QUERY_CHOICES: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("transactions", "by_dimension", "dimension"): ("payment_method", "provider"),
}
#: named queries that are another query of the family with a choice fixed, its ``value`` column
#: named after the choice: (family, name) -> (query, parameter, value)
QUERY_VARIANTS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("transactions", "by_payment_method"): ("by_dimension", "dimension", "payment_method"),
    ("transactions", "by_provider"): ("by_dimension", "dimension", "provider"),
}
#: query engines by name (``Settings.engine``, PAYMENT_ANALYTICS_ENGINE) -> the session class that
#: runs the metric SQL ("module:class", imported when chosen: pyspark only for ``spark``)
ENGINES: dict[str, str] = {
    "duckdb": "analytics_lib.metrics.engine:MetricSession",
    "spark": "analytics_lib.metrics.spark:SparkMetricSession",
}


class MetricError(ValueError):
    """A metric request that cannot be answered (bad filter, grain, currency, ...)."""


class MissingRateError(MetricError):
    """No FX rate for a currency on a day that needs converting."""


@dataclass(frozen=True)
class Filters:
    """Allow-listed filters: name -> accepted values (a row passes if its value is one of them)."""

    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, mapping: Mapping[str, Any] | Filters | None = None, **kwargs: Any) -> Filters:
        if isinstance(mapping, Filters):
            mapping = dict(mapping.values)
        merged = {**(mapping or {}), **kwargs}
        clean: dict[str, tuple[str, ...]] = {}
        for name, value in merged.items():
            if name not in FILTER_COLUMNS:
                raise MetricError(f"unknown filter {name!r}; filters: {', '.join(FILTER_COLUMNS)}")
            if value is None:
                continue
            items = [value] if isinstance(value, str) else list(value)
            if not all(isinstance(v, str) for v in items):
                raise MetricError(f"filter {name} takes text values, got {value!r}")
            items = [v.strip() for v in items if v.strip()]
            for v in items:
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise MetricError(f"filter {name} has a value that is not valid text") from None
            if name in ("currency", "country"):
                items = [v.upper() for v in items]
            if items:
                clean[name] = tuple(dict.fromkeys(items))
        return cls(clean)

    @classmethod
    def parse(cls, pairs: Sequence[str]) -> Filters:
        """``["country=TR,US", "provider=stripe"]`` (the CLI's ``--filter key=value``)."""
        mapping: dict[str, list[str]] = {}
        for pair in pairs:
            if "=" not in pair:
                raise MetricError(f"filter {pair!r} must look like key=value")
            key, value = pair.split("=", 1)
            mapping.setdefault(key.strip(), []).extend(v for v in value.split(","))
        return cls.of(mapping)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.values.items()}

    def __bool__(self) -> bool:
        return bool(self.values)


@cache
def load_queries(family: str) -> dict[str, str]:
    """Named queries of ``sql/<family>.sql`` (each introduced by a ``-- name: x`` line)."""
    text = resources.files("analytics_lib.metrics").joinpath("sql", f"{family}.sql").read_text("utf-8")
    parts = re.split(r"^--\s*name:\s*(\w+)\s*$", text, flags=re.M)
    queries = {name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if not queries:
        raise MetricError(f"sql/{family}.sql has no named queries")
    return queries


def sql_header(family: str) -> str:
    """The comment block that opens a family's SQL file: its written definitions."""
    text = resources.files("analytics_lib.metrics").joinpath("sql", f"{family}.sql").read_text("utf-8")
    lines = []
    for line in text.splitlines():
        if re.match(r"^--\s*name:", line):
            break
        if line.startswith("--"):
            lines.append(line[2:].removeprefix(" "))
    return "\n".join(lines).strip()


@dataclass(frozen=True)
class Scope:
    period: Period
    filters: Filters
    currency: str
    window: tuple[datetime, datetime] | None = None
    #: which columns ``payments`` holds: every one, or only those the summaries or the real-time
    #: queries read (see ``MetricSession.scope``)
    columns: str = "all"

    @property
    def summary_only(self) -> bool:
        return self.columns == "summary"


#: the ``_scope.sql`` block that builds ``payments`` for each column set of a scope
PAYMENTS_BLOCKS = {"all": "payments", "summary": "payments_summary", "live": "payments_live"}


class MetricSession:
    """Metric queries over one snapshot. Not for concurrent use from several threads at once:
    the scope lives in the connection (``lock`` serialises callers that share a session)."""

    #: whether a scope view (``_scope.sql`` ``CREATE ... VIEW``) reads the scope's variables when
    #: it is queried, so that one view serves every scope of the session. DuckDB views do; the
    #: Spark engine binds the variables' values into a view's text when it creates it.
    views_read_variables_late = True
    #: ``payments`` blocks held as an Arrow table registered with the connection instead of a
    #: DuckDB temp table: the real-time window's (tens of thousands of rows, rebuilt on every
    #: refresh of a live dashboard), which builds in about two thirds of the time
    ARROW_PAYMENTS = frozenset({"payments_live"})

    def __init__(self, snapshot: Snapshot, settings: Settings | None = None, owns_snapshot: bool = False):
        self.snapshot = snapshot
        self.con = snapshot.con
        self.settings = settings or get_settings()
        self.lock = threading.RLock()
        self._owns = owns_snapshot
        self._scope: Scope | None = None
        self._fx_currency: str | None = None
        self._built: dict[str, Any] = {}
        self._mrr_options = ("period_end", "count")
        self._filter_variables: Filters | None = None  # the filters the f_* variables hold
        self._payments_arrow: pa.Table | None = None  # payments, when registered from Arrow
        self._setup()

    @classmethod
    def open(cls, warehouse: Warehouse | str | None = None, as_of: datetime | dict[str, int] | None = None,
             settings: Settings | None = None, tables: Sequence[str] | None = None) -> MetricSession:
        """A session on the warehouse's snapshot, on the configured engine (``engine: spark`` opens
        a :class:`~analytics_lib.metrics.spark.SparkMetricSession`). ``tables``: pin only these
        (the queries to run must read no other table; DuckDB engine only)."""
        wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse, settings)
        settings = settings or wh.settings
        if cls is MetricSession and settings.engine != "duckdb":
            return engine_class(settings.engine).open(wh, as_of, settings)
        return cls(wh.snapshot(as_of=as_of, tables=tables), settings, owns_snapshot=True)

    def close(self) -> None:
        if self._owns:
            self.snapshot.close()

    def __enter__(self) -> MetricSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def versions(self) -> dict[str, int]:
        return self.snapshot.versions

    # -- set-up ---------------------------------------------------------------------------
    def _setup(self) -> None:
        exps = pa.table({
            "currency": list(CURRENCY_EXPONENTS),
            "scale": [float(10**e) for e in CURRENCY_EXPONENTS.values()],
        })
        self.con.register("currency_scale_src", exps)
        self.con.execute("CREATE OR REPLACE TEMP TABLE currency_scale AS SELECT * FROM currency_scale_src")
        self.con.unregister("currency_scale_src")
        self.con.execute("SET VARIABLE home_country = ?", [self.settings.home_country])
        self.con.execute("SET VARIABLE mrr_cancel_at = 'period_end'")
        self.con.execute("SET VARIABLE mrr_same_interval = 'count'")
        for statement in load_queries("_session").values():
            self.con.execute(statement)

    def scope(self, period: Period, filters: Filters | Mapping[str, Any] | None = None,
              currency: str | None = None, window: tuple[datetime, datetime] | None = None,
              *, summary_only: bool = False, columns: str = "all") -> Scope:
        """Make ``period``/``filters``/``currency`` the scope of the following queries.

        ``window`` replaces the period's day bounds by exact UTC instants (the real-time window).
        ``summary_only`` builds ``payments`` with only the columns that transactions.summary,
        revenue.summary, revenue.daily and customers.summary read (``_scope.sql``
        payments_summary): for a period that needs nothing else, such as the trends' previous
        period. Other queries fail in such a scope; a full scope of the same period serves it, and
        a full scope that follows it builds only ``payments`` again. ``columns="live"`` does the
        same for the real-time queries (``_scope.sql`` payments_live; :func:`realtime`).
        """
        if summary_only:
            columns = "summary"
        if columns not in PAYMENTS_BLOCKS:
            raise MetricError(f"unknown scope columns {columns!r}; choose from {', '.join(PAYMENTS_BLOCKS)}")
        filters = Filters.of(filters)
        try:
            currency = normalise_currency(currency or self.settings.reporting_currency)
        except ValueError as exc:
            raise MetricError(str(exc)) from None
        scope = Scope(period, filters, currency, window, columns)
        if scope == self._scope:
            return scope
        if columns != "all" and self._scope == Scope(period, filters, currency, window):
            return self._scope  # the full scope has every column the summaries or live queries read
        con = self.con
        self._scope = None
        if currency != self._fx_currency:
            self._built.clear()
            con.execute("SET VARIABLE rc = ?", [currency])
            self._run_statement("_fx", "fx_factor")
            self._fx_currency = currency
        start, end = window or (period.start_utc, period.end_utc)
        con.execute("SET VARIABLE tz = ?", [period.timezone])
        con.execute("SET VARIABLE p_start = ?::TIMESTAMPTZ", [start])
        con.execute("SET VARIABLE p_end = ?::TIMESTAMPTZ", [end])
        con.execute("SET VARIABLE p_start_month = ?", [f"{start.astimezone(UTC):%Y-%m}"])
        con.execute("SET VARIABLE p_end_month = ?", [f"{end.astimezone(UTC):%Y-%m}"])
        con.execute("SET VARIABLE p_start_date = ?::DATE", [period.start])
        con.execute("SET VARIABLE p_end_date = ?::DATE", [period.end])
        if filters != self._filter_variables:
            for name in FILTER_COLUMNS:
                con.execute(f"SET VARIABLE f_{name} = ?::VARCHAR[]", [list(filters.values.get(name, ()))])
            con.execute("SET VARIABLE filters_active = ?", [bool(filters)])
            self._filter_variables = filters
        local_end = datetime.combine(period.end, datetime.min.time(), period.tz)
        cut = local_end.replace(day=1) if period.end.day != 1 else local_end
        if window is not None:  # real-time windows: cut at the month of the window's end
            cut = end.astimezone(period.tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        con.execute("SET VARIABLE p_cut = ?::TIMESTAMPTZ", [cut.astimezone(UTC)])
        con.execute("SET VARIABLE p_cut_date = ?::DATE", [cut.date()])
        con.execute("SET VARIABLE p_cut_month = ?", [f"{cut.astimezone(UTC):%Y-%m}"])
        # the zone's UTC offset when it is the same throughout the scope (no DST change inside):
        # local times are then a shift of the instant, without ICU (sql/_scope.sql payments)
        con.execute("SET VARIABLE p_local_offset_us = ?::BIGINT", [_fixed_offset_us(period.tz, start, end)])
        # fees are cached in 15-minute UTC buckets (sql/_history.sql fee_buckets)
        con.execute("SET VARIABLE p_fee_buckets = ?", [_on_quarter_hour(start) and _on_quarter_hour(end)])
        con.execute("SET VARIABLE p_end_on_quarter_hour = ?", [_on_quarter_hour(end)])
        self._scope = scope
        self.ensure("filtered_transactions")
        self.ensure("payments")
        return scope

    def ensure(self, name: str) -> None:
        """Build a table of ``_scope.sql`` (once per scope) or ``_history.sql`` (once per filters,
        currency and time zone, or whatever its ``-- keyed by:`` line says, so it survives a change
        of period). A history block may build several tables (its ``-- builds:`` line)."""
        family, block = _block_for(name)
        sql = load_queries(family)[block]
        # requirements first, even when this table is current: a view reads them at query time
        for needed in _requires(sql):
            self.ensure(needed)
        is_view = bool(re.match(r"(?:--[^\n]*\n|\s)*CREATE\s+OR\s+REPLACE\s+TEMP\s+VIEW", sql, flags=re.I))
        if family != "_scope":
            key: Any = self._history_key(block)
        elif block == "payments":
            key = self.current
        elif is_view and self.views_read_variables_late:
            key = "view"  # its text never changes and it reads the scope when queried
        elif not self.current.filters and _directive(sql, "without filters") == ["empty"]:
            key = "empty"  # the same empty table for every unfiltered scope
        else:  # the same rows whichever columns payments has: kept when a full scope follows
            key = replace(self.current, columns="all")
        if self._built.get(block) == key:
            return
        if family == "_scope":
            self._run_statement(family, PAYMENTS_BLOCKS[self.current.columns] if block == "payments" else block)
        else:
            self._build_history(block, sql, key)
        self._built[block] = key
        if family != "_scope":
            return  # history keeps rows without a rate; a scope reports them when it needs them
        if is_view:
            return  # a view is checked by the table built from it (checking it would read it again)
        columns = {r[0] for r in self.con.execute(f'DESCRIBE "{block}"').fetchall()}
        if "missing_rate" in columns:
            if "missing_day" in columns:  # aggregated rows: the first day without a rate in each
                check = (f'SELECT missing_currency, missing_day FROM "{block}" WHERE missing_rate '
                         "ORDER BY 2, 1 LIMIT 1")
            else:
                check = (f'SELECT currency, CAST(created_at AS DATE) FROM "{block}" WHERE missing_rate '
                         "ORDER BY 2, 1 LIMIT 1")
            missing = self.con.execute(check).fetchall()
            if missing:
                del self._built[block]
                raise MissingRateError(self._missing_rate_message(*missing[0]))

    def _build_history(self, block: str, sql: str, key: Any) -> None:
        """Build a history block, or read it from the persistent cache (metrics/cache.py) when
        the same SQL and key were built on the same warehouse versions before."""
        from analytics_lib.metrics.cache import HistoryCache, cacheable, digest

        cache = HistoryCache.for_warehouse(self.snapshot.location) if cacheable(sql) else None
        tables = _directive(sql, "builds") or [block]
        entry = digest(block, sql, key, self.versions) if cache else ""
        if cache and cache.load(self.con, block, entry, tables):
            return
        self._run_statement("_history", block)
        if cache:
            cache.store(self.con, block, entry, tables)

    def forget_scope(self) -> None:
        """Forget the scope and every table built for one (history tables stay): the next scope
        builds its tables again. Benchmarks use it to time a period's work honestly."""
        self._scope = None
        for block in [b for b in self._built if _block_for(b)[0] == "_scope"]:
            del self._built[block]

    def _history_key(self, block: str) -> tuple:
        scope = self.current
        values = {"filters": scope.filters, "currency": scope.currency, "timezone": scope.period.timezone,
                  "mrr_options": self._mrr_options}
        return tuple((k, values[k]) for k in _keyed_by(load_queries("_history")[block]))

    def set_mrr_options(self, cancel_at: str, same_interval: str) -> None:
        """The MRR conventions (see sql/mrr.sql) for the following MRR queries."""
        self.con.execute("SET VARIABLE mrr_cancel_at = ?", [cancel_at])
        self.con.execute("SET VARIABLE mrr_same_interval = ?", [same_interval])
        self._mrr_options = (cancel_at, same_interval)

    def _missing_rate_message(self, currency: str, day: Any) -> str:
        rc = self._fx_currency
        has_target = rc == "USD" or self.con.execute(
            "SELECT count(*) FROM fx_rates WHERE currency = ? AND rate_date = ?", [rc, day]
        ).fetchall()[0][0]
        if not has_target:
            return f"no FX rate for {rc} (the reporting currency) on {day}, needed to convert {currency}"
        return f"no FX rate for {currency} on {day} (needed to convert to {rc})"

    def _run_statement(self, family: str, name: str) -> None:
        sql = load_queries(family)[name]
        if family == "_scope" and name in PAYMENTS_BLOCKS.values():
            self._build_payments(name, sql)
        else:
            self.con.execute(sql)

    def _build_payments(self, block: str, sql: str) -> None:
        """``payments`` as a temp table, or as a registered Arrow table (``ARROW_PAYMENTS``)."""
        if self._payments_arrow is not None:
            self.con.unregister("payments")
            self._payments_arrow = None
        if block not in self.ARROW_PAYMENTS:
            self.con.execute(sql)
            return
        select = re.search(r"CREATE\s+OR\s+REPLACE\s+TEMP\s+TABLE\s+payments\s+AS\s+(.*)", sql, flags=re.S | re.I)
        if select is None:
            raise MetricError(f"_scope.{block} must read CREATE OR REPLACE TEMP TABLE payments AS SELECT ...")
        self.con.execute("DROP TABLE IF EXISTS payments")
        self._payments_arrow = self.con.sql(select.group(1)).to_arrow_table()
        self.con.register("payments", self._payments_arrow)

    @property
    def current(self) -> Scope:
        if self._scope is None:
            raise MetricError("no scope set: call session.scope(period, filters, currency) first")
        return self._scope

    # -- queries --------------------------------------------------------------------------
    def query(self, family: str, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a named query of a family in the current scope."""
        variant = QUERY_VARIANTS.get((family, name))
        if variant is not None:
            query, parameter, value = variant
            frame = self.query(family, query, {**(params or {}), parameter: value})
            return frame.rename(columns={"value": value})
        sql = self._prepare(family, name, params)
        return self.con.execute(sql, dict(params or {})).df()

    def row(self, family: str, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A one-row query as a dict of plain Python values (ints stay ints, NULL is None)."""
        result = self.con.execute(self._prepare(family, name, params), dict(params or {}))
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
        if len(rows) != 1:
            raise MetricError(f"{family}.{name} returned {len(rows)} rows, expected 1")
        return dict(zip(columns, rows[0], strict=True))

    def _prepare(self, family: str, name: str, params: Mapping[str, Any] | None = None) -> str:
        """The query's text, after building the scoped tables it names in ``-- requires:``."""
        queries = load_queries(family)
        if name not in queries:
            raise MetricError(f"no query {name!r} in sql/{family}.sql")
        for (f, q, parameter), allowed in QUERY_CHOICES.items():
            if (f, q) == (family, name) and (params or {}).get(parameter) not in allowed:
                raise MetricError(f"{family}.{name}: {parameter} must be one of {', '.join(allowed)}")
        self.current  # noqa: B018 - raises if unscoped
        sql = queries[name]
        for needed in _requires(sql):
            self.ensure(needed)
        return sql

    @contextmanager
    def scoped(self, period: Period, filters: Filters | Mapping[str, Any] | None = None,
               currency: str | None = None) -> Iterator[Scope]:
        """Hold the lock and a scope for a block of queries."""
        with self.lock:
            yield self.scope(period, filters, currency)


def _fixed_offset_us(tz: Any, start: datetime, end: datetime) -> int | None:
    """The zone's UTC offset in microseconds if it does not change in ``[start, end]``, else None.

    Checked every 15 minutes (zone offsets change at most a few times a year, never twice within
    15 minutes) and at both ends; spans longer than 400 days are not checked (None)."""
    if end - start > timedelta(days=400):
        return None
    first = start.astimezone(tz).utcoffset()
    step = timedelta(minutes=15)
    at = start
    while at < end:
        if at.astimezone(tz).utcoffset() != first:
            return None
        at += step
    if end.astimezone(tz).utcoffset() != first or first is None:
        return None
    return first // timedelta(microseconds=1)


def engine_class(name: str) -> type[MetricSession]:
    """The session class of a query engine (see ``ENGINES``)."""
    if name not in ENGINES:
        raise MetricError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")
    module, _, attribute = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def _on_quarter_hour(instant: datetime) -> bool:
    """Whether an aware instant is a whole multiple of 15 minutes since the Unix epoch."""
    micros = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return micros % 900_000_000 == 0


def _directive(sql: str, name: str) -> list[str] | None:
    """The comma-separated values of ``-- name: a, b`` lines (None if there is none)."""
    found = None
    for match in re.finditer(rf"^--\s*{name}:\s*(.*)$", sql, flags=re.M):
        found = (found or []) + [n.strip() for n in match.group(1).split(",") if n.strip()]
    return found


def _requires(sql: str) -> list[str]:
    return _directive(sql, "requires") or []


HISTORY_KEYS = ("filters", "currency", "timezone", "mrr_options")


def _keyed_by(sql: str) -> tuple[str, ...]:
    """What a history block depends on: ``-- keyed by: filters, currency, timezone`` (the default),
    ``mrr_options`` too for MRR tables, ``nothing`` for tables of the raw data."""
    keys = _directive(sql, "keyed by")
    if keys is None:
        return ("filters", "currency", "timezone")
    keys = [k for k in keys if k != "nothing"]
    unknown = set(keys) - set(HISTORY_KEYS)
    if unknown:
        raise MetricError(f"unknown history key(s) {sorted(unknown)}")
    return tuple(keys)


@cache
def _block_for(name: str) -> tuple[str, str]:
    """(family, block) of the scoped or history statement that builds table ``name``."""
    for family in ("_scope", "_history"):
        for block, sql in load_queries(family).items():
            if block == name or name in (_directive(sql, "builds") or []):
                return family, block
    raise MetricError(f"no scoped table {name!r}")


def _py(value: Any) -> Any:
    """numpy/pandas scalars -> plain Python (None for missing)."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return value
    if hasattr(value, "item"):
        return value.item()
    return value
