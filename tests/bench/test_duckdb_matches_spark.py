"""The benchmark's DuckDB twin of `features` + `sales_rolling` computes what the Spark jobs compute.

Figure 2 compares their speed; that only means something if both produce the same rows. Here
both run on a tiny generated lake of Iceberg tables (bench/data.py, written with pyiceberg) and
every output row must agree; the money totals are also checked against a plain pyarrow
recomputation of the generated sales, read from the table's data files without Iceberg.
"""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench import data, duck
from bench.fig_features import DS, compare

ROWS = 3_000


@pytest.fixture(scope="module")
def outputs(spark, tmp_path_factory):
    from spark_jobs import features, sales_rolling, tables

    root = tmp_path_factory.mktemp("bench_lake")
    lake = root / "lake"
    written = data.sales_lake(lake, ROWS, DS, seed=3)
    args = argparse.Namespace(ds=DS, lake=data.lake_uri(lake))
    session = tables.bind(spark, args.lake)
    features.run(session, args)
    sales_rolling.run(session, args)
    out = root / "duckdb"
    out.mkdir()
    con = duck.connect(threads=2)
    duck.customer_features(con, lake, DS, out / "customer_features.parquet")
    duck.feature_correlation(con, out / "customer_features.parquet", out / "feature_correlation.parquet")
    duck.sales_rolling(con, lake, DS, out / "sales_rolling_30d.parquet")
    con.close()
    return lake, out, written


def _generated_sales(lake) -> pa.Table:
    """Every sales row as generated: the Parquet files under the table's data folder (a new lake
    only ever appended to, so every file there is live), read with pyarrow alone: no catalog, no
    Iceberg metadata."""
    files = sorted((lake / "warehouse" / "processed" / "sales" / "data").glob("dt=*/*.parquet"))
    assert files
    columns = ["transaction_id", "total_amount", "dt"]
    table = pa.concat_tables(pq.ParquetFile(path).read(columns=columns) for path in files)
    return table.append_column("day", pc.cast(table.column("dt"), pa.string()))


def _distinct_sales(lake, since: dt.date | None = None):
    """The generated sales with dt in [since, DS], one row per transaction_id (re-deliveries are
    exact copies, so any copy's amount is the amount)."""
    table = _generated_sales(lake)
    keep = pc.less_equal(table.column("day"), str(DS))
    if since is not None:
        keep = pc.and_(keep, pc.greater_equal(table.column("day"), str(since)))
    return table.filter(keep).group_by("transaction_id").aggregate([("total_amount", "min")])


def test_every_output_row_agrees_between_spark_and_duckdb(outputs):
    lake, out, _ = outputs
    result = compare(lake, out)
    assert result["problems"] == []
    assert result["agree"]
    assert result["customer_features"]["rows"] > 100
    assert result["feature_correlation"]["rows"] == 36


def test_lifetime_value_total_is_the_sum_of_the_distinct_generated_sales(outputs):
    lake, out, written = outputs
    assert _generated_sales(lake).num_rows == written["sales_rows_with_replays"] > ROWS  # replays there
    sales = _distinct_sales(lake)
    assert sales.num_rows == ROWS  # the replays were collapsed, none lost
    expected = pc.sum(sales.column("total_amount_min")).as_py()
    result = compare(lake, out)["customer_features"]
    assert Decimal(str(result["spark_sum"])) == expected
    assert Decimal(str(result["duckdb_sum"])) == expected


def test_rolling_window_total_is_the_sum_of_the_last_30_days_of_distinct_sales(outputs):
    lake, out, _ = outputs
    # the window is applied before deduplication: a re-delivery inside it counts once there
    sales = _distinct_sales(lake, since=DS - dt.timedelta(days=29))
    expected = pc.sum(sales.column("total_amount_min")).as_py()
    result = compare(lake, out)["sales_rolling_30d"]
    assert Decimal(str(result["spark_sum"])) == expected
    assert Decimal(str(result["duckdb_sum"])) == expected
