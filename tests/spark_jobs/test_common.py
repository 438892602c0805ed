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
    from spark_jobs.session import LOCAL_JVM_OPTIONS, local_builder

    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    started_with = list(runtime.getInputArguments())
    assert set(LOCAL_JVM_OPTIONS.split()) <= set(started_with), started_with
    # room for a whole run's generated code: quick compilation alone would leave the JVM 48 MB
    diagnostics = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        spark.sparkContext._jvm.com.sun.management.HotSpotDiagnosticMXBean._java_lang_class
    )
    assert diagnostics.getVMOption("ReservedCodeCacheSize").getValue() == str(240 * 1024 * 1024)
    monkeypatch.setenv("SPARK_DRIVER_JAVA_OPTIONS", "")
    assert local_builder("probe")._options["spark.driver.extraJavaOptions"] == ""  # not started: no JVM


def test_utc_date_is_the_utc_calendar_date_whatever_the_session_time_zone(spark):
    """The one UTC-date formula every job uses (ingest's partition check, clickstream, features):
    whole days of microseconds since the epoch, floored, so it needs no session time zone and
    days before 1970 count down, not towards zero."""
    from pyspark.sql import functions as F

    from spark_jobs.common import utc_date

    stamps = [
        dt.datetime(2024, 6, 1, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2024, 6, 2, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 6, 2, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))),  # 2024-06-01 20:30Z
        dt.datetime(1969, 12, 31, 23, 0, tzinfo=dt.UTC),
    ]
    saved = spark.conf.get("spark.sql.session.timeZone")
    try:
        for zone in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
            spark.conf.set("spark.sql.session.timeZone", zone)
            df = spark.createDataFrame([(s,) for s in stamps], "ts timestamp")
            got = [r.d for r in df.select(utc_date(F.col("ts")).alias("d")).collect()]
            assert got == [s.astimezone(dt.UTC).date() for s in stamps], zone
    finally:
        spark.conf.set("spark.sql.session.timeZone", saved)
