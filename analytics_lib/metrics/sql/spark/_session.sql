-- Spark versions of blocks of sql/_session.sql. Each replaces the DuckDB block of the same name on
-- the Spark engine only (analytics_lib/metrics/spark.py), and tests/test_metrics_spark.py holds
-- every metric that uses it to the DuckDB engine's numbers. Why each exists: docs/scaling.md.

-- name: utc_date
-- The UTC calendar day of an instant: the day whose FX rate converts an amount. The DuckDB block
-- computes it from epoch microseconds to keep DuckDB's ICU calendar out of the FX joins; Spark's
-- session time zone is UTC (spark.py SPARK_SQL_CONF), so its plain cast is that day.
CREATE OR REPLACE TEMP MACRO utc_date(ts) AS CAST(ts AS DATE)
