"""The lake's Iceberg tables as the jobs use them: read by date, replace dates in one atomic commit.

A job's output for its dates is one commit that deletes exactly those dates and adds the new
rows (DataFrameWriterV2 `overwrite(condition)`): readers see the previous snapshot or the new
one, never a mixture; a rerun gives the same table content; a job that fails commits nothing.
Every commit carries snapshot properties (`pipeline.*`: job, dates, run id, a write id) so a
run's snapshots can be found again (rollback, the run report, Airflow's asset events).

Write-audit-publish: a session whose `spark.wap.branch` is set (the jobs' `--branch`) commits to
that branch of each table (Iceberg creates it from main at the first write) and reads the branch
where it exists, main elsewhere; readers of main (Athena, the next run) see nothing until the
branch is published (`publish`, a fast-forward of main).

Tables are created on first write with the contract's columns plus `dt` (partition column), at
`LAKE/warehouse/<zone>/<name>` on both targets. An existing table is never replaced: columns the
code added since are added to it (schema evolution: no rewrite, old snapshots still read), and
a table whose columns drifted otherwise fails the job before anything is written.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StructField, StructType

from spark_jobs.catalog import (
    CATALOG,
    CATALOG_FILE,
    LAKE_KEY,
    NAMESPACE_KEY,
    TABLE_PROPERTIES,
    WAREHOUSE,
    ZONES,
    catalog_conf,
    glue_prefix,
    is_s3,
    local_path,
)
from spark_jobs.common import JobInputError, hadoop_fs

log = logging.getLogger("spark_jobs.tables")

DT = "dt"
PROPERTY = "pipeline."
WAP_BRANCH = "spark.wap.branch"
_NAME = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_TABLE = re.compile(
    rf"^{CATALOG}\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$"
)  # prefix of the snapshot properties this pipeline writes


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


class TableSchemaError(JobInputError):
    """A table's columns drifted from the code's in a way no column addition can mend."""


# ---- the session's catalog -----------------------------------------------------------------
def bind(spark: SparkSession, lake: str) -> SparkSession:
    """A session whose catalog `lake` serves `lake`: `spark` itself when it already does.

    Catalog settings are per session, so another lake gets a new session of the same Spark
    application (tests use many lakes; a long-lived local Spark runs jobs of several runs).
    """
    lake = lake.rstrip("/")
    if spark.conf.get(LAKE_KEY, None) == lake:
        return spark
    if not is_s3(lake):
        # SQLite creates the catalog file, not its folder.
        os.makedirs(os.path.dirname(f"{local_path(lake)}/{CATALOG_FILE}"), exist_ok=True)
    session = spark.newSession()
    for key, value in catalog_conf(lake, glue_prefix=_glue_prefix(), endpoints=_aws_endpoints(lake)).items():
        session.conf.set(key, value)
    if not is_s3(lake):
        _create_catalog_tables_once(session, lake)
    return session


def _create_catalog_tables_once(session: SparkSession, lake: str) -> None:
    """Start the JDBC catalog only without its "do my tables exist?" check, once they exist.

    Iceberg 1.10's JdbcCatalog runs that check when it starts and leaves its ResultSet open when
    the tables are there (apache/iceberg#15462, fixed after 1.10). On SQLite an open statement is
    an open read transaction, held until the JVM happens to collect it: with a rollback journal
    every other connection's commit waits on it (SQLITE_BUSY after busy_timeout); in WAL mode
    this session keeps reading the catalog as it was when it started (stale tables, and
    SQLITE_BUSY_SNAPSHOT on its commits). Every new session and every streaming query (a clone
    of its session) starts a catalog of its own, so this happened on any lake used twice in one
    JVM. The tables are therefore created by a catalog started while they are missing (its check
    finds nothing and finishes), and no catalog of this session or its clones checks again.
    """
    if not _catalog_tables_exist(f"{local_path(lake)}/{CATALOG_FILE}"):
        session.sql(f"SHOW NAMESPACES IN {CATALOG}").collect()  # starts the catalog: it creates its tables
    session.conf.set(f"spark.sql.catalog.{CATALOG}.jdbc.init-catalog-tables", "false")


def _catalog_tables_exist(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"iceberg_tables", "iceberg_namespace_properties"} <= names


def _glue_prefix() -> str:
    return glue_prefix()


def _aws_endpoints(lake: str) -> dict[str, str] | None:
    """Stand-in endpoints for Glue and S3 (moto) from the AWS SDKs' own variables, when set."""
    if not is_s3(lake):
        return None
    default = os.environ.get("AWS_ENDPOINT_URL")
    glue = os.environ.get("AWS_ENDPOINT_URL_GLUE") or default
    s3 = os.environ.get("AWS_ENDPOINT_URL_S3") or default
    if not (glue and s3):
        return None
    return {"glue": glue, "s3": s3, "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}


def close_catalog(spark: SparkSession) -> None:
    """Close the session's Iceberg catalog (its connection pool), if the session opened one."""
    manager = spark._jsparkSession.sessionState().catalogManager()
    if manager.isCatalogRegistered(CATALOG):
        manager.catalog(CATALOG).icebergCatalog().close()


def lake_of(spark: SparkSession) -> str:
    lake = spark.conf.get(LAKE_KEY, None)
    if not lake:
        raise RuntimeError("this session's catalog serves no lake: get it from get_spark(app, lake)")
    return lake


def namespace(spark: SparkSession, zone: str) -> str:
    if zone not in ZONES:
        raise ValueError(f"{zone!r} is not a table zone; choose from {ZONES}")
    return spark.conf.get(NAMESPACE_KEY + zone, zone)


def identifier(spark: SparkSession, zone: str, name: str) -> str:
    """`lake.<namespace>.<name>`; both parts checked, since identifiers go into SQL text."""
    parts = (namespace(spark, zone), name)
    bad = [p for p in parts if not _NAME.match(p)]
    if bad:
        raise ValueError(f"not a table or namespace name: {bad}")
    return f"{CATALOG}.{parts[0]}.{parts[1]}"


def table_names(spark: SparkSession) -> list[tuple[str, str]]:
    """(zone, table) of every table the catalog holds in the lake's namespaces."""
    found = []
    for zone in ZONES:
        ns = namespace(spark, zone)
        if not spark.catalog.databaseExists(f"{CATALOG}.{ns}"):
            continue
        for row in spark.sql(f"SHOW TABLES IN {CATALOG}.{ns}").collect():
            found.append((zone, row.tableName))
    return sorted(found)


def _metadata(spark: SparkSession, table: str, kind: str, tail: str = "") -> DataFrame:
    """`SELECT * FROM <table>.<kind> <tail>`: an Iceberg metadata table (refs, snapshots,
    partitions...). `table` comes from `identifier` (checked); values are filtered as columns
    (Spark 4.1 leaves a named parameter unbound in a query of a metadata table)."""
    if not _TABLE.match(table) or not kind.isalpha():
        raise ValueError(f"not a table identifier: {table}.{kind}")
    return spark.sql(f"SELECT * FROM {table}.{kind} {tail}")  # noqa: S608


def location(spark: SparkSession, zone: str, name: str) -> str:
    """Where a table's files live: `LAKE/warehouse/<zone>/<name>`, the same on both targets."""
    lake = lake_of(spark).replace("s3a://", "s3://", 1)
    return f"{lake}/{WAREHOUSE}/{zone}/{name}"


# ---- creating and checking tables ----------------------------------------------------------
def with_dt(schema: StructType) -> StructType:
    """A contract schema plus the partition column `dt` (DATE)."""
    return StructType([*schema.fields, StructField(DT, DateType(), True)])


def ensure_table(
    spark: SparkSession, zone: str, name: str, schema: StructType, partitioned_by: Sequence[str] = (DT,)
) -> str:
    """The table's identifier; created (with its namespace) when missing, evolved when behind.

    `schema` is the contract's columns without `dt`. Never drops or replaces a table: if the
    catalog has no table but its location holds Iceberg metadata, the catalog lost it and the
    job stops rather than start a new table over the old files.
    """
    table = identifier(spark, zone, name)
    wanted = with_dt(schema)
    if spark.catalog.tableExists(table):
        _evolve(spark, table, wanted)
        return table
    where = location(spark, zone, name)
    if _has_metadata(spark, where):
        raise TableSchemaError(
            f"{table} is not in the catalog but {where} holds an Iceberg table: the catalog lost it. "
            f"Register it again (CALL {CATALOG}.system.register_table) instead of writing a new one over it"
        )
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace(spark, zone)}")
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in wanted.fields)
    properties = ", ".join(f"'{k}'='{v}'" for k, v in TABLE_PROPERTIES.items())
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {table} ({columns}) USING iceberg "
        f"PARTITIONED BY ({', '.join(partitioned_by)}) LOCATION '{where}' TBLPROPERTIES ({properties})"
    )
    log.warning("created table %s at %s", table, where)
    return table


def _has_metadata(spark: SparkSession, where: str) -> bool:
    fs, path = hadoop_fs(spark, f"{where}/metadata")
    return bool(fs.exists(path)) and any(
        s.getPath().getName().endswith(".metadata.json") for s in fs.listStatus(path)
    )


def _evolve(spark: SparkSession, table: str, wanted: StructType) -> None:
    """Add the columns the code has and the table lacks; refuse any other difference."""
    have = {f.name: f.dataType for f in spark.table(table).schema.fields}
    want = {f.name: f.dataType for f in wanted.fields}
    changed = [f"{n}: table {have[n].simpleString()}, code {t.simpleString()}" for n, t in want.items()
               if n in have and not _same_type(have[n], t)]  # fmt: skip
    extra = [n for n in have if n not in want]
    if changed or extra:
        raise TableSchemaError(
            f"{table} drifted from the code: "
            + "; ".join([*changed, *(f"{n}: in the table, not in the code" for n in extra)])
            + " (nothing was written)"
        )
    for name, dtype in want.items():
        if name not in have:
            spark.sql(f"ALTER TABLE {table} ADD COLUMN `{name}` {dtype.simpleString()}")
            log.warning("added column %s %s to %s", name, dtype.simpleString(), table)


def _same_type(a, b) -> bool:
    # Iceberg keeps no containsNull / nullability difference that matters for our writes.
    return a.simpleString() == b.simpleString()


# ---- reading -------------------------------------------------------------------------------
def read(
    spark: SparkSession,
    zone: str,
    name: str,
    *,
    since: dt.date | None = None,
    upto: dt.date | None = None,
) -> DataFrame:
    """The table's rows with since <= dt <= upto (partition pruning), `dt` included."""
    table = identifier(spark, zone, name)
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
    table = identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        return False
    on_ds = _partitions(spark, table).where(
        (F.col("record_count") > 0) & (F.col("partition.dt") == F.lit(ds))
    )
    return bool(on_ds.limit(1).count()) or ds in written_dates(spark, zone, name)


def read_date(spark: SparkSession, zone: str, name: str, ds: dt.date) -> DataFrame:
    """One date's rows (without `dt`); JobInputError unless a job wrote that date."""
    if not is_written(spark, zone, name, ds):
        raise JobInputError(f"{identifier(spark, zone, name)} has nothing written for {ds}")
    return read(spark, zone, name, since=ds, upto=ds).drop(DT)


def dates_with_rows(spark: SparkSession, zone: str, name: str) -> list[dt.date]:
    """The dates that hold rows, ascending (from the table's metadata, no data file is read)."""
    table = identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        return []
    rows = _partitions(spark, table).where("record_count > 0").select("partition.dt").distinct()
    return sorted(r.dt for r in rows.collect() if r.dt is not None)


def written_dates(spark: SparkSession, zone: str, name: str) -> set[dt.date]:
    """Dates a job wrote: those with rows, and those a kept snapshot says it wrote (empty days).

    Only snapshots readers see count: the current one and its ancestors, less commits taken back
    (`undo`): a rolled-back commit is no ancestor, an emptied one is named by its undo.
    """
    table = identifier(spark, zone, name)
    if not spark.catalog.tableExists(table):
        return set()
    dates = set(dates_with_rows(spark, zone, name))
    summary = F.col("summary")
    rows = _metadata(spark, table, "snapshots").select(
        "snapshot_id", "parent_id", *(summary[PROPERTY + key].alias(key) for key in ("dates", "undoes"))
    )
    snapshots = {row.snapshot_id: row for row in rows.collect()}
    seen, undone, snapshot = [], set(), head(spark, table)
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
        raise JobInputError(f"{identifier(spark, zone, name)} has nothing written on or before {upto}")
    return read(spark, zone, name, since=since, upto=upto)


def read_latest(spark: SparkSession, zone: str, name: str, ds: dt.date) -> tuple[dt.date, DataFrame]:
    """The latest date with rows on or before ds and its rows (without `dt`): a snapshot dataset
    (customers) holds a full snapshot on each date; JobInputError if there is none."""
    dates = [d for d in dates_with_rows(spark, zone, name) if d <= ds]
    if not dates:
        raise JobInputError(f"{identifier(spark, zone, name)} has no rows on or before {ds}")
    return dates[-1], read(spark, zone, name, since=dates[-1], upto=dates[-1]).drop(DT)


# ---- writing -------------------------------------------------------------------------------
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


def current_snapshot_id(spark: SparkSession, table: str, ref: str = "main") -> int | None:
    """The snapshot a branch (default: main, what readers see) points at; None without that branch."""
    row = _metadata(spark, table, "refs").where(F.col("name") == F.lit(ref)).first()
    return int(row.snapshot_id) if row else None


def parse_dates_label(label: str | None) -> list[dt.date]:
    """The dates of a commit's `dates` property (`A` or `A..B`, as `_date_filter` labels them)."""
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
    rows = _metadata(spark, table, "snapshots").select(
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


def _partitions(spark: SparkSession, table: str) -> DataFrame:
    """The `partitions` metadata of the snapshot this session reads."""
    return partitions_at(spark, table, head(spark, table))


def partitions_at(spark: SparkSession, table: str, snapshot: int | None) -> DataFrame:
    """The `partitions` metadata of a snapshot (by id: Iceberg 1.10 cannot time-travel a metadata
    table by branch name); no rows for a table without one."""
    if snapshot is None:
        return _metadata(spark, table, "partitions").limit(0)
    return _metadata(spark, table, "partitions", f"VERSION AS OF {int(snapshot)}")


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
    table = ensure_table(spark, zone, name, schema, partitioned_by)
    condition, label = _date_filter(dates)
    write_id = uuid.uuid4().hex
    # Iceberg does not check that added rows match the overwrite condition: the write does.
    outside = F.concat(
        F.lit(f"a row of {table} has dt "), F.col(DT).cast("string"), F.lit(f", not in {label}")
    )
    checked = df.select(
        *[c for c in with_dt(schema).fieldNames() if c != DT],
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
        counts = _metadata(spark, table, "partitions", f"VERSION AS OF {int(snapshot)}")
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
    snapshots = _metadata(spark, table, "snapshots")
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
    branch = wap_branch(spark)
    current = current_snapshot_id(spark, written.table, branch or "main")
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
