"""The metric layer on Spark: the same DuckDB-dialect metric SQL, transpiled with SQLGlot.

:class:`SparkMetricSession` is a :class:`~analytics_lib.metrics.engine.MetricSession` whose
connection is a :class:`SparkConnection`: an object with the few methods of a DuckDB connection
that the metric layer uses (``execute``, ``register``, ``unregister``), which runs every
statement on a Spark session instead. So scopes, history tables, their caching and every API
function work unchanged; only the place the SQL runs differs. Statement by statement:

* ``SET VARIABLE name = ?`` keeps the value in Python; ``getvariable('name')``, ``$name`` and
  ``?`` are then bound when a statement is transpiled. Text values (filter values, time zone,
  currency, ...) become Spark named parameters (``:v0``) bound by Spark itself, never spliced
  into the SQL text; numbers, days and instants become typed literals written from their
  Python values; value lists become ``IN`` lists.
* ``CREATE TEMP MACRO`` is kept and expanded inline wherever the macro is called.
* ``CREATE TEMP TABLE x AS ...`` becomes a temporary view of a locally checkpointed result (it
  is computed once and never recomputed, as a DuckDB temp table is); ``CREATE TEMP VIEW`` a
  temporary view; ``DROP TABLE`` drops it; ``DESCRIBE`` reads its schema.
* Queries are transpiled from DuckDB to Spark SQL by SQLGlot, then rewritten where SQLGlot's
  output is not Spark SQL or not the same result (``_SparkRewrites``: time zones, ``epoch_us``,
  ``time_bucket``, ISO weekdays, month differences, ``to_months``, ``generate_series``,
  quantiles, decimal literals, window frames of offset functions, ``FILTER`` in windows,
  unordered ``row_number()``, ``* EXCLUDE``).
* Results are collected as Arrow and converted to pandas / Python values by DuckDB, so they
  come back with the types the DuckDB engine returns.

Where a metric cannot be transpiled, ``sql/spark/<family>.sql`` holds a Spark-specific block of
the same name (see docs/scaling.md for the list and the reasons). The warehouse tables are
temporary views over the Parquet files of the snapshot's pinned Delta versions (or, with
``PAYMENT_ANALYTICS_SPARK_READER=delta`` on a Delta-aware Spark, over the Delta tables at those
versions).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
import pyarrow as pa

from analytics_lib.config import Settings
from analytics_lib.metrics.engine import QUERY_VARIANTS, MetricError, MetricSession, load_queries
from analytics_lib.warehouse import Snapshot, Warehouse
from analytics_lib.warehouse.schema import TABLES, TableSpec
from analytics_lib.warehouse.snapshot import connect as duckdb_connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from sqlglot import exp

#: where Spark runs: an active Spark session wins (a Databricks notebook's, or ``spark=``), then
#: Spark Connect (Spark's own ``SPARK_REMOTE``), then this master URL (default ``local[*]``: a
#: Spark inside this process, listening on 127.0.0.1 only, without its web UI)
ENV_SPARK_MASTER = "PAYMENT_ANALYTICS_SPARK_MASTER"
#: how Spark reads the warehouse: ``parquet`` (default: the pinned versions' Parquet files, any
#: Spark) or ``delta`` (the Delta tables at the pinned versions, on a Delta-aware Spark)
ENV_SPARK_READER = "PAYMENT_ANALYTICS_SPARK_READER"
READERS = ("parquet", "delta")
#: extra settings for a new Spark session, ``key=value`` pairs separated by commas (they win over
#: the local defaults below), e.g. ``spark.driver.memory=12g,spark.sql.shuffle.partitions=16``
ENV_SPARK_CONF = "PAYMENT_ANALYTICS_SPARK_CONF"


def local_spark_conf() -> dict[str, str]:
    """Defaults for a Spark inside this process (``local...`` masters). Spark's own defaults are a
    cluster's: 200 shuffle partitions (hundreds of tiny tasks per query on a laptop: the metric
    suite runs a few hundred queries) and a 1 GB driver, which is all the memory a local Spark
    has (too little for 10M payments). A cluster keeps its own settings."""
    cores = os.cpu_count() or 2
    return {"spark.sql.shuffle.partitions": str(2 * cores), "spark.default.parallelism": str(2 * cores),
            "spark.driver.memory": "6g"}


def spark_conf_from_env() -> dict[str, str]:
    """``PAYMENT_ANALYTICS_SPARK_CONF`` as a dict (a clear error for a pair without ``=``)."""
    conf: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in os.environ.get(ENV_SPARK_CONF, "").split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MetricError(f"{ENV_SPARK_CONF}: {pair!r} is not key=value")
        conf[key.strip()] = value.strip()
    return conf

#: session settings the translation relies on (set on the metric layer's own Spark session):
#: instants are UTC, errors are errors (ANSI: an overflow or a division by zero fails, as in
#: DuckDB, instead of silently becoming NULL), partition values stay text as in the schema
SPARK_SQL_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
}

#: the schema's logical types in Spark SQL
SPARK_TYPES: dict[str, str] = {
    "string": "STRING",
    "int64": "BIGINT",
    "int32": "INT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "list<string>": "ARRAY<STRING>",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SparkUnavailableError(MetricError):
    """The Spark engine was asked for but pyspark or sqlglot is not installed."""


def _require_spark() -> None:
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as exc:
        raise SparkUnavailableError(
            "the spark engine needs the 'spark' extra: pip install -e '.[spark]' "
            f"(missing: {exc.name})") from None


# -- Spark sessions ------------------------------------------------------------------------------


def spark_session(spark: SparkSession | None = None) -> SparkSession:
    """The Spark session to run metric SQL on (see ``ENV_SPARK_MASTER`` for the order)."""
    _require_spark()
    from pyspark.sql import SparkSession

    if spark is not None:
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("payment-analytics")
    if "SPARK_REMOTE" not in os.environ:
        master = os.environ.get(ENV_SPARK_MASTER, "local[*]")
        builder = builder.master(master)
        if master.startswith("local"):
            builder = (builder.config("spark.driver.host", "127.0.0.1")
                       .config("spark.driver.bindAddress", "127.0.0.1")
                       .config("spark.ui.enabled", "false"))
            for key, value in local_spark_conf().items():
                builder = builder.config(key, value)
    for key, value in {**spark_conf_from_env(), **SPARK_SQL_CONF}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _metric_spark(spark: SparkSession) -> SparkSession:
    """A session of its own (temporary views and settings) sharing ``spark``'s cluster, where
    the Spark flavour allows it (Spark Connect does not: then ``spark`` itself)."""
    try:
        own = spark.newSession()
    except Exception:  # Spark Connect has no newSession
        own = spark
    for key, value in SPARK_SQL_CONF.items():
        own.conf.set(key, value)
    return own


# -- Spark-specific SQL -------------------------------------------------------------------------


@cache
def spark_queries(family: str) -> dict[str, str]:
    """Spark-specific blocks of ``sql/spark/<family>.sql`` (none when the file does not exist):
    each replaces the DuckDB block of the same name, on Spark only."""
    path = resources.files("analytics_lib.metrics").joinpath("sql", "spark", f"{family}.sql")
    if not path.is_file():
        return {}
    parts = re.split(r"^--\s*name:\s*(\w+)\s*$", path.read_text("utf-8"), flags=re.M)
    blocks = {name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    unknown = set(blocks) - set(load_queries(family))
    if unknown:
        raise MetricError(f"sql/spark/{family}.sql overrides blocks that sql/{family}.sql does not have: "
                          f"{sorted(unknown)}")
    return blocks


def spark_overrides() -> dict[str, list[str]]:
    """Every Spark-specific block, by family (for docs and tests)."""
    folder = resources.files("analytics_lib.metrics").joinpath("sql", "spark")
    names = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql")) if folder.is_dir() else []
    return {family: sorted(spark_queries(family)) for family in names}


# -- binding values ------------------------------------------------------------------------------


class _Binder:
    """Turns Python values into SQL: text as Spark named parameters, the rest as typed literals."""

    def __init__(self) -> None:
        self.args: dict[str, Any] = {}

    def bind(self, value: Any) -> exp.Expression:
        from sqlglot import exp

        if value is None:
            return exp.null()
        if isinstance(value, bool):
            return exp.true() if value else exp.false()
        if isinstance(value, int):
            return exp.Literal.number(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise MetricError(f"cannot bind the number {value!r}")
            return exp.cast(exp.Literal.number(repr(value)), "DOUBLE")
        if isinstance(value, datetime):  # pandas Timestamps too
            if value.tzinfo is None:
                text = value.isoformat(sep=" ")
                return exp.cast(exp.Literal.string(text), exp.DataType.build("timestamp_ntz", dialect="spark"))
            micros = (value - _EPOCH) // timedelta(microseconds=1)
            return exp.Anonymous(this="timestamp_micros", expressions=[exp.Literal.number(micros)])
        if isinstance(value, date):
            return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
        if isinstance(value, str):
            name = f"v{len(self.args)}"
            self.args[name] = value
            return exp.Placeholder(this=name)
        if isinstance(value, (list, tuple)):
            return exp.Array(expressions=[self.bind(v) for v in value])
        raise MetricError(f"cannot bind a value of type {type(value).__name__} in Spark SQL")


# -- the translation -----------------------------------------------------------------------------


_MACRO = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TEMP(?:ORARY)?\s+MACRO\s+(\w+)\s*\(([^)]*)\)\s+AS\s+(.*)$",
                    re.S | re.I)
_COMMENT_LINES = re.compile(r"^\s*--.*$", re.M)
_SET_VARIABLE = re.compile(r"^\s*SET\s+VARIABLE\s+(\w+)\s*=\s*(.*?)\s*$", re.S | re.I)
_OFFSET_FUNCTIONS = ("Lead", "Lag", "RowNumber", "Rank", "DenseRank", "NTile", "CumeDist", "PercentRank")
_UNIT_MICROS = {"MICROSECOND": 1, "MILLISECOND": 1_000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
                "HOUR": 3_600_000_000, "DAY": 86_400_000_000, "WEEK": 7 * 86_400_000_000}
#: DuckDB's origin for time_bucket with a day-or-shorter width and no origin: Monday 2000-01-03
_TIME_BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
_DATE_PARTS: tuple[type, ...] = ()


class SparkTranspiler:
    """DuckDB-dialect metric SQL -> Spark SQL text and the values Spark binds to it.

    ``columns_of(view)`` names a temporary view's columns with their Spark types (for
    ``* EXCLUDE`` and for telling local from absolute timestamps)."""

    def __init__(self, columns_of: Callable[[str], list[tuple[str, str]]]):
        _require_spark()
        self.columns_of = columns_of
        self.macros: dict[str, tuple[list[str], str]] = {}
        self._dialect: Any = None
        self._macro_bodies: dict[str, Any] = {}
        #: names of columns that hold local (zone-less) timestamps in the views made so far
        self.local_time_columns: set[str] = set()

    # parsing --------------------------------------------------------------------------------
    def define_macro(self, name: str, params: Sequence[str], body: str) -> None:
        self.macros[name.lower()] = ([p.strip() for p in params if p.strip()], body)
        self._dialect = None
        self._macro_bodies.clear()

    def dialect(self) -> Any:
        """DuckDB's dialect, with the session's macros parsed as plain function calls (some,
        such as ``utc_date``, are also names of SQLGlot functions with other arguments)."""
        if self._dialect is None:
            from sqlglot.dialects.duckdb import DuckDB

            names = {n.upper() for n in self.macros}
            parser = type("MetricParser", (DuckDB.Parser,), {
                "FUNCTIONS": {k: v for k, v in DuckDB.Parser.FUNCTIONS.items() if k not in names},
                "NO_PAREN_FUNCTIONS": {k: v for k, v in DuckDB.Parser.NO_PAREN_FUNCTIONS.items()
                                       if getattr(k, "name", str(k)).upper() not in names},
            })
            self._dialect = type("MetricDuckDB", (DuckDB,), {"Parser": parser})()
        return self._dialect

    def parse(self, sql: str) -> list[exp.Expression]:
        return [s for s in self.dialect().parse(sql) if s is not None]

    # translation ----------------------------------------------------------------------------
    def to_spark(self, tree: exp.Expression, variables: Mapping[str, Any],
                 params: Mapping[str, Any] | Sequence[Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Spark SQL for one parsed query, and the named values Spark binds to it."""
        binder = _Binder()
        tree = self._expand_macros(tree.copy())
        tree = self._bind(tree, variables, params, binder)
        tree = _fold_lists(tree)
        tree = _SparkRewrites(self).apply(tree)
        return tree.sql(dialect="spark"), binder.args

    def _macro_body(self, name: str) -> exp.Expression:
        if name not in self._macro_bodies:
            import sqlglot

            self._macro_bodies[name] = sqlglot.parse_one(self.macros[name][1], dialect=self.dialect())
        return self._macro_bodies[name]

    def _expand_macros(self, tree: exp.Expression) -> exp.Expression:
        from sqlglot import exp

        def expand(node: exp.Expression) -> exp.Expression:
            if not isinstance(node, exp.Anonymous) or node.name.lower() not in self.macros:
                return node
            name = node.name.lower()
            params = self.macros[name][0]
            if len(node.expressions) != len(params):
                raise MetricError(f"macro {name} takes {len(params)} arguments, got {len(node.expressions)}")
            values = dict(zip(params, node.expressions, strict=True))

            def substitute(inner: exp.Expression) -> exp.Expression:
                if isinstance(inner, exp.Column) and not inner.table and inner.name in values:
                    return exp.Paren(this=values[inner.name].copy())
                return inner

            return exp.Paren(this=self._macro_body(name).copy().transform(substitute))

        for _ in range(20):  # macros may call macros
            if not any(isinstance(n, exp.Anonymous) and n.name.lower() in self.macros
                       for n in tree.find_all(exp.Anonymous)):
                return tree
            tree = tree.transform(expand)
        raise MetricError("macros nest deeper than 20 levels")

    def _bind(self, tree: exp.Expression, variables: Mapping[str, Any],
              params: Mapping[str, Any] | Sequence[Any] | None, binder: _Binder) -> exp.Expression:
        from sqlglot import exp

        positional = list(params) if isinstance(params, Sequence) and not isinstance(params, str) else []
        named = dict(params) if isinstance(params, Mapping) else {}
        position = iter(range(len(positional)))

        def value_of(node: exp.Expression) -> Any:
            arg = node.expressions[0] if node.expressions else None
            if not isinstance(arg, exp.Literal) or not arg.is_string:
                raise MetricError("getvariable() takes a variable name")
            if arg.this not in variables:
                raise MetricError(f"variable {arg.this!r} is not set")
            return variables[arg.this]

        def bind(node: exp.Expression) -> exp.Expression:
            # a list variable: its length is a number; membership an IN list (FALSE when empty,
            # as DuckDB's list_contains; NULL for a NULL value, as DuckDB's)
            if isinstance(node, (exp.Length, exp.ArraySize)) and _is_call(node.this, "getvariable"):
                value = value_of(node.this)
                if isinstance(value, (list, tuple)):
                    return exp.Literal.number(len(value))
            if isinstance(node, exp.ArrayContains) and _is_call(node.this, "getvariable"):
                value = value_of(node.this)
                if isinstance(value, (list, tuple)):
                    if not value:
                        return exp.false()
                    item = node.expression.copy().transform(bind)
                    return exp.Paren(this=exp.In(this=item, expressions=[binder.bind(v) for v in value]))
            if _is_call(node, "getvariable"):
                return binder.bind(value_of(node))
            if isinstance(node, exp.Placeholder):
                if node.name:
                    if node.name not in named:
                        raise MetricError(f"no value for parameter ${node.name}")
                    return binder.bind(named[node.name])
                try:
                    return binder.bind(positional[next(position)])
                except StopIteration:
                    raise MetricError("more ? parameters than values") from None
            return node

        return tree.transform(bind)


def _fold_lists(tree: exp.Expression) -> exp.Expression:
    """``len([...])`` -> its length; ``list_contains([...], x)`` -> ``x IN (...)`` (FALSE for an
    empty list, as DuckDB's list_contains; NULL for a NULL x, as DuckDB's)."""
    from sqlglot import exp

    def fold(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Length, exp.ArraySize)) and isinstance(node.this, exp.Array):
            return exp.Literal.number(len(node.this.expressions))
        if isinstance(node, exp.ArrayContains) and isinstance(node.this, exp.Array):
            items = node.this.expressions
            if not items:
                return exp.false()
            return exp.Paren(this=exp.In(this=node.expression.copy(), expressions=[i.copy() for i in items]))
        return node

    return tree.transform(fold)


def _date_part_types() -> tuple[type, ...]:
    from sqlglot import exp

    return tuple(getattr(exp, n) for n in ("Hour", "Minute", "Second", "Year", "Month", "Day", "Quarter",
                                           "Week", "DayOfYear", "Extract") if hasattr(exp, n))


class _SparkRewrites:
    """Where SQLGlot's Spark output would fail or differ from DuckDB, the Spark SQL that does not."""

    def __init__(self, transpiler: SparkTranspiler):
        self.t = transpiler
        global _DATE_PARTS
        if not _DATE_PARTS:
            _DATE_PARTS = _date_part_types()

    def apply(self, tree: exp.Expression) -> exp.Expression:
        from sqlglot import exp

        for select in list(tree.find_all(exp.Select)):
            self._inline_named_windows(select)
            self._expand_star_except(select)
            self._qualify_having(select)
        tree = _bottom_up(tree, self._functions)
        tree = _bottom_up(tree, self._windows)
        return _bottom_up(tree, self._local_truncation)

    # functions ------------------------------------------------------------------------------
    def _functions(self, node: exp.Expression) -> exp.Expression:
        from sqlglot import exp

        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name == "epoch_us":  # microseconds since the epoch
                return exp.Anonymous(this="unix_micros", expressions=node.expressions)
            if name == "timezone" and len(node.expressions) == 2:
                # DuckDB timezone(zone, instant): the instant's wall-clock time in the zone
                zone, instant = node.expressions
                shifted = exp.Anonymous(this="from_utc_timestamp", expressions=[instant, zone])
                return exp.cast(shifted, exp.DataType.build("timestamp_ntz", dialect="spark"))
        if isinstance(node, exp.PercentileCont) and node.expression is not None and not node.args.get("within_group"):
            # quantile_cont(x, q | [q...]): Spark's percentile interpolates linearly, as DuckDB's
            return exp.Anonymous(this="percentile", expressions=[node.this, node.expression])
        if isinstance(node, exp.UnixToTime) and node.args.get("scale") is not None:
            # DuckDB make_timestamp(us) and epoch_ms(ms) are local (zone-less) timestamps
            scale = int(node.args["scale"].name)
            function = {6: "timestamp_micros", 3: "timestamp_millis", 0: "timestamp_seconds"}.get(scale)
            if function is None:
                raise MetricError(f"an epoch timestamp with scale {scale} has no Spark translation")
            instant = exp.Anonymous(this=function, expressions=[node.this])
            return exp.cast(instant, exp.DataType.build("timestamp_ntz", dialect="spark"))
        if isinstance(node, exp.IgnoreNulls) and _is_call(node.this, "any_value"):
            return node.this  # (its child, rewritten below, ignores NULLs already)
        if isinstance(node, exp.AnyValue):
            # SQLGlot writes ANY_VALUE(x) IGNORE NULLS, which Spark cannot follow with FILTER
            return exp.Anonymous(this="any_value", expressions=[node.this, exp.true()])
        if isinstance(node, exp.DayOfWeekIso):  # SQLGlot writes (DAYOFWEEK(x) % 7) + 1: Sunday = 2
            return exp.cast(exp.Extract(this=exp.var("DAYOFWEEK_ISO"), expression=node.this), "BIGINT")
        if isinstance(node, exp.DayOfWeek):  # DuckDB: Sunday = 0; Spark's dayofweek: Sunday = 1
            day = exp.Anonymous(this="dayofweek", expressions=[node.this])
            return exp.cast(exp.Sub(this=day, expression=exp.Literal.number(1)), "BIGINT")
        if isinstance(node, _DATE_PARTS) and not isinstance(node.parent, exp.Cast):
            return exp.cast(node, "BIGINT")  # date parts are BIGINT in DuckDB, INT in Spark
        if isinstance(node, exp.DateDiff):  # a BIGINT, as DuckDB's
            return exp.cast(self._date_diff(node), "BIGINT")
        if isinstance(node, exp.DateBin):
            return self._time_bucket(node)
        if isinstance(node, (exp.Sub, exp.Add)) and _is_call(node.expression, "to_months"):
            months = node.expression.expressions[0]
            if isinstance(node, exp.Sub):
                months = exp.Neg(this=exp.Paren(this=months))
            return exp.Anonymous(this="add_months", expressions=[node.this, months])
        if isinstance(node, exp.Table) and isinstance(node.this, exp.GenerateSeries):
            return self._series(node)
        if (isinstance(node, exp.Literal) and not node.is_string and _is_decimal(node.this)
                and not (isinstance(node.parent, exp.Cast) and node.parent.to.is_type("double"))):
            # DuckDB computes with a decimal literal as DOUBLE (1.0 * x, n / 86400.0, ...); Spark
            # would keep DECIMAL and round quotients to its scale
            return exp.cast(node.copy(), "DOUBLE")
        return node

    def _date_diff(self, node: exp.DateDiff) -> exp.Expression:
        """DuckDB's date_diff counts unit boundaries crossed (Spark's datediff(unit, ...) counts
        whole units): months and years from calendar fields, days from dates."""
        from sqlglot import exp

        unit = (node.unit.name if node.unit is not None else "DAY").upper()
        end, start = node.this, node.expression
        if unit in ("MONTH", "QUARTER", "YEAR"):
            def index(value: exp.Expression) -> exp.Expression:
                year = exp.Anonymous(this="year", expressions=[value.copy()])
                if unit == "YEAR":
                    return year
                month = exp.Anonymous(this="month", expressions=[value.copy()])
                months = exp.Add(this=exp.Mul(this=year, expression=exp.Literal.number(12)),
                                 expression=exp.Sub(this=month, expression=exp.Literal.number(1)))
                if unit == "MONTH":
                    return exp.Paren(this=months)
                return exp.Anonymous(this="div", expressions=[months, exp.Literal.number(3)])
            return exp.Paren(this=exp.Sub(this=index(end), expression=index(start)))
        if unit == "DAY":
            return exp.Anonymous(this="datediff", expressions=[exp.cast(end.copy(), "DATE"),
                                                               exp.cast(start.copy(), "DATE")])
        if unit in _UNIT_MICROS:  # boundaries between the instants' epoch microseconds
            width = exp.Literal.number(_UNIT_MICROS[unit])

            def floor_units(value: exp.Expression) -> exp.Expression:
                micros = exp.Anonymous(this="unix_micros", expressions=[value.copy()])
                return exp.Anonymous(this="floor", expressions=[exp.Div(this=micros, expression=width.copy())])
            return exp.Paren(this=exp.Sub(this=floor_units(end), expression=floor_units(start)))
        raise MetricError(f"date_diff by {unit.lower()} has no Spark translation")

    def _time_bucket(self, node: exp.DateBin) -> exp.Expression:
        """time_bucket(width, ts, origin) for widths of a day or less: the instant minus its
        distance from the last bucket start (pmod keeps instants before the origin right)."""
        from sqlglot import exp

        width = node.this
        if not isinstance(width, exp.Interval) or width.unit is None:
            raise MetricError("time_bucket needs a constant interval width on Spark")
        unit = width.unit.name.upper().rstrip("S")
        if unit not in _UNIT_MICROS:
            raise MetricError(f"time_bucket by {unit.lower()} has no Spark translation")
        micros = int(width.this.name) * _UNIT_MICROS[unit]
        origin = _TIME_BUCKET_ORIGIN
        origin_node = node.args.get("unit") or node.args.get("origin")
        if origin_node is not None:
            literal = origin_node.this if isinstance(origin_node, exp.Cast) else origin_node
            if not isinstance(literal, exp.Literal):
                raise MetricError("time_bucket needs a constant origin on Spark")
            origin = _parse_instant(literal.this)
        offset = (origin - _EPOCH) // timedelta(microseconds=1) % micros
        instant = exp.Anonymous(this="unix_micros", expressions=[node.expression.copy()])
        since = exp.Sub(this=instant, expression=exp.Literal.number(offset)) if offset else instant
        into = exp.Anonymous(this="pmod", expressions=[since, exp.Literal.number(micros)])
        start = exp.Sub(this=instant.copy(), expression=into)
        return exp.Anonymous(this="timestamp_micros", expressions=[start])

    def _series(self, table: exp.Table) -> exp.Expression:
        """``FROM generate_series(a, b, step) AS g(d)`` -> ``FROM (SELECT explode(sequence(a, b,
        step)) AS d) AS g`` (both include b)."""
        from sqlglot import exp

        series = table.this
        if series.args.get("is_end_exclusive"):
            raise MetricError("range() (end excluded) has no Spark translation; use generate_series")
        alias = table.args.get("alias")
        name = alias.name if alias is not None and alias.name else "series"
        columns = alias.columns if alias is not None else []
        column = columns[0].name if columns else "generate_series"
        args = [series.args["start"], series.args["end"]]
        if series.args.get("step") is not None:
            args.append(series.args["step"])
        sequence = exp.Anonymous(this="sequence", expressions=[a.copy() for a in args])
        exploded = exp.alias_(exp.Anonymous(this="explode", expressions=[sequence]), column)
        return exp.Subquery(this=exp.select(exploded), alias=exp.TableAlias(this=exp.to_identifier(name)))

    # windows --------------------------------------------------------------------------------
    @staticmethod
    def _inline_named_windows(select: exp.Select) -> None:
        """``OVER w ... WINDOW w AS (...)`` -> ``OVER (...)`` (the frame then can be dropped
        for the functions that take none)."""
        from sqlglot import exp

        named = {w.this.name: w for w in select.args.get("windows") or []}
        if not named:
            return
        for window in select.find_all(exp.Window):
            alias = window.args.get("alias")
            if alias is None or alias.name not in named or window.args.get("partition_by"):
                continue
            spec = named[alias.name]
            window.set("alias", None)
            for key in ("partition_by", "order", "spec"):
                if spec.args.get(key) is not None:
                    value = spec.args[key]
                    window.set(key, [v.copy() for v in value] if isinstance(value, list) else value.copy())
        select.set("windows", None)

    def _windows(self, node: exp.Expression) -> exp.Expression:
        from sqlglot import exp

        if not isinstance(node, exp.Window) or isinstance(node.this, exp.Identifier):
            return node
        func = node.this
        if isinstance(func, exp.Filter):
            # Spark has no FILTER in window aggregates: the aggregate of CASE WHEN (aggregates
            # skip NULLs, so the result is the same)
            condition: Any = func.expression.this if isinstance(func.expression, exp.Where) else func.expression
            aggregate = func.this.copy()
            target = aggregate.this
            if isinstance(target, exp.Star) or target is None:
                target = exp.Literal.number(1)
            aggregate.set("this", exp.Case(ifs=[exp.If(this=condition.copy(), true=target.copy())]))
            node.set("this", aggregate)
            func = aggregate
        if type(func).__name__ in _OFFSET_FUNCTIONS:
            node.set("spec", None)  # Spark refuses a frame for these; DuckDB ignores it
        if isinstance(func, exp.RowNumber) and node.args.get("order") is None:
            # numbering in no particular order: order by the row itself so that every read of a
            # CTE numbers the same rows alike (Spark may compute a CTE once per reference)
            select = node.find_ancestor(exp.Select)
            keys = [e.unalias().copy() for e in (select.expressions if select else [])
                    if not e.find(exp.Window) and not isinstance(e.unalias(), exp.Star)]
            if not keys:
                keys = [exp.Anonymous(this="monotonically_increasing_id", expressions=[])]
            node.set("order", exp.Order(expressions=[exp.Ordered(this=k, nulls_first=True) for k in keys]))
        return node

    # columns --------------------------------------------------------------------------------
    def _expand_star_except(self, select: exp.Select) -> None:
        """``t.* EXCLUDE (a)`` -> t's other columns by name (Spark has no EXCLUDE)."""
        from sqlglot import exp

        expressions = []
        changed = False
        for item in select.expressions:
            star = item.this if isinstance(item, exp.Column) and isinstance(item.this, exp.Star) else item
            excluded = star.args.get("except_") or star.args.get("except") if isinstance(star, exp.Star) else None
            if not excluded:
                expressions.append(item)
                continue
            table = item.table if isinstance(item, exp.Column) else ""
            view = _source_table(select, table)
            drop = {e.name for e in excluded}
            for column, _type in self.t.columns_of(view):
                if column not in drop:
                    expressions.append(exp.column(column, table=table or None, quoted=True))
            changed = True
        if changed:
            select.set("expressions", expressions)

    def _qualify_having(self, select: exp.Select) -> None:
        """In HAVING, DuckDB reads ``sum(x)`` as the sum of the input column x even where the
        select list has an output named x; Spark would take the output: name x's table."""
        from sqlglot import exp

        having = select.args.get("having")
        if having is None:
            return
        aliases = {e.alias for e in select.expressions if e.alias}
        for column in having.find_all(exp.Column):
            if column.table or column.name not in aliases or not column.find_ancestor(exp.AggFunc):
                continue
            owners = [alias for alias, columns in self._sources(select) if column.name in columns]
            if len(owners) == 1:
                column.set("table", exp.to_identifier(owners[0]))

    def _sources(self, select: exp.Select) -> list[tuple[str, set[str]]]:
        """(alias, output column names) of the tables and CTEs a SELECT reads."""
        from sqlglot import exp

        nodes = []
        if select.args.get("from_") is not None:
            nodes.append(select.args["from_"].this)
        nodes += [j.this for j in select.args.get("joins") or []]
        out = []
        for node in nodes:
            if isinstance(node, exp.Table):
                out.append((node.alias_or_name, self._table_columns(select, node.name)))
            elif isinstance(node, exp.Subquery):
                out.append((node.alias_or_name, self._query_columns(select, node.this)))
        return out

    def _table_columns(self, scope: exp.Expression, name: str) -> set[str]:
        from sqlglot import exp

        node: Any = scope
        while node is not None:  # the CTEs in scope: WITH clauses of this query and its parents
            with_ = node.args.get("with_") or node.args.get("with")
            for cte in with_.expressions if isinstance(with_, exp.With) else []:
                if cte.alias == name:
                    return self._query_columns(cte, cte.this)
            node = node.parent
        try:
            return {c for c, _type in self.t.columns_of(name)}
        except Exception:
            return set()

    def _query_columns(self, scope: exp.Expression, query: exp.Expression) -> set[str]:
        from sqlglot import exp

        while isinstance(query, exp.SetOperation):
            query = query.this
        if not isinstance(query, exp.Select):
            return set()
        names = set()
        for item in query.expressions:
            if isinstance(item.unalias(), exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
                for _alias, columns in self._sources(query):
                    names |= columns
            elif item.alias_or_name:
                names.add(item.alias_or_name)
        return names

    def _local_truncation(self, node: exp.Expression) -> exp.Expression:
        """Spark's date_trunc returns an absolute TIMESTAMP even for a local one; DuckDB keeps
        a local TIMESTAMP local."""
        from sqlglot import exp

        if (isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)) and self._is_local_time(node.this)
                and not isinstance(node.parent, exp.Cast)):
            return exp.cast(node.copy(), exp.DataType.build("timestamp_ntz", dialect="spark"))
        return node

    def _is_local_time(self, value: exp.Expression) -> bool:
        from sqlglot import exp

        if isinstance(value, exp.Paren):
            return self._is_local_time(value.this)
        if isinstance(value, exp.Cast):
            return value.to.is_type("timestampntz", "timestamp")
        if isinstance(value, exp.Column):
            return value.name in self.t.local_time_columns
        return False


def _bottom_up(node: exp.Expression, rewrite: Callable[[exp.Expression], exp.Expression]) -> exp.Expression:
    """Rewrite children before their parent (a rewritten node's children are rewritten too,
    which ``Expression.transform`` does not do)."""
    from sqlglot import exp

    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expression):
            new = _bottom_up(value, rewrite)
            if new is not value:
                node.set(key, new)
        elif isinstance(value, list) and any(isinstance(v, exp.Expression) for v in value):
            node.set(key, [_bottom_up(v, rewrite) if isinstance(v, exp.Expression) else v for v in value])
    return rewrite(node)


def _is_call(node: exp.Expression | None, name: str) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Anonymous) and node.name.lower() == name


def _is_decimal(text: str) -> bool:
    return "." in text or "e" in text.lower()


def _parse_instant(text: str) -> datetime:
    value = text.strip()
    if re.search(r"[+-]\d\d$", value):
        value += ":00"
    instant = datetime.fromisoformat(value)
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _source_table(select: exp.Select, alias: str) -> str:
    """The table (view) name behind ``alias`` in a SELECT's FROM and JOINs."""
    from sqlglot import exp

    sources = []
    if select.args.get("from_") is not None:
        sources.append(select.args["from_"].this)
    sources += [j.this for j in select.args.get("joins") or []]
    tables = [s for s in sources if isinstance(s, exp.Table)]
    for table in tables:
        if not alias or table.alias_or_name == alias:
            return table.name
    raise MetricError(f"* EXCLUDE on {alias or 'a subquery'}: name the table it reads on Spark")


# -- a DuckDB-shaped connection to Spark ---------------------------------------------------------


class SparkResult:
    """A statement's result, answering as a DuckDB result does (``fetchall``, ``df``, ...)."""

    def __init__(self, table: pa.Table | None, converter: duckdb.DuckDBPyConnection):
        self.table = table if table is not None else pa.table({})
        self._converter = converter

    @property
    def description(self) -> list[tuple[Any, ...]]:
        return [(f.name, str(f.type), None, None, None, None, None) for f in self.table.schema]

    def _relation(self) -> duckdb.DuckDBPyRelation:
        return self._converter.from_arrow(self.table)

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self.table.num_columns == 0:
            return []
        return self._relation().fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def df(self) -> pd.DataFrame:
        if self.table.num_columns == 0:
            return pd.DataFrame()
        return self._relation().df()

    def arrow(self) -> pa.Table:
        return self.table


class SparkConnection:
    """The part of a DuckDB connection the metric layer uses, running on a Spark session.

    Not for concurrent use (as a DuckDB connection with session variables is not)."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.variables: dict[str, Any] = {}
        self.transpiler = SparkTranspiler(self._columns_of)
        self.frames: dict[str, DataFrame] = {}
        self._converter = duckdb_connect()
        self.last_sql: str | None = None

    # DuckDB connection interface ------------------------------------------------------------
    def execute(self, sql: str, parameters: Mapping[str, Any] | Sequence[Any] | None = None) -> SparkResult:
        text = _COMMENT_LINES.sub("", sql).strip().rstrip(";").strip()
        macro = _MACRO.match(text)
        if macro:
            name, params, body = macro.groups()
            self.transpiler.define_macro(name, params.split(","), body)
            return self._result(None)
        variable = _SET_VARIABLE.match(text)
        if variable:
            self._set_variable(variable.group(1), variable.group(2), parameters)
            return self._result(None)
        result = self._result(None)
        for statement in self.transpiler.parse(text):
            result = self._run(statement, parameters)
        return result

    def sql(self, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> SparkResult:
        return self.execute(query, params)

    def register(self, name: str, table: pa.Table | pd.DataFrame) -> None:
        """A temporary view of a small local table (sent to Spark row by row)."""
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        schema = ", ".join(f"`{f.name}` {_spark_type_of(f.type)}" for f in table.schema)
        rows = [tuple(r.values()) for r in table.to_pylist()]
        frame = self.spark.createDataFrame(rows, schema=schema)
        self._keep(name, frame)

    def unregister(self, name: str) -> None:
        self.drop(name)

    def close(self) -> None:
        for name in list(self.frames):
            self.drop(name)
        self._converter.close()

    # helpers --------------------------------------------------------------------------------
    def drop(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)
        self.frames.pop(name, None)

    def view(self, name: str, frame: DataFrame) -> None:
        """Make ``frame`` the temporary view ``name`` (a warehouse table, for instance)."""
        self._keep(name, frame)

    def translate(self, sql: str, parameters: Mapping[str, Any] | Sequence[Any] | None = None) -> list[str]:
        """The Spark SQL of each statement of ``sql`` (for docs, debugging and tests)."""
        out = []
        for statement in self.transpiler.parse(sql.strip().rstrip(";")):
            query = statement.expression if _is_create(statement) else statement
            out.append(self.transpiler.to_spark(query, self.variables, parameters)[0])
        return out

    def _result(self, table: pa.Table | None) -> SparkResult:
        return SparkResult(table, self._converter)

    def _set_variable(self, name: str, value_sql: str, parameters: Any) -> None:
        from sqlglot import exp

        cast = re.match(r"^\?\s*(?:::\s*(.+))?$", value_sql, re.S)
        if cast:
            values = list(parameters or [])
            if len(values) != 1:
                raise MetricError(f"SET VARIABLE {name} = ? needs one value")
            value = values[0]
            target = (cast.group(1) or "").upper().replace(" ", "")
            if target in ("TIMESTAMPTZ", "TIMESTAMPWITHTIMEZONE") and isinstance(value, datetime) \
                    and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            if target.endswith("[]"):
                value = list(value)
            self.variables[name] = value
            return
        query: Any = self.transpiler.parse(f"SELECT {value_sql}")[0]
        literal = query.selects[0]
        if isinstance(literal, exp.Literal):
            self.variables[name] = literal.this if literal.is_string else float(literal.this) \
                if _is_decimal(literal.this) else int(literal.this)
        elif isinstance(literal, exp.Boolean):
            self.variables[name] = literal.this
        else:
            raise MetricError(f"SET VARIABLE {name}: only values or ? are supported on Spark")

    def _run(self, statement: exp.Expression, parameters: Any) -> SparkResult:
        from sqlglot import exp

        if _is_create(statement):
            name = statement.this.name
            kind = str(statement.args.get("kind") or "").upper()
            query = statement.expression
            if kind == "TABLE" and isinstance(query, exp.Query) and not query.args.get("limit"):
                query = query.copy()
                query.set("order", None)  # a table has no order; sorting it would cost a shuffle
            frame = self._frame(query, parameters)
            if kind == "TABLE":
                # computed once, as a DuckDB temp table: later reads never recompute it. The
                # checkpoint keeps the query's column identities; renaming every column gives it
                # its own, or a join with another table made from the same view can fail to
                # resolve ("conflicting attributes")
                frame = frame.localCheckpoint(eager=True)
                frame = frame.toDF(*frame.columns)
            self._keep(name, frame)
            return self._result(None)
        if isinstance(statement, exp.Drop):
            for table in statement.args.get("tables") or [statement.this]:
                self.drop(table.name)
            return self._result(None)
        if isinstance(statement, exp.Describe):
            fields = self.spark.table(_quote(statement.this.name)).schema.fields
            return self._result(pa.table({
                "column_name": [f.name for f in fields],
                "column_type": [f.dataType.simpleString() for f in fields],
            }))
        if isinstance(statement, exp.Query):
            return self._result(self._frame(statement, parameters).toArrow())
        raise MetricError(f"statement not supported on Spark: {statement.sql(dialect='duckdb')[:80]}")

    def _frame(self, query: exp.Expression, parameters: Any) -> DataFrame:
        text, args = self.transpiler.to_spark(query, self.variables, parameters)
        self.last_sql = text
        return self.spark.sql(text, args=args or None)

    def _keep(self, name: str, frame: DataFrame) -> None:
        frame.createOrReplaceTempView(name)
        self.frames[name] = frame
        from pyspark.sql.types import TimestampNTZType

        for field in frame.schema.fields:
            if isinstance(field.dataType, TimestampNTZType):
                self.transpiler.local_time_columns.add(field.name)

    def _columns_of(self, name: str) -> list[tuple[str, str]]:
        return [(f.name, f.dataType.simpleString()) for f in self.spark.table(_quote(name)).schema.fields]


def _is_create(statement: exp.Expression) -> bool:
    from sqlglot import exp

    return isinstance(statement, exp.Create) and str(statement.args.get("kind") or "").upper() in ("TABLE", "VIEW")


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark_type_of(dtype: pa.DataType) -> str:
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "STRING"
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_int8(dtype) or pa.types.is_int16(dtype):
        return "SMALLINT"
    if pa.types.is_int32(dtype):
        return "INT"
    if pa.types.is_integer(dtype):
        return "BIGINT"
    if pa.types.is_floating(dtype):
        return "DOUBLE"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP" if dtype.tz else "TIMESTAMP_NTZ"
    if pa.types.is_date(dtype):
        return "DATE"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"ARRAY<{_spark_type_of(dtype.value_type)}>"
    raise MetricError(f"no Spark type for {dtype}")


# -- the warehouse on Spark ----------------------------------------------------------------------


def hadoop_uri(uri: str) -> str:
    """A delta-rs file URI as Spark's file systems spell it (s3:// is s3a:// to Hadoop)."""
    for prefix, replacement in (("s3://", "s3a://"), ("az://", "abfss://"), ("azure://", "abfss://")):
        if uri.startswith(prefix):
            return replacement + uri[len(prefix):]
    return uri


def warehouse_frames(spark: SparkSession, warehouse: Warehouse, versions: Mapping[str, int],
                     reader: str = "parquet") -> dict[str, DataFrame]:
    """One DataFrame per table at its pinned version, with the schema's columns and types."""
    if reader not in READERS:
        raise MetricError(f"{ENV_SPARK_READER} must be one of {', '.join(READERS)}, not {reader!r}")
    frames = {}
    for name, version in versions.items():
        spec = TABLES[name]
        frames[name] = _table_frame(spark, warehouse, spec, version, reader)
    return frames


def _table_frame(spark: SparkSession, warehouse: Warehouse, spec: TableSpec, version: int,
                 reader: str) -> DataFrame:
    if version < 0:
        return _empty_frame(spark, spec)
    uri = hadoop_uri(warehouse.table_uri(spec.name))
    if reader == "delta":
        frame = spark.read.format("delta").option("versionAsOf", version).load(uri)
    else:
        dt = warehouse.table(spec.name, version)
        features = set(dt.protocol().reader_features or [])
        if features & {"deletionVectors", "columnMapping"}:
            raise MetricError(
                f"table {spec.name} uses {', '.join(sorted(features & {'deletionVectors', 'columnMapping'}))}: "
                f"its Parquet files alone do not give its rows; read it with a Delta-aware Spark "
                f"({ENV_SPARK_READER}=delta)")
        files = [hadoop_uri(f) for f in dt.file_uris()]
        if not files:
            return _empty_frame(spark, spec)
        frame = (spark.read.option("basePath", uri).option("mergeSchema", "true").parquet(*files))
    present = set(frame.columns)
    columns = [
        f"CAST(`{c.name}` AS {SPARK_TYPES[c.type]}) AS `{c.name}`" if c.name in present
        else f"CAST(NULL AS {SPARK_TYPES[c.type]}) AS `{c.name}`"
        for c in spec.all_columns
    ]
    return frame.selectExpr(*columns)


def _empty_frame(spark: SparkSession, spec: TableSpec) -> DataFrame:
    columns = ", ".join(f"CAST(NULL AS {SPARK_TYPES[c.type]}) AS `{c.name}`" for c in spec.all_columns)
    return spark.sql(f"SELECT {columns} WHERE false")


# -- the session ---------------------------------------------------------------------------------


class SparkMetricSession(MetricSession):
    """Metric queries over one snapshot, run on Spark (``engine: spark``).

    The snapshot pins the Delta versions (and stays available as ``session.snapshot`` for code
    that reads raw tables through DuckDB); Spark reads exactly those versions."""

    views_read_variables_late = False  # a Spark view holds the values bound when it was made
    ARROW_PAYMENTS = frozenset()  # Spark keeps every table itself (SparkConnection._run)

    def __init__(self, snapshot: Snapshot, settings: Settings | None = None, owns_snapshot: bool = False,
                 *, warehouse: Warehouse | None = None, spark: SparkSession | None = None,
                 reader: str | None = None):
        self.spark = _metric_spark(spark_session(spark))
        self.reader = reader or os.environ.get(ENV_SPARK_READER, "parquet")
        self._spark_con = SparkConnection(self.spark)
        try:
            wh = warehouse or Warehouse(snapshot.location, settings)
            for name, frame in warehouse_frames(self.spark, wh, snapshot.versions, self.reader).items():
                self._spark_con.view(name, frame)
            super().__init__(snapshot, settings, owns_snapshot)
        except BaseException:
            self._spark_con.close()
            raise

    @property  # type: ignore[override]
    def con(self) -> SparkConnection:
        return self._spark_con

    @con.setter
    def con(self, value: Any) -> None:
        # MetricSession.__init__ assigns the snapshot's DuckDB connection: metric SQL runs on
        # Spark here, the snapshot's connection stays with the snapshot
        pass

    @classmethod
    def open(cls, warehouse: Warehouse | str | None = None, as_of: datetime | dict[str, int] | None = None,
             settings: Settings | None = None, *, spark: SparkSession | None = None,
             reader: str | None = None) -> SparkMetricSession:
        wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse, settings)
        snapshot = wh.snapshot(as_of=as_of)
        try:
            return cls(snapshot, settings or wh.settings, owns_snapshot=True, warehouse=wh, spark=spark,
                       reader=reader)
        except BaseException:
            snapshot.close()
            raise

    def close(self) -> None:
        try:
            self._spark_con.close()
        finally:
            super().close()

    def _setup(self) -> None:
        super()._setup()
        for statement in spark_queries("_session").values():  # Spark versions of macros
            self.con.execute(statement)

    def _build_history(self, block: str, sql: str, key: tuple) -> None:
        """Spark builds every history table itself: the persistent history cache
        (metrics/cache.py) holds tables that DuckDB built (read back, they would make Spark's
        numbers DuckDB's), and its reads and writes are DuckDB statements."""
        self._run_statement("_history", block)

    def _run_statement(self, family: str, name: str) -> None:
        sql = spark_queries(family).get(name) or load_queries(family)[name]
        self.con.execute(sql)

    def _prepare(self, family: str, name: str, params: Mapping[str, Any] | None = None) -> str:
        sql = super()._prepare(family, name, params)  # builds what the DuckDB block requires
        return spark_queries(family).get(name, sql)

    def spark_sql(self, family: str, name: str, params: Mapping[str, Any] | None = None) -> str:
        """The Spark SQL a named query runs as in the current scope (docs, debugging)."""
        if (family, name) in QUERY_VARIANTS:
            name, parameter, value = QUERY_VARIANTS[(family, name)]
            params = {**(params or {}), parameter: value}
        return "\n;\n".join(self.con.translate(self._prepare(family, name, params), params))
