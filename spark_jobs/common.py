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
from dataclasses import dataclass, field
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
            # Listing local partition directories from the driver takes milliseconds; above the
            # default threshold (32 paths) Spark starts a job to list them (~1-3 s per history read).
            .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "4096")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        # Our row_number() = 1 filters deduplicate by transaction/event id, which are nearly all
        # unique: Spark 3.5's partial WindowGroupLimit would sort every row before the shuffle
        # and drop none (one extra sort of the whole input; see docs/BENCHMARKS.md, figure 2).
        .config("spark.sql.optimizer.windowGroupLimitThreshold", "-1")
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
def _swap_in(spark: SparkSession, staged: str, target: str, backup: str) -> bool:
    """Rename the committed `staged` directory to `target`, the previous target (if any) to `backup`.

    Returns whether there was a previous target (now at `backup`, for the caller to delete once
    it no longer needs it). On failure raises OSError with `target` as it was before the call.
    """
    fs, target_path = _fs_path(spark, target)
    _, staged_path = _fs_path(spark, staged)
    _, backup_path = _fs_path(spark, backup)
    fs.mkdirs(target_path.getParent())
    had_previous = bool(fs.exists(target_path))
    if had_previous and not fs.rename(target_path, backup_path):
        raise OSError(f"could not move {target} aside; it is unchanged")
    if not fs.rename(staged_path, target_path):
        if had_previous and not fs.rename(backup_path, target_path):
            raise OSError(f"could not move the new {target} into place nor restore it; it is at {backup}")
        raise OSError(f"could not move the new {target} into place; the previous one is restored")
    return had_previous


def _swap_out(spark: SparkSession, target: str, backup: str, had_previous: bool) -> None:
    """Undo a `_swap_in`: drop the new `target` and put the previous one (if any) back."""
    fs, target_path = _fs_path(spark, target)
    _, backup_path = _fs_path(spark, backup)
    fs.delete(target_path, True)
    if had_previous and not fs.rename(backup_path, target_path):
        log.error("could not restore %s; the previous partition is kept at %s", target, backup)


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
    try:
        writer.parquet(staging)
        rows = spark.read.parquet(staging).count()
        had_previous = _swap_in(spark, staging, target, backup)
    except BaseException:
        delete_path(spark, staging)  # the attempt; the target is as it was (_swap_in restores it)
        raise
    if had_previous:
        delete_path(spark, backup)
    log.warning("wrote %d rows to %s", rows, target)
    return rows


@dataclass(frozen=True)
class StagedPartitions:
    """The dt= partitions of one dataset, written and committed by Spark under `root`, not yet
    in the lake (see `stage_partitions` and `commit_partitions`)."""

    spark: SparkSession = field(repr=False, compare=False)
    lake: str
    zone: str
    dataset: str
    root: str
    rows: dict[dt.date, int]  # every date asked for, 0 for the empty ones

    def staged(self, ds: dt.date) -> str:
        return f"{self.root}/dt={ds}"

    def target(self, ds: dt.date) -> str:
        return partition_path(self.lake, self.zone, self.dataset, ds)


def stage_partitions(
    df: DataFrame, lake: str, zone: str, dataset: str, dates: Sequence[dt.date]
) -> StagedPartitions:
    """Write df (which has a DATE column `dt`) once, partitioned by dt, into one staging directory.

    Every date of `dates` gets a staged partition; a date without rows gets an empty Parquet file
    with the schema (copied from one empty write, not one Spark job per date). A row whose dt is
    not one of `dates` fails the call. Nothing in the lake changes; on failure the staging
    directory is removed.
    """
    spark = df.sparkSession
    dates = sorted(set(dates))
    root = f"{lake}/_staging/{zone}/{dataset}/dts.{uuid.uuid4().hex[:12]}"
    try:
        df.write.mode("errorifexists").partitionBy("dt").parquet(root)
        rows = _rows_per_date(spark, root)
        outside = {d: n for d, n in rows.items() if d not in dates}
        if outside:
            raise ValueError(
                f"{sum(outside.values())} rows of {zone}/{dataset} have a dt outside the dates written"
            )
        rows = {ds: rows.get(ds, 0) for ds in dates}
        empty = [ds for ds in dates if rows[ds] == 0]
        if empty:
            _stage_empty_partitions(spark, df.drop("dt").schema, root, empty)
    except BaseException:
        delete_path(spark, root)
        raise
    return StagedPartitions(spark, lake, zone, dataset, root, rows)


def _rows_per_date(spark: SparkSession, root: str) -> dict[dt.date | None, int]:
    """Rows per `dt=` directory under root (null dt: key None), from the Parquet footers only.

    Counted after the write, not with `observe`: an Observation whose metrics never arrive
    blocks its `get` forever, and a run of the suite hung there once.
    """
    fs, path = _fs_path(spark, root)
    if not any(st.isDirectory() and st.getPath().getName().startswith("dt=") for st in fs.listStatus(path)):
        return {}  # nothing was written: every date is empty
    counts = spark.read.parquet(root).groupBy("dt").count().collect()
    return {row["dt"]: int(row["count"]) for row in counts}


def _stage_empty_partitions(spark: SparkSession, schema: StructType, root: str, dates: Sequence[dt.date]):
    template = f"{root}/_empty"  # "_": not a partition for Spark's readers
    spark.createDataFrame([], schema).write.mode("errorifexists").parquet(template)
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    fs, template_path = _fs_path(spark, template)
    for ds in dates:
        _, day_path = _fs_path(spark, f"{root}/dt={ds}")
        if not jvm.org.apache.hadoop.fs.FileUtil.copy(fs, template_path, fs, day_path, False, conf):
            raise OSError(f"could not stage an empty partition at {root}/dt={ds}")


def commit_partitions(*batches: StagedPartitions) -> None:
    """Swap every staged partition of every batch into the lake: all of them, or none.

    Each partition is swapped as write_partition does; if one swap fails, the ones already done
    are swapped back, so every partition holds its previous content. The staging directories
    (and the previous partitions) are removed either way.
    """
    if not batches:
        return
    spark = batches[0].spark
    token = uuid.uuid4().hex[:12]
    done: list[tuple[str, str, bool]] = []
    try:
        for batch in batches:
            for ds in sorted(batch.rows):
                target = batch.target(ds)
                backup = f"{batch.root}.dt={ds}.{token}.previous"
                done.append((target, backup, _swap_in(spark, batch.staged(ds), target, backup)))
    except BaseException:
        for target, backup, had_previous in reversed(done):
            _swap_out(spark, target, backup, had_previous)
        discard_partitions(*batches)
        raise
    for _target, backup, had_previous in done:
        if had_previous:
            delete_path(spark, backup)
    discard_partitions(*batches)
    for batch in batches:
        for ds, rows in sorted(batch.rows.items()):
            log.info("wrote %d rows to %s", rows, batch.target(ds))


def discard_partitions(*batches: StagedPartitions) -> None:
    """Remove staging directories (what is left of them after a commit, or all after a failure)."""
    for batch in batches:
        delete_path(batch.spark, batch.root)


def write_partitions(
    df: DataFrame, lake: str, zone: str, dataset: str, dates: Sequence[dt.date]
) -> dict[dt.date, int]:
    """Replace `LAKE/zone/dataset/dt=D/` for every D of `dates` with df's rows of that dt.

    df has a DATE column `dt` (not stored in the files). One Spark write for all dates, then
    each partition is swapped in like write_partition does; a failed write or swap leaves every
    partition as it was. A date without rows gets an empty partition with the schema. Returns
    the row count per date.
    """
    batch = stage_partitions(df, lake, zone, dataset, dates)
    commit_partitions(batch)
    return batch.rows
