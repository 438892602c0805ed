"""Figure 6's two ways of replacing a date: the old Parquet swap (reimplemented in the benchmark)
replaces exactly the directory, and the figure's check tells equal results from different ones."""

from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from bench import commit_ways, data
from bench.commit_ways import DS


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
    first = commit_ways.parquet_swap(df.limit(100), plake, DS)
    assert first["rows"] == 100
    assert len(_ids(target)) == 100
    everything = {r.transaction_id for r in df.select("transaction_id").collect()}
    second = commit_ways.parquet_swap(df, plake, DS, "zstd")
    assert second["rows"] == 400
    assert _ids(target) == everything  # the first 100 are not there twice: the directory was replaced
    assert not list((parquet_lake / "_staging" / "processed" / "sales").iterdir())


def test_the_check_agrees_when_both_hold_the_generated_rows_and_only_then(setup):
    from pyspark.sql import functions as F

    df, source, lake, parquet_lake = setup
    commit_ways.parquet_swap(df, data.lake_uri(parquet_lake), DS)
    written = commit_ways.iceberg_commit(df.withColumn("dt", F.lit(DS)), DS)
    assert written["rows"] == 400
    good = commit_ways.check(lake, parquet_lake, DS, source)
    assert good["agree"], good
    assert good["iceberg"] == good["parquet_swap"] == good["generated"]

    commit_ways.iceberg_commit(df.limit(399).withColumn("dt", F.lit(DS)), DS)
    bad = commit_ways.check(lake, parquet_lake, DS, source)
    assert not bad["agree"]
    assert bad["iceberg"]["rows"] == 399


def test_an_iceberg_way_writes_with_its_own_options_and_counts_the_files_of_the_date(setup):
    from pyspark.sql import functions as F

    from spark_jobs import table_writes

    df, _, lake, _ = setup
    rows = df.repartition(3).withColumn("dt", F.lit(DS))
    jobs = dict(table_writes.WRITE_OPTIONS)
    # as the jobs write: 400 rows are far below the advisory size, one task, one file
    written = commit_ways.iceberg_commit(rows, DS)
    assert (written["rows"], written["files"], len(written["file_mb"])) == (400, 1, 1)
    # distribution none: no shuffle, a file for each of the 3 input partitions
    spread = commit_ways.iceberg_commit(rows, DS, commit_ways.VARIANTS["iceberg_none"])
    assert (spread["rows"], spread["files"]) == (400, 3)
    files = data.catalog(lake).load_table("processed.sales").scan(row_filter=f"dt = '{DS}'").plan_files()
    assert len(files) == 3
    assert jobs == table_writes.WRITE_OPTIONS  # the jobs' options are back after each way
