"""The `features` and `sales_rolling` jobs' computation in DuckDB, on the same Parquet lake.

Same rules as spark_jobs/features.py and spark_jobs/sales_rolling.py: one row per
transaction_id (the copy on the earliest dt), sale date = UTC date of transaction_ts for
features and `dt` for the rolling window, region = min(region) per customer of the latest
customers snapshot, null features as 0.0 in the vector, correlation over what was written.
"""

# SQL text here is built from code constants, dates and generated paths only, never from input.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from spark_jobs.schemas import FEATURE_COLUMNS

DEDUP_ORDER = "dt, transaction_ts, total_amount, customer_id, product_id, quantity"


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _sales(lake: Path, ds: dt.date, since: dt.date | None = None) -> str:
    where = f"dt <= DATE '{ds}'" + (f" AND dt >= DATE '{since}'" if since else "")
    return (
        "(SELECT * REPLACE (CAST(dt AS DATE) AS dt) FROM "
        f"read_parquet('{lake}/processed/sales/dt=*/*.parquet', "
        f"hive_partitioning = true, hive_types = {{'dt': DATE}}) WHERE {where})"
    )


def _latest(lake: Path, dataset: str, ds: dt.date) -> Path:
    dates = sorted(p.name[3:] for p in (lake / "processed" / dataset).glob("dt=*") if p.name[3:] <= str(ds))
    return lake / "processed" / dataset / f"dt={dates[-1]}"


def _regions(lake: Path, ds: dt.date) -> str:
    path = _latest(lake, "customers", ds)
    return (
        f"(SELECT customer_id, min(region) AS region FROM read_parquet('{path}/*.parquet') "
        "GROUP BY customer_id)"
    )


def customer_features(con, lake: Path, ds: dt.date, out: Path) -> int:
    graph = lake / "curated" / "referral_graph" / f"dt={ds}"
    day = "CAST(transaction_ts AS DATE)"
    vector = ", ".join(f"coalesce(CAST({c} AS DOUBLE), 0.0)" for c in FEATURE_COLUMNS)
    sql = f"""
    COPY (
      WITH s AS (
        SELECT * FROM {_sales(lake, ds)}
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
        LEFT JOIN {_regions(lake, ds)} r USING (customer_id)
        LEFT JOIN (SELECT customer_id, pagerank, community_id FROM read_parquet('{graph}/*.parquet')) g
          USING (customer_id)
      )
      SELECT *, [{vector}] AS features FROM f
    ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)
    """
    con.execute(sql)
    return con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]


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
    con.execute(f"CREATE OR REPLACE TEMP TABLE _corr AS SELECT {select} FROM read_parquet('{features}')")
    for a in FEATURE_COLUMNS:
        for b in FEATURE_COLUMNS:
            i, j = FEATURE_COLUMNS.index(a), FEATURE_COLUMNS.index(b)
            key = f"{a}__{b}" if i <= j else f"{b}__{a}"
            pairs.append(f"SELECT '{a}' AS feature_a, '{b}' AS feature_b, \"{key}\" AS pearson FROM _corr")
    con.execute(f"COPY ({' UNION ALL '.join(pairs)}) TO '{out}' (FORMAT parquet)")
    return len(pairs)


def sales_rolling(con, lake: Path, ds: dt.date, out: Path) -> int:
    since = ds - dt.timedelta(days=29)
    on_ds = f"dt = DATE '{ds}'"
    sql = f"""
    COPY (
      WITH w AS (
        SELECT * FROM {_sales(lake, ds, since)}
        QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY {DEDUP_ORDER}) = 1
      )
      SELECT r.region, DATE '{ds}' AS date,
             coalesce(sum(total_amount) FILTER ({on_ds}), 0) AS daily_amount,
             count(*) FILTER ({on_ds}) AS daily_count,
             sum(total_amount) AS rolling_30d_sum, count(*) AS rolling_30d_count,
             CAST(sum(total_amount) AS DOUBLE) / count(*) AS rolling_30d_avg
      FROM w LEFT JOIN {_regions(lake, ds)} r USING (customer_id)
      GROUP BY r.region
    ) TO '{out}' (FORMAT parquet)
    """
    con.execute(sql)
    return con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
