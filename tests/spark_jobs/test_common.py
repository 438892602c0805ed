"""The lake I/O every job relies on: atomic partition replacement and date handling."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark_jobs.common import (
    JobInputError,
    date_range,
    list_partitions,
    normalize_lake,
    parse_ds,
    partition_path,
    read_history,
    write_partition,
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
