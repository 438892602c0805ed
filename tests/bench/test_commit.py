"""Figure 6's two ways of replacing a date: the old Parquet swap (reimplemented in the benchmark)
replaces exactly the directory, and the figure's check tells equal results from different ones."""

from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from bench import data, fig_commit
from bench.fig_commit import DS


@pytest.fixture
def setup(spark, tmp_path):
    from spark_jobs import tables

    source = tmp_path / "sales.parquet"
    data.one_day_of_sales(source, 400, DS)
    lake, parquet_lake = tmp_path / "lake", tmp_path / "parquet_lake"
    lake.mkdir()
    parquet_lake.mkdir()
    session = tables.bind(spark, data.lake_uri(lake))
    df = session.read.parquet(source.as_uri())
    return df, source, lake, parquet_lake


def _ids(directory) -> set[str]:
    return set(
        pads.dataset(directory, format="parquet").to_table(columns=["transaction_id"]).column(0).to_pylist()
    )


def test_the_parquet_swap_replaces_the_date_directory_and_leaves_nothing_staged(setup):
    df, _, _, parquet_lake = setup
    plake = data.lake_uri(parquet_lake)
    target = parquet_lake / "processed" / "sales" / f"dt={DS}"
    first = fig_commit.parquet_swap(df.limit(100), plake, DS)
    assert first["rows"] == 100
    assert len(_ids(target)) == 100
    everything = {r.transaction_id for r in df.select("transaction_id").collect()}
    second = fig_commit.parquet_swap(df, plake, DS, "zstd")
    assert second["rows"] == 400
    assert _ids(target) == everything  # the first 100 are not there twice: the directory was replaced
    assert not list((parquet_lake / "_staging" / "processed" / "sales").iterdir())


def test_the_check_agrees_when_both_hold_the_generated_rows_and_only_then(setup):
    from pyspark.sql import functions as F

    df, source, lake, parquet_lake = setup
    fig_commit.parquet_swap(df, data.lake_uri(parquet_lake), DS)
    written = fig_commit.iceberg_commit(df.withColumn("dt", F.lit(DS)), DS)
    assert written["rows"] == 400
    good = fig_commit.check(lake, parquet_lake, DS, source)
    assert good["agree"], good
    assert good["iceberg"] == good["parquet_swap"] == good["generated"]

    fig_commit.iceberg_commit(df.limit(399).withColumn("dt", F.lit(DS)), DS)
    bad = fig_commit.check(lake, parquet_lake, DS, source)
    assert not bad["agree"]
    assert bad["iceberg"]["rows"] == 399
