"""Shared plumbing of the jobs: arguments, bad input, small files and paths of the landing files.

The jobs' Spark session is `spark_jobs.session`; the tables (processed, quarantine, curated
zones) are Iceberg tables: see `spark_jobs.tables`. Landing stays the files upstream delivers;
they, the run metrics and the stream checkpoints are read and written through Hadoop's
FileSystem, so the same code works on `file://` locally and on `s3://` (EMRFS) on a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("spark_jobs")

_MICROS_PER_DAY = 86_400_000_000
_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LAKE_RE = re.compile(r"^(file|s3|s3a)://[A-Za-z0-9._/+=@-]+$")


class JobInputError(Exception):
    """Bad input (missing partition, wrong header, ...): one line on stderr, exit code 2."""


# ---- arguments -----------------------------------------------------------------------------
def parse_ds(value: str) -> dt.date:
    """A real calendar date written YYYY-MM-DD, or JobInputError."""
    if not isinstance(value, str) or not _DS_RE.match(value):
        raise JobInputError(f"date {value!r} is not YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise JobInputError(f"date {value!r} is not a calendar date: {exc}") from None


def normalize_lake(value: str) -> str:
    """A lake URI without trailing slash; a plain local path becomes an absolute file:// URI."""
    if "://" not in value:
        value = Path(value).resolve().as_uri()
    value = value.rstrip("/")
    if not _LAKE_RE.match(value):
        raise JobInputError(f"lake {value!r} is not a file://, s3:// or s3a:// URI")
    return value


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise JobInputError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


# ---- files through Hadoop's FileSystem ----------------------------------------------------
def hadoop_fs(spark: SparkSession, uri: str):
    """(Hadoop FileSystem, Path) of a URI: file:// locally, s3:// on EMR (EMRFS) or through s3a."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def path_exists(spark: SparkSession, uri: str) -> bool:
    fs, path = hadoop_fs(spark, uri)
    return bool(fs.exists(path))


def read_text(spark: SparkSession, uri: str) -> str:
    """A small text object, through Hadoop's FileSystem (FileNotFoundException when absent)."""
    fs, path = hadoop_fs(spark, uri)
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write (replace) a small text object, through Hadoop's FileSystem."""
    fs, path = hadoop_fs(spark, uri)
    out = fs.create(path, True)
    try:
        out.write(bytearray(text.encode()))
    finally:
        out.close()


# ---- landing files -------------------------------------------------------------------------
def landing_path(lake: str, dataset: str, ds: dt.date | str | None = None) -> str:
    """`LAKE/landing/<dataset>[/dt=YYYY-MM-DD]`: where upstream systems deliver their files."""
    base = f"{lake}/landing/{dataset}"
    return base if ds is None else f"{base}/dt={ds}"


def utc_date(ts: Column) -> Column:
    """The UTC calendar date of a timestamp, whatever the session time zone is."""
    return F.date_from_unix_date(F.floor(F.unix_micros(ts) / F.lit(_MICROS_PER_DAY)).cast("int"))
