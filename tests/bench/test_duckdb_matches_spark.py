"""The benchmark's DuckDB twin of `features` + `sales_rolling` computes what the Spark jobs compute.

Figure 2 compares their speed; that only means something if both produce the same rows. Here
both run on a tiny generated lake and every output row must agree; the money totals are also
checked against a plain pyarrow recomputation of the generated sales.
"""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from bench import data, duck
from bench.fig_features import DS, compare

ROWS = 3_000


@pytest.fixture(scope="module")
def outputs(spark, tmp_path_factory):
    from spark_jobs import features, sales_rolling

    root = tmp_path_factory.mktemp("bench_lake")
    lake = root / "lake"
    data.sales_lake(lake, ROWS, DS, seed=3)
    args = argparse.Namespace(ds=DS, lake=lake.resolve().as_uri())
    features.run(spark, args)
    sales_rolling.run(spark, args)
    out = root / "duckdb"
    out.mkdir()
    con = duck.connect(threads=2)
    duck.customer_features(con, lake, DS, out / "customer_features.parquet")
    duck.feature_correlation(con, out / "customer_features.parquet", out / "feature_correlation.parquet")
    duck.sales_rolling(con, lake, DS, out / "sales_rolling_30d.parquet")
    con.close()
    return lake, out


def _distinct_sales(lake, since: dt.date | None = None):
    """The generated sales with dt in [since, DS], one row per transaction_id (re-deliveries are
    exact copies, so any copy's amount is the amount)."""
    table = pads.dataset(lake / "processed" / "sales", format="parquet", partitioning="hive").to_table()
    days = pc.cast(table.column("dt"), "string")
    keep = pc.less_equal(days, str(DS))
    if since is not None:
        keep = pc.and_(keep, pc.greater_equal(days, str(since)))
    return table.filter(keep).group_by("transaction_id").aggregate([("total_amount", "min")])


def test_every_output_row_agrees_between_spark_and_duckdb(outputs):
    lake, out = outputs
    result = compare(lake, out)
    assert result["problems"] == []
    assert result["agree"]
    assert result["customer_features"]["rows"] > 100
    assert result["feature_correlation"]["rows"] == 36


def test_lifetime_value_total_is_the_sum_of_the_distinct_generated_sales(outputs):
    lake, out = outputs
    sales = _distinct_sales(lake)
    assert sales.num_rows == ROWS  # the replays were collapsed, none lost
    expected = pc.sum(sales.column("total_amount_min")).as_py()
    result = compare(lake, out)["customer_features"]
    assert Decimal(str(result["spark_sum"])) == expected
    assert Decimal(str(result["duckdb_sum"])) == expected


def test_rolling_window_total_is_the_sum_of_the_last_30_days_of_distinct_sales(outputs):
    lake, out = outputs
    # the window is applied before deduplication: a re-delivery inside it counts once there
    sales = _distinct_sales(lake, since=DS - dt.timedelta(days=29))
    expected = pc.sum(sales.column("total_amount_min")).as_py()
    result = compare(lake, out)["sales_rolling_30d"]
    assert Decimal(str(result["spark_sum"])) == expected
    assert Decimal(str(result["duckdb_sum"])) == expected
