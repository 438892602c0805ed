"""Reading the lake's tables by date: a range, one date a job wrote, the history up to a date,
the latest snapshot dataset; and which dates a job wrote (those with rows, and the empty days a
kept commit names)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import table_history, tables
from spark_jobs.common import JobInputError
from spark_jobs.tables import DT, PROPERTY


def read(
    spark: SparkSession,
    zone: str,
    name: str,
    *,
    since: dt.date | None = None,
    upto: dt.date | None = None,
) -> DataFrame:
    """The table's rows with since <= dt <= upto (partition pruning), `dt` included."""
    table = tables.identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        raise JobInputError(f"table {table} does not exist yet (the job that writes it has not run)")
    df = spark.table(table)
    if since is not None:
        df = df.filter(F.col(DT) >= F.lit(since))
    if upto is not None:
        df = df.filter(F.col(DT) <= F.lit(upto))
    return df


def is_written(spark: SparkSession, zone: str, name: str, ds: dt.date) -> bool:
    """Whether a job wrote ds: rows there (one metadata query), else a kept commit says so."""
    table = tables.identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        return False
    on_ds = table_history.partitions(spark, table).where(
        (F.col("record_count") > 0) & (F.col("partition.dt") == F.lit(ds))
    )
    return bool(on_ds.limit(1).count()) or ds in written_dates(spark, zone, name)


def read_date(spark: SparkSession, zone: str, name: str, ds: dt.date) -> DataFrame:
    """One date's rows (without `dt`); JobInputError unless a job wrote that date."""
    if not is_written(spark, zone, name, ds):
        raise JobInputError(f"{tables.identifier(spark, zone, name)} has nothing written for {ds}")
    return read(spark, zone, name, since=ds, upto=ds).drop(DT)


def dates_with_rows(spark: SparkSession, zone: str, name: str) -> list[dt.date]:
    """The dates that hold rows, ascending (from the table's metadata, no data file is read)."""
    table = tables.identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        return []
    rows = table_history.partitions(spark, table).where("record_count > 0").select("partition.dt").distinct()
    return sorted(r.dt for r in rows.collect() if r.dt is not None)


def written_dates(spark: SparkSession, zone: str, name: str) -> set[dt.date]:
    """Dates a job wrote: those with rows, and those a kept snapshot says it wrote (empty days).

    Only snapshots readers see count: the current one and its ancestors, less commits taken back
    (`undo`): a rolled-back commit is no ancestor, an emptied one is named by its undo.
    """
    table = tables.identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        return set()
    dates = set(dates_with_rows(spark, zone, name))
    summary = F.col("summary")
    rows = tables.metadata(spark, table, "snapshots").select(
        "snapshot_id",
        "parent_id",
        *(summary[PROPERTY + key].alias(key) for key in ("dates", "undoes")),
    )
    snapshots = {row.snapshot_id: row for row in rows.collect()}
    seen, undone, snapshot = [], set(), table_history.head(spark, table)
    while snapshot in snapshots:  # newest first: an undo comes before the commit it undoes
        row = snapshots[snapshot]
        if row.undoes:
            undone.add(int(row.undoes))
        elif row.dates and snapshot not in undone:
            seen.append(row)
        snapshot = row.parent_id
    for row in seen:
        first, _, last = row.dates.partition("..")
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
        dates.update(start + dt.timedelta(days=i) for i in range((end - start).days + 1))
    return dates


def read_history(
    spark: SparkSession, zone: str, name: str, upto: dt.date, since: dt.date | None = None
) -> DataFrame:
    """Rows with since <= dt <= upto; JobInputError when nothing was written on or before `upto`."""
    with_rows = dates_with_rows(spark, zone, name)
    if not (with_rows and with_rows[0] <= upto) and not any(
        d <= upto for d in written_dates(spark, zone, name)
    ):
        raise JobInputError(f"{tables.identifier(spark, zone, name)} has nothing written on or before {upto}")
    return read(spark, zone, name, since=since, upto=upto)


def read_latest(spark: SparkSession, zone: str, name: str, ds: dt.date) -> tuple[dt.date, DataFrame]:
    """The latest date with rows on or before ds and its rows (without `dt`): a snapshot dataset
    (customers) holds a full snapshot on each date; JobInputError if there is none."""
    dates = [d for d in dates_with_rows(spark, zone, name) if d <= ds]
    if not dates:
        raise JobInputError(f"{tables.identifier(spark, zone, name)} has no rows on or before {ds}")
    return dates[-1], read(spark, zone, name, since=dates[-1], upto=dates[-1]).drop(DT)
