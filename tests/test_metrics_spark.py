"""The metric suite on Spark equals the metric suite on DuckDB, metric by metric.

Every family (transactions, revenue, recurring revenue, customers, geography, performance,
fraud, cohorts, real time, trends) runs on a local Spark session (``SparkMetricSession``: the
same DuckDB SQL transpiled by SQLGlot) and on DuckDB over the same warehouse snapshot, on the
hand-written golden fixture (tests/metric_fixtures.py) and on a small generated warehouse, with
and without filters, in UTC, in a zone with a fixed offset and in one with a daylight-saving
change inside the period. Counts and text must be equal, numbers equal up to the order in which
floating-point sums were added (relative 1e-9), and every table must have the same columns,
types and row order.

Spark runs in this process (``local[2]``) on 127.0.0.1 only, without its web UI, and is stopped
when the module ends. Every test that starts Spark is ``slow`` (Spark alone takes 20-40 s to
start); the translation's unit tests are not. Whole-stage code generation is off here: on a few thousand rows compiling
each query costs more than it saves (it changes no result).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analytics_lib import metrics as m
from analytics_lib import synth
from analytics_lib.config import get_settings
from analytics_lib.metrics import Filters, MissingRateError, Period
from analytics_lib.warehouse import Warehouse
from tests import metric_fixtures as fx

pytestmark = pytest.mark.spark

REL = 1e-9  # floating-point sums added in another order; nothing else may differ


def _require(condition: bool, reason: str) -> None:
    """Skip where the Spark extra or Java is missing, but never in CI (which installs both)."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the spark tests (make test installs the spark extra, "
                    f".ci/system-deps.sh installs java)")
    pytest.skip(reason)


try:
    import pyspark  # noqa: F401
    import sqlglot  # noqa: F401

    HAVE_SPARK = True
except ImportError:
    HAVE_SPARK = False


# -- comparing results ----------------------------------------------------------------------------


def _same_number(a: Any, b: Any) -> bool:
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return bool(a) == bool(b) and type(a) is type(b)
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return int(a) == int(b)  # counts: exactly
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return fa == pytest.approx(fb, rel=REL, abs=1e-12)


def assert_same_value(a: Any, b: Any, where: str) -> None:
    missing_a = a is None or a is pd.NaT or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or b is pd.NaT or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        assert missing_a and missing_b, f"{where}: duckdb {a!r}, spark {b!r}"
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: duckdb {a!r}, spark {b!r}"
        for key in a:
            assert_same_value(a[key], b[key], f"{where}.{key}")
        return
    if isinstance(a, (int, float, np.number)) and not isinstance(a, bool):
        assert type(a) is type(b) or (isinstance(b, (int, float, np.number)) and not isinstance(b, bool)), \
            f"{where}: duckdb {type(a).__name__}, spark {type(b).__name__}"
        assert _same_number(a, b), f"{where}: duckdb {a!r}, spark {b!r}"
        return
    assert a == b, f"{where}: duckdb {a!r}, spark {b!r}"


def assert_same_frame(a: pd.DataFrame, b: pd.DataFrame, where: str) -> None:
    assert list(a.columns) == list(b.columns), f"{where}: columns {list(a.columns)} vs {list(b.columns)}"
    assert len(a) == len(b), f"{where}: {len(a)} rows on duckdb, {len(b)} on spark"
    for column in a.columns:
        x, y = a[column], b[column]
        at = f"{where}[{column}]"
        assert x.dtype == y.dtype, f"{at}: dtype {x.dtype} on duckdb, {y.dtype} on spark"
        if pd.api.types.is_integer_dtype(x.dtype) or pd.api.types.is_bool_dtype(x.dtype):
            assert x.isna().tolist() == y.isna().tolist() and x.dropna().tolist() == y.dropna().tolist(), \
                f"{at}: {x.tolist()} vs {y.tolist()}"
        elif pd.api.types.is_float_dtype(x.dtype):
            xs, ys = x.to_numpy(dtype=float, na_value=np.nan), y.to_numpy(dtype=float, na_value=np.nan)
            assert np.array_equal(np.isnan(xs), np.isnan(ys)), f"{at}: missing values differ: {xs} vs {ys}"
            ok = ~np.isnan(xs)
            assert np.allclose(xs[ok], ys[ok], rtol=REL, atol=1e-12), f"{at}: {xs} vs {ys}"
        else:
            for i, (u, v) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
                assert_same_value(u, v, f"{at}[{i}]")


def assert_same_section(a: m.MetricSection, b: m.MetricSection, where: str) -> None:
    assert list(a.summary) == list(b.summary), f"{where}: summary keys differ"
    for key, value in a.summary.items():
        assert_same_value(value, b.summary[key], f"{where}.summary.{key}")
    assert list(a.tables) == list(b.tables), f"{where}: tables differ"
    for name, frame in a.tables.items():
        assert_same_frame(frame, b.tables[name], f"{where}.tables.{name}")


# -- Spark and the warehouses ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(tmp_path_factory) -> Iterator[Any]:
    _require(HAVE_SPARK, "pyspark and sqlglot are not installed (pip install -e '.[spark]')")
    _require(shutil.which("java") is not None, "java is not installed")
    from pyspark.sql import SparkSession

    saved = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = (
        SparkSession.builder.master("local[2]")
        .appName("payment-analytics-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp_path_factory.mktemp('spark-tmp')}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        if saved is None:
            os.environ.pop("SPARK_LOCAL_IP", None)
        else:
            os.environ["SPARK_LOCAL_IP"] = saved


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Warehouse:
    return fx.build(Warehouse(tmp_path_factory.mktemp("golden") / "warehouse"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("generated") / "warehouse")
    synth.generate(wh, customers=800, months=14, seed=3, end=date(2026, 10, 31))
    return wh


class Engines:
    """A DuckDB and a Spark session on each warehouse, opened once."""

    def __init__(self, spark: Any, warehouses: dict[str, Warehouse]):
        self.spark = spark
        self.warehouses = warehouses
        self.sessions: dict[tuple[str, str], m.MetricSession] = {}

    def session(self, warehouse: str, engine: str) -> m.MetricSession:
        key = (warehouse, engine)
        if key not in self.sessions:
            from analytics_lib.metrics.spark import SparkMetricSession

            wh = self.warehouses[warehouse]
            self.sessions[key] = (SparkMetricSession.open(wh, spark=self.spark) if engine == "spark"
                                  else m.MetricSession.open(wh))
        return self.sessions[key]

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


@pytest.fixture(scope="module")
def engines(spark, golden, generated) -> Iterator[Engines]:
    both = Engines(spark, {"golden": golden, "generated": generated})
    yield both
    both.close()


# -- the scenarios --------------------------------------------------------------------------------

MAY = Period.month(2024, 5, "UTC")


class Scenario:
    def __init__(self, warehouse: str, period: Period, filters: dict | None = None, currency: str = "USD",
                 now: datetime | None = None, hours: int = 24):
        self.warehouse, self.period, self.filters, self.currency = warehouse, period, filters, currency
        self.now, self.hours = now, hours


SCENARIOS = {
    # the hand-made fixture: May 2024 in UTC, with its real-time window at the end of May
    "golden": Scenario("golden", MAY, now=fx.ts(5, 28, 12), hours=48),
    # generated data: a month in the workspace's zone (a fixed UTC+3), and the live window
    "generated-month": Scenario("generated", Period.month(2026, 9, "Europe/Istanbul"),
                                now=datetime(2026, 10, 31, 18, 0, tzinfo=UTC), hours=24),
    # a quarter in a zone whose offset changes inside it (DST on 29 March), in EUR (every amount
    # converted), filtered by country (payments, refunds, fees and MRR all filter)
    "generated-quarter-berlin": Scenario("generated", Period.quarter(2026, 1, "Europe/Berlin"),
                                         {"country": ["DE", "TR", "US"]}, "EUR"),
}

FAMILIES = ("transactions", "revenue", "recurring_revenue", "customers", "geography", "performance",
            "fraud", "cohorts")


@pytest.fixture(scope="module")
def results(engines) -> Iterator[dict]:
    """(scenario, engine) -> comprehensive analytics and the real-time section, computed on demand."""
    cache: dict = {}

    def get(name: str, engine: str) -> dict:
        if (name, engine) not in cache:
            s = SCENARIOS[name]
            session = engines.session(s.warehouse, engine)
            out: dict[str, Any] = {
                "all": m.comprehensive_analytics(s.period, s.filters, s.currency, session=session),
            }
            if s.now is not None:
                out["realtime"] = m.realtime(session, now=s.now, hours=s.hours, filters=s.filters,
                                             currency=s.currency, timezone=s.period.timezone)
            cache[(name, engine)] = out
        return cache[(name, engine)]

    yield get


# -- equality, family by family -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_family_equal_on_spark(results, scenario, family):
    duck, spark = results(scenario, "duckdb")["all"], results(scenario, "spark")["all"]
    assert_same_section(duck.sections[family], spark.sections[family], f"{scenario}.{family}")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_trends_and_headline_equal_on_spark(results, scenario):
    duck, spark = results(scenario, "duckdb")["all"], results(scenario, "spark")["all"]
    assert [t.metric for t in duck.trends] == [t.metric for t in spark.trends]
    for a, b in zip(duck.trends, spark.trends, strict=True):
        assert_same_value(a.to_dict(), b.to_dict(), f"{scenario}.trends.{a.metric}")
    assert_same_value(duck.summary, spark.summary, f"{scenario}.summary")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [n for n, s in SCENARIOS.items() if s.now is not None])
def test_realtime_equal_on_spark(results, scenario):
    duck, spark = results(scenario, "duckdb")["realtime"], results(scenario, "spark")["realtime"]
    assert_same_section(duck, spark, f"{scenario}.realtime")


@pytest.mark.slow
def test_the_golden_numbers_hold_on_spark(results):
    """Spark gives the hand-worked numbers of tests/test_metrics_golden.py, not only DuckDB's."""
    spark = results("golden", "spark")["all"]
    t, r = spark.transactions.summary, spark.revenue.summary
    assert (t["total_transactions"], t["successful_transactions"], t["failed_transactions"]) == (10, 6, 3)
    assert t["total_volume"] == pytest.approx(339.0)
    assert r["fees"] == pytest.approx(25.59) and r["net_revenue"] == pytest.approx(339 - 44 - 80 - 25.59)
    assert r["paying_customers"] == 4
    stripe = spark.transactions.tables["failures_by_provider"].set_index("value").loc["stripe"]
    # t4 insufficient_funds and t5 fraudulent: a tie, broken by name on both engines
    assert stripe["top_failure_reason"] == "fraudulent"


# -- configuration, errors, hostile input ---------------------------------------------------------


@pytest.mark.slow
def test_engine_is_chosen_by_configuration(spark, golden):
    from analytics_lib.metrics.spark import SparkMetricSession

    with m.MetricSession.open(golden, settings=get_settings(engine="spark")) as session:
        assert isinstance(session, SparkMetricSession)
        assert session.spark.sparkContext is spark.sparkContext  # the running Spark, not a second one
        assert m.transaction_analytics(session, MAY).summary["total_transactions"] == 10
    with m.MetricSession.open(golden, settings=get_settings(engine="duckdb")) as session:
        assert type(session) is m.MetricSession


@pytest.mark.slow
def test_spark_builds_history_tables_itself(engines, monkeypatch):
    """The persistent history cache holds tables DuckDB built: Spark never reads (nor writes) it,
    or its numbers would be DuckDB's."""
    cache = pytest.importorskip("analytics_lib.metrics.cache")
    from analytics_lib.metrics.spark import SparkMetricSession

    calls: list[str] = []
    monkeypatch.setattr(cache.HistoryCache, "load", lambda self, con, block, *a: calls.append(block) or False)
    monkeypatch.setattr(cache.HistoryCache, "store", lambda self, con, block, *a: calls.append(block))
    with SparkMetricSession.open(engines.warehouses["golden"], spark=engines.spark) as session:
        assert m.customer_analytics(session, MAY).summary["total_customers"] == 4
    assert calls == []


@pytest.mark.slow
def test_a_missing_rate_is_the_same_error_on_spark(engines):
    june = Period.month(2024, 6, "UTC")  # t11 on 06-29, after the last TRY rate
    messages = []
    for engine in ("duckdb", "spark"):
        with pytest.raises(MissingRateError) as caught:
            m.transaction_analytics(engines.session("golden", engine), june, currency="USD")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "TRY" in messages[0] and "2024-06-29" in messages[0]


HOSTILE = ["TR' OR '1'='1", "x\\'; DROP VIEW payments; --", "' || (SELECT 1) || '", ":v0", "$grain", "TR\\"]


@pytest.mark.slow
def test_hostile_filter_values_are_bound_not_spliced(engines):
    filters = Filters.of(country=HOSTILE, provider=["stripe", "a'b"])
    spark_session = engines.session("golden", "spark")
    duck = m.transaction_analytics(engines.session("golden", "duckdb"), MAY, filters)
    spark = m.transaction_analytics(spark_session, MAY, filters)
    assert_same_section(duck, spark, "hostile")
    assert spark.summary["total_transactions"] == 0
    # the SQL Spark runs never contains a filter value: each is a named parameter
    sql = spark_session.spark_sql("_scope", "filtered_transactions")
    assert "country_code IN (:v0, :v1, :v2, :v3, :v4, :v5)" in sql
    for value in HOSTILE:
        assert value == ":v0" or value not in sql


# -- the translation itself (no Spark needed beyond the import) ----------------------------------


@pytest.fixture
def transpiler():
    _require(HAVE_SPARK, "pyspark and sqlglot are not installed (pip install -e '.[spark]')")
    from analytics_lib.metrics.spark import SparkTranspiler

    return SparkTranspiler(lambda name: [("ck", "int"), ("a", "string"), ("b", "double")])


def _spark_sql(transpiler, sql: str, variables: dict | None = None, params: Any = None) -> tuple[str, dict]:
    return transpiler.to_spark(transpiler.parse(sql)[0], variables or {}, params)


def test_variables_text_is_bound_by_spark_numbers_and_instants_are_literals(transpiler):
    start = datetime(2024, 5, 1, tzinfo=UTC)
    sql, args = _spark_sql(
        transpiler,
        "SELECT * FROM t WHERE (len(getvariable('f_country')) = 0 OR list_contains(getvariable('f_country'), c))"
        " AND (len(getvariable('f_provider')) = 0 OR list_contains(getvariable('f_provider'), p))"
        " AND created_at >= getvariable('p_start') AND d < getvariable('p_end_date') AND x > $threshold",
        {"f_country": ["TR' --", "DE"], "f_provider": [], "p_start": start, "p_end_date": date(2024, 6, 1)},
        {"threshold": 65.0},
    )
    assert "TR'" not in sql and set(args.values()) == {"TR' --", "DE"}
    assert "c IN (:v0, :v1)" in sql and "OR FALSE" in sql  # an empty list matches nothing
    assert "TIMESTAMP_MICROS(1714521600000000)" in sql and "CAST('2024-06-01' AS DATE)" in sql
    assert "CAST(65.0 AS DOUBLE)" in sql


@pytest.mark.parametrize(("duckdb_sql", "expected"), [
    # SQLGlot writes (DAYOFWEEK(x) % 7) + 1, which makes Sunday 2
    ("SELECT isodow(x) FROM r", "CAST(EXTRACT(DAYOFWEEK_ISO FROM x) AS BIGINT)"),
    # DuckDB counts month boundaries; Spark's datediff(MONTH, ...) whole months
    ("SELECT date_diff('month', a, b) FROM r", "CAST(((YEAR(b) * 12 + MONTH(b) - 1) - (YEAR(a) * 12 + MONTH(a) - 1)) AS BIGINT)"),
    # a decimal literal: DuckDB divides in DOUBLE, Spark would in DECIMAL
    ("SELECT n / 86400.0 FROM r", "n / CAST(86400.0 AS DOUBLE)"),
    ("SELECT time_bucket(INTERVAL 15 MINUTE, ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') FROM r",
     "TIMESTAMP_MICROS(UNIX_MICROS(ts) - PMOD(UNIX_MICROS(ts), 900000000))"),
    ("SELECT quantile_cont(v, [0.2, 0.8]) FROM r", "PERCENTILE(v, ARRAY(CAST(0.2 AS DOUBLE), CAST(0.8 AS DOUBLE)))"),
    ("SELECT epoch_us(ts) FROM r", "UNIX_MICROS(ts)"),
    ("SELECT timezone('Europe/Berlin', ts) FROM r", "CAST(FROM_UTC_TIMESTAMP(ts, 'Europe/Berlin') AS TIMESTAMP_NTZ)"),
    ("SELECT make_timestamp(epoch_us(ts) + 3) FROM r", "CAST(TIMESTAMP_MICROS(UNIX_MICROS(ts) + 3) AS TIMESTAMP_NTZ)"),
    ("SELECT r.* EXCLUDE (ck) FROM r", "SELECT `r`.`a`, `r`.`b` FROM r"),
    # Spark refuses a frame for lead/lag; DuckDB ignores it
    ("SELECT lead(a) OVER w FROM r WINDOW w AS (PARTITION BY k ORDER BY a ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
     "SELECT LEAD(a) OVER (PARTITION BY k ORDER BY a NULLS LAST) FROM r"),
    # no FILTER in Spark's window aggregates
    ("SELECT min(a) FILTER (WHERE b > 0) OVER (PARTITION BY k) FROM r", "MIN(CASE WHEN b > 0 THEN a END) OVER (PARTITION BY k)"),
    # numbering in no order: the same numbers on every read of the rows
    ("SELECT row_number() OVER () AS n, a FROM r", "ROW_NUMBER() OVER (ORDER BY a) AS n"),
    ("SELECT any_value(a) FILTER (WHERE b > 0) FROM r", "ANY_VALUE(a, TRUE) FILTER(WHERE b > 0)"),
    ("SELECT d FROM generate_series(DATE '2024-01-01', DATE '2024-01-31', INTERVAL 1 DAY) AS g(d)", "FROM (SELECT EXPLODE(SEQUENCE("),
    ("SELECT DATE '2024-05-01' - to_months(11) FROM r", "ADD_MONTHS(CAST('2024-05-01' AS DATE), -(11))"),
])
def test_rewrites_where_sqlglot_output_differs(transpiler, duckdb_sql, expected):
    assert expected in _spark_sql(transpiler, duckdb_sql)[0]


def test_macros_expand_and_having_reads_input_columns(transpiler):
    transpiler.define_macro("utc_day", ["ts"], "CAST(ts AS DATE)")
    assert "CAST((c) AS DATE)" in _spark_sql(transpiler, "SELECT utc_day(c) FROM r")[0]
    # DuckDB's HAVING sum(b) sums the input column b even where an output is named b
    sql = _spark_sql(transpiler, "SELECT a, sum(b) AS b FROM r GROUP BY a HAVING sum(b) > 0")[0]
    assert "HAVING SUM(r.b) > 0" in sql


def test_spark_specific_blocks_name_blocks_that_exist():
    _require(HAVE_SPARK, "pyspark and sqlglot are not installed (pip install -e '.[spark]')")
    from analytics_lib.metrics.engine import load_queries
    from analytics_lib.metrics.spark import spark_overrides

    for family, blocks in spark_overrides().items():
        assert set(blocks) <= set(load_queries(family)), family


def test_spark_conf_from_the_environment(monkeypatch):
    """PAYMENT_ANALYTICS_SPARK_CONF pairs reach a new session; a pair without '=' is a clear error.
    Local defaults replace Spark's cluster defaults (200 shuffle partitions, a 1 GB driver)."""
    from analytics_lib.metrics import spark as sp

    monkeypatch.setenv(sp.ENV_SPARK_CONF, " spark.driver.memory=12g , spark.sql.shuffle.partitions=16,")
    assert sp.spark_conf_from_env() == {"spark.driver.memory": "12g", "spark.sql.shuffle.partitions": "16"}
    monkeypatch.setenv(sp.ENV_SPARK_CONF, "spark.driver.memory")
    with pytest.raises(m.MetricError, match="not key=value"):
        sp.spark_conf_from_env()
    monkeypatch.delenv(sp.ENV_SPARK_CONF)
    assert sp.spark_conf_from_env() == {}
    local = sp.local_spark_conf()
    assert int(local["spark.sql.shuffle.partitions"]) == 2 * (os.cpu_count() or 2)
    assert local["spark.driver.memory"] == "6g"

