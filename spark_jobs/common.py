"""Shared plumbing of the jobs: the Spark session, lake paths and partition I/O.

Writes go to a staging directory first and are swapped into `dt=YYYY-MM-DD/` only once
Spark has committed them, so a failed job leaves the previous partition intact and a rerun
replaces exactly its own partition. The swap uses the Hadoop FileSystem API, so the same
code works on `file://` locally and on `s3://` (EMRFS) on a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

log = logging.getLogger("spark_jobs")

ZONES = ("landing", "processed", "quarantine", "curated")
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


# ---- Spark ---------------------------------------------------------------------------------
def get_spark(app_name: str = "spark_jobs") -> SparkSession:
    """The job's SparkSession: the cluster's under spark-submit, local mode otherwise."""
    builder = SparkSession.builder.appName(app_name)
    # spark-submit starts the Python driver with a gateway already open; plain
    # `python -m spark_jobs` does not, and then we run Spark in local mode.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = (
            builder.master(os.environ.get("SPARK_MASTER", "local[*]"))
            .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "2g"))
            .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.compression.codec", "snappy")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def _fs_path(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def path_exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs_path(spark, uri)
    return bool(fs.exists(path))


def delete_path(spark: SparkSession, uri: str) -> None:
    fs, path = _fs_path(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def has_data_files(spark: SparkSession, uri: str) -> bool:
    """True when the directory holds at least one non-hidden file."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return False
    for status in fs.listStatus(path):
        name = status.getPath().getName()
        if status.isFile() and not name.startswith(("_", ".")):
            return True
    return False


# ---- lake paths ----------------------------------------------------------------------------
def dataset_path(lake: str, zone: str, dataset: str) -> str:
    if zone not in ZONES:
        raise ValueError(f"unknown zone {zone!r}")
    return f"{lake}/{zone}/{dataset}"


def partition_path(lake: str, zone: str, dataset: str, ds: dt.date | str) -> str:
    return f"{dataset_path(lake, zone, dataset)}/dt={ds}"


def list_partitions(spark: SparkSession, lake: str, zone: str, dataset: str) -> list[dt.date]:
    """The dates of the committed dt= partitions of a dataset, ascending."""
    fs, path = _fs_path(spark, dataset_path(lake, zone, dataset))
    if not fs.exists(path):
        return []
    dates = []
    for status in fs.listStatus(path):
        name = status.getPath().getName()
        if status.isDirectory() and name.startswith("dt="):
            try:
                dates.append(dt.date.fromisoformat(name[3:]))
            except ValueError:
                continue
    return sorted(dates)


# ---- reading -------------------------------------------------------------------------------
def read_partition(
    spark: SparkSession, lake: str, zone: str, dataset: str, ds: dt.date, schema: StructType
) -> DataFrame:
    """One committed partition, or JobInputError naming the missing path."""
    path = partition_path(lake, zone, dataset, ds)
    if not path_exists(spark, path):
        raise JobInputError(f"missing input partition {path}")
    return spark.read.schema(schema).parquet(path)


def read_history(
    spark: SparkSession,
    lake: str,
    zone: str,
    dataset: str,
    upto: dt.date,
    schema: StructType,
    since: dt.date | None = None,
) -> DataFrame:
    """All partitions with since <= dt <= upto, with their `dt` as a DATE column.

    Only the wanted partition directories are read (pruning by listing, not by scanning).
    """
    dates = [d for d in list_partitions(spark, lake, zone, dataset) if d <= upto]
    if since is not None:
        dates = [d for d in dates if d >= since]
    if not dates:
        where = dataset_path(lake, zone, dataset)
        raise JobInputError(f"no partition of {where} on or before {upto}")
    base = dataset_path(lake, zone, dataset)
    paths = [partition_path(lake, zone, dataset, d) for d in dates]
    # basePath makes partition discovery add `dt` (DATE) from the directory names.
    return spark.read.schema(schema).option("basePath", base).parquet(*paths)


# ---- writing -------------------------------------------------------------------------------
def write_partition(
    df: DataFrame,
    lake: str,
    zone: str,
    dataset: str,
    ds: dt.date,
    partition_by: Sequence[str] = (),
    coalesce: int | None = None,
) -> int:
    """Replace `LAKE/zone/dataset/dt=ds/` with df, atomically per partition; return row count.

    Spark writes (and commits) into a staging directory; only then is the old partition moved
    aside and the new one renamed into place. If the write fails, the old partition is intact.
    An empty DataFrame still produces the partition (one empty Parquet file with the schema),
    so a day without data is visible as such.
    """
    spark = df.sparkSession
    target = partition_path(lake, zone, dataset, ds)
    token = uuid.uuid4().hex[:12]
    staging = f"{lake}/_staging/{zone}/{dataset}/dt={ds}.{token}"
    backup = f"{staging}.previous"
    out = df.coalesce(coalesce) if coalesce else df
    writer = out.write.mode("errorifexists")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    fs, target_path = _fs_path(spark, target)
    _, staging_path = _fs_path(spark, staging)
    try:
        writer.parquet(staging)
        rows = spark.read.parquet(staging).count()
    except BaseException:
        fs.delete(staging_path, True)  # the half-written attempt; the target was never touched
        raise

    _, backup_path = _fs_path(spark, backup)
    fs.mkdirs(target_path.getParent())
    had_previous = bool(fs.exists(target_path))
    if had_previous and not fs.rename(target_path, backup_path):
        fs.delete(staging_path, True)
        raise OSError(f"could not move {target} aside; it is unchanged")
    if not fs.rename(staging_path, target_path):
        if had_previous:
            fs.rename(backup_path, target_path)
        raise OSError(f"could not move the new {target} into place; the previous one is restored")
    if had_previous:
        fs.delete(backup_path, True)
    log.warning("wrote %d rows to %s", rows, target)
    return rows
