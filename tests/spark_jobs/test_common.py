"""The lake I/O every job relies on: atomic partition replacement and date handling."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from spark_jobs import common
from spark_jobs.common import (
    JobInputError,
    date_range,
    list_partitions,
    normalize_lake,
    parse_ds,
    partition_path,
    read_history,
    write_partition,
    write_partitions,
)
from spark_jobs.schemas import PROCESSED
from tests.conftest import lake_dir

D1, D2 = dt.date(2024, 6, 1), dt.date(2024, 6, 2)
CUSTOMERS = PROCESSED["customers"]


def _customers(spark, *ids):
    return spark.createDataFrame([(i, "EU", D1) for i in ids], CUSTOMERS)


def test_rewriting_a_partition_replaces_it_and_leaves_other_dates_untouched(spark, lake):
    write_partition(_customers(spark, "a", "b"), lake, "processed", "customers", D1)
    write_partition(_customers(spark, "x"), lake, "processed", "customers", D2)
    rows = write_partition(_customers(spark, "c"), lake, "processed", "customers", D1)

    assert rows == 1
    d1 = spark.read.parquet(partition_path(lake, "processed", "customers", D1))
    d2 = spark.read.parquet(partition_path(lake, "processed", "customers", D2))
    assert sorted(r.customer_id for r in d1.collect()) == ["c"]
    assert sorted(r.customer_id for r in d2.collect()) == ["x"]


def test_a_write_that_fails_leaves_the_previous_partition_intact_and_no_staging_debris(spark, lake):
    write_partition(_customers(spark, "a", "b"), lake, "processed", "customers", D1)
    failing = _customers(spark, "c", "boom").withColumn(
        "region", F.when(F.col("customer_id") == "boom", F.raise_error(F.lit("injected"))).otherwise("EU")
    )

    with pytest.raises(Exception, match="injected"):
        write_partition(failing, lake, "processed", "customers", D1)

    kept = spark.read.parquet(partition_path(lake, "processed", "customers", D1))
    assert sorted(r.customer_id for r in kept.collect()) == ["a", "b"]
    staging = lake_dir(lake) / "_staging" / "processed" / "customers"
    assert list(staging.iterdir()) == []


def test_an_empty_frame_still_writes_a_readable_empty_partition(spark, lake):
    write_partition(_customers(spark, "a"), lake, "processed", "customers", D1)
    rows = write_partition(_customers(spark).limit(0), lake, "processed", "customers", D1)

    assert rows == 0
    back = spark.read.parquet(partition_path(lake, "processed", "customers", D1))
    assert back.count() == 0
    assert back.schema.fieldNames() == CUSTOMERS.fieldNames()


D3, D4 = dt.date(2024, 6, 3), dt.date(2024, 6, 4)


def _customers_by_day(spark, pairs):
    """(customer_id, dt) pairs as processed customers rows with a `dt` column."""
    schema = StructType([*CUSTOMERS.fields, StructField("dt", DateType())])  # .add would change CUSTOMERS
    return spark.createDataFrame([(cid, "EU", D1, day) for cid, day in pairs], schema)


def _ids(spark, lake, day):
    return sorted(
        r.customer_id
        for r in spark.read.parquet(partition_path(lake, "processed", "customers", day)).collect()
    )


def _tree(lake, zone="processed"):
    """Every file under a zone, with its bytes: what 'left intact' must preserve exactly."""
    root = lake_dir(lake) / zone
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _staging_leftovers(lake):
    root = lake_dir(lake) / "_staging"
    return [] if not root.exists() else [p for p in root.rglob("*") if p.is_file() or p.name.startswith("dt")]


def test_write_partitions_writes_each_date_once_with_empty_partitions_for_dates_without_rows(spark, lake):
    write_partition(_customers(spark, "old"), lake, "processed", "customers", D2)
    write_partition(_customers(spark, "other"), lake, "processed", "customers", D4)
    df = _customers_by_day(spark, [("a", D1), ("b", D1), ("c", D3)])

    rows = write_partitions(df, lake, "processed", "customers", [D1, D2, D3])

    assert rows == {D1: 2, D2: 0, D3: 1}
    assert [_ids(spark, lake, d) for d in (D1, D2, D3, D4)] == [["a", "b"], [], ["c"], ["other"]]
    empty = spark.read.parquet(partition_path(lake, "processed", "customers", D2))
    assert empty.schema.fieldNames() == CUSTOMERS.fieldNames()  # no `dt` column in the files
    assert list_partitions(spark, lake, "processed", "customers") == [D1, D2, D3, D4]
    assert _staging_leftovers(lake) == []


def test_write_partitions_with_no_rows_at_all_writes_every_date_empty(spark, lake):
    rows = write_partitions(_customers_by_day(spark, []), lake, "processed", "customers", [D1, D2])

    assert rows == {D1: 0, D2: 0}
    assert [_ids(spark, lake, d) for d in (D1, D2)] == [[], []]


def test_write_partitions_that_fails_in_spark_leaves_every_partition_intact_and_no_staging(spark, lake):
    write_partitions(
        _customers_by_day(spark, [("a", D1), ("b", D2)]), lake, "processed", "customers", [D1, D2]
    )
    before = _tree(lake)
    failing = _customers_by_day(spark, [("c", D1), ("boom", D2)]).withColumn(
        "region", F.when(F.col("customer_id") == "boom", F.raise_error(F.lit("injected"))).otherwise("EU")
    )

    with pytest.raises(Exception, match="injected"):
        write_partitions(failing, lake, "processed", "customers", [D1, D2])

    assert _tree(lake) == before
    assert _staging_leftovers(lake) == []


class _RenameOfStagedDayFails:
    """A Hadoop FileSystem whose rename of one staged date into the lake fails (an S3 hiccup)."""

    def __init__(self, fs, day):
        self._fs, self._day = fs, day

    def rename(self, src, dst):
        name = src.toString()
        if "/_staging/" in name and name.endswith(f"/dt={self._day}"):
            return False
        return self._fs.rename(src, dst)

    def __getattr__(self, name):
        return getattr(self._fs, name)


def test_a_swap_failing_midway_puts_back_the_dates_already_swapped(spark, lake, monkeypatch):
    write_partitions(
        _customers_by_day(spark, [("a", D1), ("b", D2)]), lake, "processed", "customers", [D1, D2]
    )
    before = _tree(lake)
    real = common._fs_path
    monkeypatch.setattr(
        common, "_fs_path", lambda s, uri: (lambda fs, p: (_RenameOfStagedDayFails(fs, D3), p))(*real(s, uri))
    )

    # D1 and D2 are swapped in before D3's rename fails; all three must end as they were
    new = _customers_by_day(spark, [("x", D1), ("y", D2), ("z", D3)])
    with pytest.raises(OSError, match=f"dt={D3}"):
        write_partitions(new, lake, "processed", "customers", [D1, D2, D3])
    monkeypatch.undo()

    assert _tree(lake) == before
    assert list_partitions(spark, lake, "processed", "customers") == [D1, D2]
    assert _staging_leftovers(lake) == []


def test_write_partitions_refuses_rows_of_a_date_it_was_not_asked_to_write(spark, lake):
    df = _customers_by_day(spark, [("a", D1), ("stray", D3)])

    with pytest.raises(ValueError, match=r"1 rows .* outside the dates"):
        write_partitions(df, lake, "processed", "customers", [D1, D2])

    assert list_partitions(spark, lake, "processed", "customers") == []
    assert _staging_leftovers(lake) == []


def test_read_history_reads_only_partitions_up_to_the_date_and_adds_dt(spark, lake):
    for day, cid in [(D1, "a"), (D2, "b"), (dt.date(2024, 6, 3), "c")]:
        write_partition(_customers(spark, cid), lake, "processed", "customers", day)

    got = read_history(spark, lake, "processed", "customers", D2, CUSTOMERS).select("customer_id", "dt")

    assertDataFrameEqual(got, [("a", D1), ("b", D2)])
    assert list_partitions(spark, lake, "processed", "customers")[-1] == dt.date(2024, 6, 3)


def test_read_history_without_any_partition_is_a_clear_input_error(spark, lake):
    with pytest.raises(JobInputError, match=r"no partition of .*processed/sales on or before 2024-06-01"):
        read_history(spark, lake, "processed", "sales", D1, PROCESSED["sales"])


@pytest.mark.parametrize("bad", ["2024-13-01", "2024-02-30", "24-01-01", "2024-01-01; rm -rf /", "", "today"])
def test_parse_ds_refuses_anything_but_a_real_calendar_date(bad):
    with pytest.raises(JobInputError):
        parse_ds(bad)


def test_parse_ds_accepts_a_leap_day():
    assert parse_ds("2024-02-29") == dt.date(2024, 2, 29)


def test_date_range_is_inclusive_and_refuses_reversed_ranges():
    assert date_range(D1, dt.date(2024, 6, 3)) == [D1, D2, dt.date(2024, 6, 3)]
    with pytest.raises(JobInputError, match="before"):
        date_range(D2, D1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("s3://bucket/prefix/", "s3://bucket/prefix"), ("file:///tmp/lake", "file:///tmp/lake")],
)
def test_normalize_lake_keeps_uris_and_strips_the_trailing_slash(given, expected):
    assert normalize_lake(given) == expected


def test_normalize_lake_turns_a_plain_path_into_an_absolute_file_uri(tmp_path):
    assert normalize_lake(str(tmp_path)) == tmp_path.resolve().as_uri()


@pytest.mark.parametrize("bad", ["http://x/y", "s3://bucket/a b", "s3://b/$(id)"])
def test_normalize_lake_refuses_other_schemes_and_shell_characters(bad):
    with pytest.raises(JobInputError):
        normalize_lake(bad)
