"""The tables' snapshots and branches as this session sees them: the head it reads (its
write-audit-publish branch where that exists, else main), a branch's dates, a snapshot's partitions."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import tables
from spark_jobs.tables import PROPERTY, WAP_BRANCH


def current_snapshot_id(spark: SparkSession, table: str, ref: str = "main") -> int | None:
    """The snapshot a branch (default: main, what readers see) points at; None without that branch."""
    row = tables.metadata(spark, table, "refs").where(F.col("name") == F.lit(ref)).first()
    return int(row.snapshot_id) if row else None


def parse_dates_label(label: str | None) -> list[dt.date]:
    """The dates of a commit's `dates` property (`A` or `A..B`, as table_writes labels them)."""
    if not label:
        return []
    first, _, last = label.partition("..")
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def branch_dates(spark: SparkSession, table: str, branch: str) -> list[dt.date]:
    """The dates the commits of `branch` replaced since it left main (what a run wrote and an
    audit must look at), ascending; [] when the table has no such branch."""
    head_id = current_snapshot_id(spark, table, branch)
    if head_id is None:
        return []
    rows = tables.metadata(spark, table, "snapshots").select(
        "snapshot_id", "parent_id", F.col("summary")[PROPERTY + "dates"].alias("dates")
    )
    snapshots = {r.snapshot_id: (r.parent_id, r.dates) for r in rows.collect()}
    on_main: set[int] = set()
    snapshot = current_snapshot_id(spark, table)
    while snapshot is not None and snapshot not in on_main:
        on_main.add(snapshot)
        snapshot = snapshots.get(snapshot, (None, None))[0]
    dates: set[dt.date] = set()
    snapshot = head_id
    while snapshot is not None and snapshot not in on_main:
        parent, label = snapshots.get(snapshot, (None, None))
        dates.update(parse_dates_label(label))
        snapshot = parent
    return sorted(dates)


def wap_branch(spark: SparkSession) -> str | None:
    """The branch this session writes to (write-audit-publish), or None: it writes main."""
    return spark.conf.get(WAP_BRANCH, None) or None


def head(spark: SparkSession, table: str) -> int | None:
    """The snapshot this session reads: its branch's head where the branch exists, else main's."""
    branch = wap_branch(spark)
    found = current_snapshot_id(spark, table, branch) if branch else None
    return found if found is not None else current_snapshot_id(spark, table)


def partitions(spark: SparkSession, table: str) -> DataFrame:
    """The `partitions` metadata of the snapshot this session reads."""
    return partitions_at(spark, table, head(spark, table))


def partitions_at(spark: SparkSession, table: str, snapshot: int | None) -> DataFrame:
    """The `partitions` metadata of a snapshot (by id: Iceberg 1.10 cannot time-travel a metadata
    table by branch name); no rows for a table without one."""
    if snapshot is None:
        return tables.metadata(spark, table, "partitions").limit(0)
    return tables.metadata(spark, table, "partitions", f"VERSION AS OF {int(snapshot)}")
