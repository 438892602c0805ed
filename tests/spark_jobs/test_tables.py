"""The Iceberg table layer every job writes through: one commit per job and dates, exactly its dates.

Spark writes through `spark_jobs.tables`; every assertion reads back through pyiceberg on the
lake's SQLite catalog (tests/harness/lake_tables.py), the way any reader of the lake would.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StructField, StructType

from spark_jobs import table_reads, table_writes, tables
from spark_jobs.common import JobInputError
from spark_jobs.schemas import PROCESSED
from tests.harness.lake_files import lake_dir
from tests.harness.lake_tables import catalog, dates_with_rows, load, read_table, seed_rows, snapshot_ids

D1, D2, D3 = dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)
CUSTOMERS = PROCESSED["customers"]


def _customers(session, day, *ids):
    return session.createDataFrame([(i, "EU", D1, day) for i in ids], tables.with_dt(CUSTOMERS))


def _ids(lake, ds):
    return sorted(read_table(lake, "processed", "customers", ds)["customer_id"])


def test_the_table_is_created_where_the_contract_says_and_pyiceberg_reads_it(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a", "b"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )

    # LAKE/_catalog/iceberg.db, warehouse LAKE/warehouse/<zone>/<name>, partitioned by dt
    root = lake_dir(lake)
    assert (root / "_catalog" / "iceberg.db").is_file()
    table = load(lake, "processed", "customers")
    assert urlparse(table.location()).path == f"{root}/warehouse/processed/customers"
    assert [f.name for f in table.spec().fields] == ["dt"]
    assert [f.name for f in table.schema().fields] == [*CUSTOMERS.fieldNames(), "dt"]
    assert table.format_version == 2
    assert table.properties["write.wap.enabled"] == "true"
    assert _ids(lake, D1) == ["a", "b"]
    with sqlite3.connect(root / "_catalog" / "iceberg.db") as db:  # the JDBC catalog's own row
        assert db.execute("SELECT table_namespace, table_name FROM iceberg_tables").fetchall() == [
            ("processed", "customers")
        ]


def test_replacing_a_date_is_one_commit_that_leaves_other_dates_untouched(lake_spark, lake):
    write = lambda day, *ids: table_writes.replace_dates(  # noqa: E731
        _customers(lake_spark, day, *ids), "processed", "customers", CUSTOMERS, [day], job="t"
    )
    write(D1, "a", "b")
    write(D2, "x")
    before = len(snapshot_ids(lake, "processed", "customers"))
    written = write(D1, "c")

    assert len(snapshot_ids(lake, "processed", "customers")) == before + 1
    assert written.rows == {D1: 1}
    assert written.snapshot_id == load(lake, "processed", "customers").current_snapshot().snapshot_id
    assert _ids(lake, D1) == ["c"]
    assert _ids(lake, D2) == ["x"]


def test_a_rerun_of_the_same_date_gives_the_same_table_content(lake_spark, lake):
    for _ in range(2):
        table_writes.replace_dates(
            _customers(lake_spark, D1, "a", "b"), "processed", "customers", CUSTOMERS, [D1], job="t"
        )
    assert _ids(lake, D1) == ["a", "b"]


def test_a_write_that_fails_in_spark_commits_nothing(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a", "b"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    before = snapshot_ids(lake, "processed", "customers")
    failing = _customers(lake_spark, D1, "c", "boom").withColumn(
        "region", F.when(F.col("customer_id") == "boom", F.raise_error(F.lit("injected"))).otherwise("EU")
    )

    with pytest.raises(Exception, match="injected"):
        table_writes.replace_dates(failing, "processed", "customers", CUSTOMERS, [D1], job="t")

    assert snapshot_ids(lake, "processed", "customers") == before
    assert _ids(lake, D1) == ["a", "b"]


def test_a_row_outside_the_dates_written_fails_the_write_and_commits_nothing(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    stray = _customers(lake_spark, D1, "b").unionByName(_customers(lake_spark, D3, "stray"))

    with pytest.raises(Exception, match=r"has dt 2024-06-03, not in 2024-06-01"):
        table_writes.replace_dates(stray, "processed", "customers", CUSTOMERS, [D1], job="t")
    assert dates_with_rows(lake, "processed", "customers") == [D1]
    assert _ids(lake, D1) == ["a"]


def test_a_range_is_one_commit_and_an_empty_day_in_it_reads_as_written(lake_spark, lake):
    rows = _customers(lake_spark, D1, "a").unionByName(_customers(lake_spark, D3, "c"))
    written = table_writes.replace_dates(
        rows, "processed", "customers", CUSTOMERS, [D1, D2, D3], job="ingest"
    )

    assert written.rows == {D1: 1, D2: 0, D3: 1}
    assert len(snapshot_ids(lake, "processed", "customers")) == 1
    summary = load(lake, "processed", "customers").current_snapshot().summary
    assert (summary["pipeline.job"], summary["pipeline.dates"]) == ("ingest", "2024-06-01..2024-06-03")
    assert dates_with_rows(lake, "processed", "customers") == [D1, D3]
    # D2 has no rows, but the commit says ingest wrote it: a day without data, not a missing day
    assert table_reads.written_dates(lake_spark, "processed", "customers") == {D1, D2, D3}
    assert table_reads.read_date(lake_spark, "processed", "customers", D2).count() == 0
    with pytest.raises(JobInputError, match="nothing written for 2024-06-04"):
        table_reads.read_date(lake_spark, "processed", "customers", dt.date(2024, 6, 4))


def _files(lake, ds):
    """The date's data files in the current snapshot, as pyiceberg plans a scan of it."""
    return load(lake, "processed", "customers").scan(row_filter=f"dt = '{ds}'").plan_files()


def test_a_large_date_is_written_by_every_core_and_small_dates_are_one_file_each(
    lake_spark, lake, monkeypatch
):
    # The jobs' write options with the advisory size scaled to this test's data (16 KB of shuffled
    # rows in place of 64 MB): Iceberg's own size would write the date with one task, distribution
    # `none` would write a file for every input partition and date.
    monkeypatch.setitem(table_writes.WRITE_OPTIONS, "advisory-partition-size", str(16 * 1024))
    ids = F.format_string("c%06d", F.col("id"))
    big = lake_spark.range(0, 20_000, numPartitions=4).select(
        ids.alias("customer_id"),
        F.lit("EU").alias("region"),
        F.lit(D1).alias("signup_date"),
        F.lit(D1).alias("dt"),
    )
    table_writes.replace_dates(big, "processed", "customers", CUSTOMERS, [D1], job="t")
    files = _files(lake, D1)
    # one piece per map task at most (4), each a file of its own; one task on a 2-core session
    # would be one file
    assert len(files) >= 2, [f.file.file_path for f in files]
    assert sum(f.file.record_count for f in files) == 20_000
    assert _ids(lake, D1) == [f"c{i:06d}" for i in range(20_000)]

    # three dates of a few rows each, every input partition holding rows of every date
    small = lake_spark.range(0, 30, numPartitions=4).select(
        ids.alias("customer_id"),
        F.lit("EU").alias("region"),
        F.lit(D1).alias("signup_date"),
        F.date_add(F.lit(D1), (F.col("id") % 3).cast("int")).alias("dt"),
    )
    table_writes.replace_dates(small, "processed", "customers", CUSTOMERS, [D1, D2, D3], job="t")
    assert [len(_files(lake, day)) for day in (D1, D2, D3)] == [1, 1, 1]
    assert [len(_ids(lake, day)) for day in (D1, D2, D3)] == [10, 10, 10]


def test_an_empty_frame_clears_a_date_that_had_rows(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    written = table_writes.replace_dates(
        _customers(lake_spark, D1), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    assert written.rows == {D1: 0}
    assert _ids(lake, D1) == []


def test_the_dates_written_must_be_one_unbroken_range(lake_spark, lake):
    with pytest.raises(ValueError, match="unbroken range"):
        table_writes.replace_dates(
            _customers(lake_spark, D1, "a"), "processed", "customers", CUSTOMERS, [D1, D3], job="t"
        )


def test_a_column_the_code_added_is_added_to_the_table_and_old_snapshots_still_read(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    old = load(lake, "processed", "customers").current_snapshot().snapshot_id
    wider = StructType([*CUSTOMERS.fields, StructField("tier", IntegerType())])
    frame = lake_spark.createDataFrame([("b", "EU", D1, 2, D2)], tables.with_dt(wider))

    table_writes.replace_dates(frame, "processed", "customers", wider, [D2], job="t")

    table = load(lake, "processed", "customers")
    assert "tier" in table.schema().column_names
    files = lake_dir(lake) / "warehouse" / "processed" / "customers" / "data"
    assert len(list(files.rglob("*.parquet"))) == 2  # history was not rewritten
    now = table.scan().to_pandas().sort_values("customer_id")
    assert now["tier"].tolist()[0] != now["tier"].tolist()[0]  # a's tier: NaN (null), not invented
    assert now["tier"].tolist()[1] == 2
    before = table.scan(snapshot_id=old).to_pandas()
    assert before["customer_id"].tolist() == ["a"]


def test_a_table_whose_columns_drifted_fails_the_job_before_anything_is_written(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    before = snapshot_ids(lake, "processed", "customers")
    retyped = StructType([StructField("customer_id", IntegerType()), *CUSTOMERS.fields[1:]])
    frame = lake_spark.createDataFrame([(1, "EU", D1, D2)], tables.with_dt(retyped))

    with pytest.raises(
        tables.TableSchemaError, match=r"customer_id: table string, code int.*nothing was written"
    ):
        table_writes.replace_dates(frame, "processed", "customers", retyped, [D2], job="t")
    fewer = StructType(CUSTOMERS.fields[:2])
    with pytest.raises(tables.TableSchemaError, match="signup_date: in the table, not in the code"):
        table_writes.replace_dates(
            lake_spark.createDataFrame([("z", "EU", D2)], tables.with_dt(fewer)),
            "processed",
            "customers",
            fewer,
            [D2],
            job="t",
        )
    assert snapshot_ids(lake, "processed", "customers") == before


def test_a_table_the_catalog_lost_is_never_recreated_over_its_files(spark, lake):
    seed_rows(spark, lake, "processed", "customers", [("a", "EU", D1, D1)])
    (lake_dir(lake) / "_catalog" / "iceberg.db").unlink()  # the catalog is gone, the files are not

    with pytest.raises(tables.TableSchemaError, match="catalog lost it"):
        seed_rows(spark, lake, "processed", "customers", [("b", "EU", D1, D2)])
    assert not catalog(lake).table_exists("processed.customers")


def test_all_or_none_takes_back_the_first_commit_when_the_second_fails(lake_spark, lake):
    table_writes.replace_dates(
        _customers(lake_spark, D1, "a"), "processed", "customers", CUSTOMERS, [D1], job="t"
    )
    first_before = snapshot_ids(lake, "processed", "customers")

    def boom():
        raise OSError("injected: second write failed")

    with pytest.raises(OSError, match="injected"):
        table_writes.replace_all_or_none(
            lake_spark,
            [
                lambda: table_writes.replace_dates(
                    _customers(lake_spark, D1, "new"), "processed", "customers", CUSTOMERS, [D1], job="t"
                ),
                boom,
            ],
        )
    table = load(lake, "processed", "customers")
    assert table.current_snapshot().snapshot_id == first_before[-1]
    assert _ids(lake, D1) == ["a"]


def test_a_second_session_on_another_lake_sees_its_own_catalog(spark, tmp_path):
    lakes = []
    for name in ("one", "two"):
        root = Path(tmp_path / name)
        root.mkdir()
        lakes.append(root.as_uri())
    seed_rows(spark, lakes[0], "processed", "customers", [("a", "EU", D1, D1)])
    seed_rows(spark, lakes[1], "processed", "customers", [("b", "EU", D1, D1), ("c", "EU", D1, D1)])
    assert _ids(lakes[0], D1) == ["a"]
    assert _ids(lakes[1], D1) == ["b", "c"]
    assert tables.bind(spark, lakes[0]).table("lake.processed.customers").count() == 1


def test_identifiers_refuse_names_that_are_not_plain_words(lake_spark):
    with pytest.raises(ValueError, match="not a table"):
        tables.identifier(lake_spark, "processed", "customers; DROP TABLE x")
    with pytest.raises(ValueError, match="not a table zone"):
        tables.identifier(lake_spark, "landing", "sales")
    assert tables.identifier(lake_spark, "curated", "stock_daily") == "lake.curated.stock_daily"
