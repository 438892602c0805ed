"""Writing the lake's tables: replace dates in one atomic commit, and take a commit back.

A job's output for its dates is one commit that deletes exactly those dates and adds the new
rows (DataFrameWriterV2 `overwrite(condition)`): readers see the previous snapshot or the new
one, never a mixture; a rerun gives the same table content; a job that fails commits nothing.
Every commit carries snapshot properties (`pipeline.*`: job, dates, run id, a write id) so a
run's snapshots can be found again (rollback, the run report, Airflow's asset events).

Write-audit-publish: a session whose `spark.wap.branch` is set (the jobs' `--branch`) commits to
that branch of each table (Iceberg creates it from main at the first write) and reads the branch
where it exists, main elsewhere; readers of main (Athena, the next run) see nothing until the
branch is published (`publish`, a fast-forward of main).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from spark_jobs import table_history, tables
from spark_jobs.catalog import CATALOG
from spark_jobs.tables import DT, PROPERTY

log = logging.getLogger("spark_jobs.tables")

# How every date replacement is written (Iceberg's Spark write options; both lines, Iceberg 1.10
# and 1.11, take them): hash distribution on the partition column, as Iceberg's default for a
# partitioned table, but with an advisory partition size of our own. Iceberg's own size is the
# target file size (512 MB) times the shuffle's compression ratio, so a date of 10M rows was
# one shuffle partition, written by one task on any cluster. At ADVISORY_PARTITION_BYTES Spark's
# AQE splits a date that large into pieces of about that much shuffled data (at most one a map
# task), written by every core, and merges small dates into one task: one or a few files a
# date, never a file per task and date as distribution `none` writes. Write options rather than
# table properties: they hold for every write of the jobs whatever the table's age, so existing
# tables need no ALTER. docs/BENCHMARKS.md (figure 6) has the measurement behind the number.
ADVISORY_PARTITION_BYTES = 64 * 1024 * 1024
WRITE_OPTIONS: dict[str, str] = {
    "distribution-mode": "hash",
    "advisory-partition-size": str(ADVISORY_PARTITION_BYTES),
}


@dataclass(frozen=True)
class Written:
    """One commit: the table, its new snapshot, and the rows it now holds on each date written."""

    table: str
    snapshot_id: int
    rows: dict[dt.date, int]
    previous_snapshot_id: int | None = field(default=None, compare=False)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def as_metrics(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "rows": self.total}


def _date_filter(dates: Sequence[dt.date]) -> tuple[Column, str]:
    first, last = min(dates), max(dates)
    if len(set(dates)) != (last - first).days + 1:
        raise ValueError(f"the dates written must be one unbroken range, got {sorted(set(dates))}")
    column = F.col(DT)
    condition = column == F.lit(first) if first == last else column.between(F.lit(first), F.lit(last))
    return condition, str(first) if first == last else f"{first}..{last}"


def replace_dates(
    df: DataFrame,
    zone: str,
    name: str,
    schema: StructType,
    dates: Sequence[dt.date],
    *,
    job: str,
    partitioned_by: Sequence[str] = (DT,),
) -> Written:
    """Replace the table's rows of `dates` (one unbroken range) by df's, in one commit.

    df has the contract's columns and `dt`; a row whose dt is not one of `dates` fails the
    write (nothing is committed). Dates without rows end up empty, and the commit records every
    date it replaced, so an empty day reads as written rather than missing.
    """
    spark = df.sparkSession
    table = tables.ensure_table(spark, zone, name, schema, partitioned_by)
    condition, label = _date_filter(dates)
    write_id = uuid.uuid4().hex
    # Iceberg does not check that added rows match the overwrite condition: the write does.
    outside = F.concat(
        F.lit(f"a row of {table} has dt "), F.col(DT).cast("string"), F.lit(f", not in {label}")
    )
    checked = df.select(
        *[c for c in tables.with_dt(schema).fieldNames() if c != DT],
        F.when(condition, F.col(DT)).otherwise(F.raise_error(outside)).alias(DT),
    )
    writer = checked.writeTo(table)
    for key, value in WRITE_OPTIONS.items():
        writer = writer.option(key, value)
    properties = {"job": job, "dates": label, "write-id": write_id}
    run_id = spark.conf.get("spark.pipeline.run-id", None)
    if run_id:
        properties["run-id"] = run_id
    for key, value in properties.items():
        writer = writer.option(f"snapshot-property.{PROPERTY}{key}", value)
    writer.overwrite(condition)
    snapshot, previous, added = _snapshot_of(spark, table, write_id)
    rows = dict.fromkeys(sorted(set(dates)), 0)
    if len(rows) == 1:
        # One date replaced: the commit's added rows are exactly that date's rows now.
        rows[next(iter(rows))] = added
    else:
        counts = tables.metadata(spark, table, "partitions", f"VERSION AS OF {int(snapshot)}")
        per_date = counts.groupBy(F.col("partition.dt").alias("dt")).agg(F.sum("record_count").alias("n"))
        for row in per_date.collect():
            if row.dt in rows:
                rows[row.dt] = int(row.n)
    log.warning("%s: replaced %s with %d rows (snapshot %d)", table, label, sum(rows.values()), snapshot)
    return Written(table, snapshot, rows, previous)


def replace_date(
    df: DataFrame,
    zone: str,
    name: str,
    schema: StructType,
    ds: dt.date,
    *,
    job: str,
    partitioned_by: Sequence[str] = (DT,),
) -> Written:
    """`replace_dates` for one date, from rows without `dt`."""
    return replace_dates(
        df.withColumn(DT, F.lit(ds)), zone, name, schema, [ds], job=job, partitioned_by=partitioned_by
    )


def _snapshot_of(spark: SparkSession, table: str, write_id: str) -> tuple[int, int | None, int]:
    """(snapshot id, its parent, rows it added) of the commit that carries `write_id`."""
    snapshots = tables.metadata(spark, table, "snapshots")
    row = snapshots.where(F.col("summary")[f"{PROPERTY}write-id"] == F.lit(write_id)).first()
    if row is None:  # pragma: no cover - Iceberg returned from a commit it did not make
        raise RuntimeError(f"the commit of {table} (write {write_id}) is not in its snapshots")
    parent = int(row.parent_id) if row.parent_id is not None else None
    return int(row.snapshot_id), parent, int(row.summary.get("added-records") or 0)


def undo(spark: SparkSession, written: Written) -> None:
    """Take back a commit of this job after a later write of the same job failed.

    Rolls the table back to the snapshot it had before, if nothing was committed since; a new
    table (no previous snapshot) gets its written dates emptied instead, by a commit naming the
    one it undoes (`pipeline.undoes`), so that `written_dates` does not count them as written.
    """
    branch = table_history.wap_branch(spark)
    current = table_history.current_snapshot_id(spark, written.table, branch or "main")
    if current != written.snapshot_id:
        log.error("%s moved on since snapshot %d; not rolling it back", written.table, written.snapshot_id)
        return
    short = written.table.removeprefix(f"{CATALOG}.")
    if written.previous_snapshot_id is not None and branch:
        # the branch goes back to where it was (readers of main never saw the commit anyway)
        version = int(written.previous_snapshot_id)
        spark.sql(f"ALTER TABLE {written.table} REPLACE BRANCH `{branch}` AS OF VERSION {version}")
    elif written.previous_snapshot_id is not None:
        spark.sql(f"CALL {CATALOG}.system.rollback_to_snapshot('{short}', {written.previous_snapshot_id})")
    else:
        condition, _ = _date_filter(list(written.rows))
        empty = spark.table(written.table).limit(0).writeTo(written.table)
        empty.option(f"snapshot-property.{PROPERTY}undoes", str(written.snapshot_id)).overwrite(condition)
    log.warning("%s: took back snapshot %d", written.table, written.snapshot_id)


def replace_all_or_none(spark: SparkSession, writes: Iterable[Callable[[], Written]]) -> list[Written]:
    """Run `writes` (each one `replace_dates`) in order; if one fails, undo the ones already
    committed and re-raise, so the job as a whole commits nothing."""
    done: list[Written] = []
    try:
        for write in writes:
            done.append(write())
    except BaseException:
        for written in reversed(done):
            undo(spark, written)
        raise
    return done
