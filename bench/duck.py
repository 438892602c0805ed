"""The `features` and `sales_rolling` jobs' computation in DuckDB, on the same Iceberg tables.

DuckDB reads the lake's tables through pyiceberg, as the data contract tells any reader to:
`load_table(...).scan(row_filter=...)` prunes the dates, `to_arrow()` reads the data files into
Arrow, and DuckDB queries that Arrow table in place (what `scan().to_duckdb()` does). The outputs
are written as Parquet files (DuckDB's own; figure 2 compares them with the tables Spark wrote).

Same rules as spark_jobs/features.py and spark_jobs/sales_rolling.py: one row per
transaction_id (the copy on the earliest dt), sale date = UTC date of transaction_ts for
features and `dt` for the rolling window, region = min(region) per customer of the latest
customers snapshot, null features as 0.0 in the vector, correlation over what was written.
"""

# SQL text here is built from code constants, dates and generated paths only, never from input.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from bench import data
from spark_jobs.schemas import FEATURE_COLUMNS

DEDUP_ORDER = "dt, transaction_ts, total_amount, customer_id, product_id, quantity"


def _run(con, sql: str) -> list[tuple]:
    """Execute and fetch everything: DuckDB refuses other work on a connection with a pending result."""
    return con.execute(sql).fetchall()


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    _run(con, "SET TimeZone = 'UTC'")
    if threads:
        _run(con, f"SET threads = {int(threads)}")
    return con


def read_table(
    lake: Path, zone: str, name: str, row_filter: str, reads: dict[str, float] | None = None
) -> pa.Table:
    """The rows of `<zone>.<name>` matching row_filter, read by pyiceberg into Arrow (seconds
    spent added to reads["pyiceberg"])."""
    start = time.perf_counter()
    table = data.catalog(lake).load_table(f"{zone}.{name}")
    rows = table.scan(row_filter=row_filter).to_arrow()
    if reads is not None:
        reads["pyiceberg"] = reads.get("pyiceberg", 0.0) + time.perf_counter() - start
    return rows


def latest_date(lake: Path, zone: str, name: str, ds: dt.date) -> dt.date:
    """The latest date with rows on or before ds (from the table's metadata, as the jobs do)."""
    parts = data.catalog(lake).load_table(f"{zone}.{name}").inspect.partitions().to_pylist()
    return max(p["partition"]["dt"] for p in parts if p["record_count"] > 0 and p["partition"]["dt"] <= ds)


def _register_sales(con, lake: Path, ds: dt.date, since: dt.date | None, reads) -> None:
    where = f"dt <= '{ds}'" + (f" AND dt >= '{since}'" if since else "")
    con.register("sales", read_table(lake, "processed", "sales", where, reads))


def _register_regions(con, lake: Path, ds: dt.date, reads) -> None:
    snapshot = latest_date(lake, "processed", "customers", ds)
    con.register("customers", read_table(lake, "processed", "customers", f"dt = '{snapshot}'", reads))


REGIONS = "(SELECT customer_id, min(region) AS region FROM customers GROUP BY customer_id)"


def customer_features(con, lake: Path, ds: dt.date, out: Path, reads: dict[str, float] | None = None) -> int:
    _register_sales(con, lake, ds, None, reads)
    _register_regions(con, lake, ds, reads)
    con.register("graph", read_table(lake, "curated", "referral_graph", f"dt = '{ds}'", reads))
    day = "CAST(transaction_ts AS DATE)"
    vector = ", ".join(f"coalesce(CAST({c} AS DOUBLE), 0.0)" for c in FEATURE_COLUMNS)
    sql = f"""
    COPY (
      WITH s AS (
        SELECT * FROM sales
        QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY {DEDUP_ORDER}) = 1
      ),
      per AS (
        SELECT customer_id, sum(total_amount) AS lifetime_value,
               count(transaction_id) AS purchase_frequency, avg(quantity) AS avg_basket_size,
               stddev_samp(CAST(total_amount AS DOUBLE)) AS spend_volatility,
               max({day}) AS last_purchase_date
        FROM s WHERE customer_id IS NOT NULL AND {day} <= DATE '{ds}'
        GROUP BY customer_id
      ),
      f AS (
        SELECT per.customer_id, r.region, lifetime_value, purchase_frequency, avg_basket_size,
               spend_volatility, last_purchase_date,
               CAST(DATE '{ds}' - last_purchase_date AS INTEGER) AS recency_days,
               g.pagerank, g.community_id
        FROM per
        LEFT JOIN {REGIONS} r USING (customer_id)
        LEFT JOIN (SELECT customer_id, pagerank, community_id FROM graph) g USING (customer_id)
      )
      SELECT *, [{vector}] AS features FROM f
    ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)
    """
    _run(con, sql)
    for view in ("sales", "customers", "graph"):
        con.unregister(view)
    return _run(con, f"SELECT count(*) FROM read_parquet('{out}')")[0][0]


def feature_correlation(con, features: Path, out: Path) -> int:
    """36 rows (every ordered pair); null where fewer than two rows or a zero variance."""
    pairs, aggregates = [], []
    for i, a in enumerate(FEATURE_COLUMNS):
        for b in FEATURE_COLUMNS[i:]:
            key = f"{a}__{b}"
            x, y = f"CAST({a} AS DOUBLE)", f"CAST({b} AS DOUBLE)"
            both = f"{a} IS NOT NULL AND {b} IS NOT NULL"
            aggregates.append(
                f"CASE WHEN count(*) FILTER ({both}) >= 2 AND stddev_samp({x}) FILTER ({both}) > 0 "
                f'AND stddev_samp({y}) FILTER ({both}) > 0 THEN corr({x}, {y}) END AS "{key}"'
            )
    select = ", ".join(aggregates)
    _run(con, f"CREATE OR REPLACE TEMP TABLE _corr AS SELECT {select} FROM read_parquet('{features}')")
    for a in FEATURE_COLUMNS:
        for b in FEATURE_COLUMNS:
            i, j = FEATURE_COLUMNS.index(a), FEATURE_COLUMNS.index(b)
            key = f"{a}__{b}" if i <= j else f"{b}__{a}"
            pairs.append(f"SELECT '{a}' AS feature_a, '{b}' AS feature_b, \"{key}\" AS pearson FROM _corr")
    _run(con, f"COPY ({' UNION ALL '.join(pairs)}) TO '{out}' (FORMAT parquet)")
    return len(pairs)


def sales_rolling(con, lake: Path, ds: dt.date, out: Path, reads: dict[str, float] | None = None) -> int:
    since = ds - dt.timedelta(days=29)
    _register_sales(con, lake, ds, since, reads)
    _register_regions(con, lake, ds, reads)
    on_ds = f"dt = DATE '{ds}'"
    sql = f"""
    COPY (
      WITH w AS (
        SELECT * FROM sales
        QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY {DEDUP_ORDER}) = 1
      )
      SELECT r.region, DATE '{ds}' AS date,
             coalesce(sum(total_amount) FILTER ({on_ds}), 0) AS daily_amount,
             count(*) FILTER ({on_ds}) AS daily_count,
             sum(total_amount) AS rolling_30d_sum, count(*) AS rolling_30d_count,
             CAST(sum(total_amount) AS DOUBLE) / count(*) AS rolling_30d_avg
      FROM w LEFT JOIN {REGIONS} r USING (customer_id)
      GROUP BY r.region
    ) TO '{out}' (FORMAT parquet)
    """
    _run(con, sql)
    for view in ("sales", "customers"):
        con.unregister(view)
    return _run(con, f"SELECT count(*) FROM read_parquet('{out}')")[0][0]
