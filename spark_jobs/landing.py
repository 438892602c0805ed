"""The ingest's landing files: which exist for each day of a range (a missing day fails unless
the dataset may skip days), their CSV header checked against the contract, and all the days read
as one DataFrame of text columns, each row keeping its landing day in `dt`."""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs.common import JobInputError, hadoop_fs, landing_path
from spark_jobs.schemas import LANDING_COLUMNS, LANDING_FORMAT, OPTIONAL_DAYS
from spark_jobs.validation import CORRUPT, DT

log = logging.getLogger("spark_jobs.ingest")

_LISTING_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"


def landing_files(spark: SparkSession, uri: str) -> list[str]:
    """The data files of a landing partition, sorted; [] when it is missing or holds none."""
    fs, path = hadoop_fs(spark, uri)
    if not fs.exists(path):
        return []
    files = [
        status.getPath().toString()
        for status in fs.listStatus(path)
        if status.isFile() and not status.getPath().getName().startswith(("_", "."))
    ]
    return sorted(files)


def csv_header(spark: SparkSession, uri: str) -> tuple[str, ...] | None:
    """The column names on the first non-blank line of a CSV file (as Spark reads it), or None."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    fs, path = hadoop_fs(spark, uri)
    stream = fs.open(path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
    try:
        line = reader.readLine()
        while line is not None and not line.strip():
            line = reader.readLine()
    finally:
        reader.close()
    if line is None:
        return None
    return tuple(next(csv.reader([line.lstrip("\ufeff")])))


@dataclass(frozen=True)
class LandingDay:
    ds: dt.date
    files: tuple[str, ...]  # empty: an optional day without data


def checked_landing_days(
    spark: SparkSession, lake: str, dataset: str, dates: Sequence[dt.date]
) -> list[LandingDay]:
    """Every date's landing files, after checking all of them: JobInputError before any write.

    Checks that each partition exists (unless the dataset may skip days) and that every CSV
    file's header is exactly the contract's columns, in order.
    """
    expected = LANDING_COLUMNS[dataset]
    days = []
    for ds in dates:
        where = landing_path(lake, dataset, ds)
        files = landing_files(spark, where)
        if not files and dataset not in OPTIONAL_DAYS:
            raise JobInputError(f"missing landing partition {where} (no data files)")
        if LANDING_FORMAT[dataset] == "csv":
            for uri in files:
                found = csv_header(spark, uri)
                if found != expected:
                    shown = "no header (empty file)" if found is None else ",".join(found)
                    raise JobInputError(
                        f"header mismatch in {uri}: found {shown!r}, expected {','.join(expected)!r}"
                    )
        days.append(LandingDay(ds, tuple(files)))
    return days


def read_landing(spark: SparkSession, dataset: str, files: Sequence[str]) -> DataFrame:
    """The landing files as text columns plus `_corrupt_record` (the line, when malformed)."""
    columns = LANDING_COLUMNS[dataset]
    schema = StructType(
        [StructField(c, StringType(), True) for c in columns] + [StructField(CORRUPT, StringType(), True)]
    )
    if LANDING_FORMAT[dataset] == "csv":
        # The header was checked file by file; enforceSchema then just skips it. A line with too
        # few or too many fields lands in _corrupt_record.
        return spark.read.csv(
            list(files),
            schema=schema,
            header=True,
            enforceSchema=True,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT,
        )
    # JSON lines go through text + from_json so that any line that is not one JSON object
    # (truncated, an array, a bare number) is kept verbatim. Fields outside the contract are
    # ignored; blank lines are skipped like Spark's JSON reader does.
    lines = spark.read.text(list(files)).filter(F.trim("value") != "")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    return lines.select(F.from_json("value", schema, options).alias("record")).select("record.*")


def read_landing_days(spark: SparkSession, dataset: str, days: Sequence[LandingDay]) -> DataFrame:
    """Every day's landing files as one DataFrame (one scan), plus `dt`: the day of the row's file.

    The day comes from the file's directory, `.../dt=YYYY-MM-DD/<file>` (checked_landing_days
    lists the files of each day's directory, and nothing deeper).
    """
    files = [uri for day in days for uri in day.files]
    # Past this many paths Spark lists them in a Spark job (seconds on a busy machine, for files
    # checked_landing_days has just listed): list on the driver instead. The listing happens
    # when the reader is created, so the setting is restored right after.
    saved = spark.conf.get(_LISTING_THRESHOLD)
    spark.conf.set(_LISTING_THRESHOLD, str(max(int(saved), len(files) + 1)))
    try:
        landing = read_landing(spark, dataset, files)
    finally:
        spark.conf.set(_LISTING_THRESHOLD, saved)
    day = F.regexp_extract(F.input_file_name(), r"/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/[^/]+$", 1)
    return landing.withColumn(DT, F.to_date(day, "yyyy-MM-dd"))
