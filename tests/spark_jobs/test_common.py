"""What every job's command line relies on: dates, date ranges and lake URIs."""

from __future__ import annotations

import datetime as dt

import pytest

from spark_jobs.common import JobInputError, date_range, normalize_lake, parse_ds

D1, D2 = dt.date(2024, 6, 1), dt.date(2024, 6, 2)


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


def test_local_spark_runs_its_jvm_with_the_local_options_and_an_empty_setting_keeps_the_defaults(
    spark, monkeypatch
):
    from spark_jobs.common import LOCAL_JVM_OPTIONS, local_builder

    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    started_with = list(runtime.getInputArguments())
    assert set(LOCAL_JVM_OPTIONS.split()) <= set(started_with), started_with
    monkeypatch.setenv("SPARK_DRIVER_JAVA_OPTIONS", "")
    assert local_builder("probe")._options["spark.driver.extraJavaOptions"] == ""  # not started: no JVM
