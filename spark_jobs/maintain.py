"""Job `maintain`: the upkeep of every table of the lake, as Iceberg's Spark procedures do it.

For each table of the processed, quarantine and curated namespaces:
- drop the branches of runs whose audit failed (kept unpublished for a person to look at) once
  their last commit is older than `ds - keep_days`;
- expire snapshots committed before `ds - keep_days` (the newest RETAIN_LAST always stay, and the
  snapshots branches and tags still point at), deleting the files only they referenced;
- compact small data files into larger ones (rewrite_data_files, same rows, one new snapshot);
- remove orphan files older than `ds - ORPHAN_AGE_DAYS`: files of failed writes that no snapshot
  references (old enough that no running write can still be committing them).

`python -m spark_jobs maintain --ds DS --lake LAKE [--keep-days 14]`; the cut-offs come from ds
(the run's logical date), so a rerun of the same week does the same. The clock only bounds the
orphan cut-off from above (at least a day ago, Iceberg's own floor): a file younger than that
may belong to a write still under way, whatever date the run is for.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import SparkSession

from spark_jobs import tables
from spark_jobs.catalog import CATALOG

log = logging.getLogger("spark_jobs.maintain")

DEFAULT_KEEP_DAYS = 14
RETAIN_LAST = 5  # snapshots every table keeps however old, for rollback and time travel
ORPHAN_AGE_DAYS = 3
MIN_INPUT_FILES = 5  # compact a partition once it holds this many small files
AUDIT_BRANCH_PREFIX = "audit_"  # the branches runs write to (include/pipeline.py audit_branch)


def _timestamp(day: dt.date) -> str:
    return f"TIMESTAMP '{day.isoformat()} 00:00:00'"


def drop_old_audit_branches(spark: SparkSession, table: str, before: dt.date) -> list[str]:
    """Drop the branches runs left unpublished (their audit failed: kept for a person to look at)
    whose last commit is older than `before`; their snapshots can then expire like the others."""
    heads = {r.snapshot_id: r.committed_at for r in tables.metadata(spark, table, "snapshots").collect()}
    dropped = []
    for ref in tables.metadata(spark, table, "refs", "WHERE type = 'BRANCH'").collect():
        if not ref.name.startswith(AUDIT_BRANCH_PREFIX):
            continue
        committed = heads.get(ref.snapshot_id)
        if committed is not None and committed.date() < before:
            spark.sql(f"ALTER TABLE {table} DROP BRANCH `{ref.name}`")
            dropped.append(ref.name)
    return dropped


def maintain_table(spark: SparkSession, zone: str, name: str, ds: dt.date, keep_days: int) -> dict:
    table = tables.identifier(spark, zone, name)
    short = table.removeprefix(f"{CATALOG}.")
    branches = drop_old_audit_branches(spark, table, ds - dt.timedelta(days=keep_days))
    expired = spark.sql(
        f"CALL {CATALOG}.system.expire_snapshots(table => '{short}', "
        f"older_than => {_timestamp(ds - dt.timedelta(days=keep_days))}, retain_last => {RETAIN_LAST})"
    ).first()
    rewritten = spark.sql(
        f"CALL {CATALOG}.system.rewrite_data_files(table => '{short}', "
        f"options => map('min-input-files', '{MIN_INPUT_FILES}'))"
    ).first()
    safe = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    orphan_cutoff = min(ds - dt.timedelta(days=ORPHAN_AGE_DAYS), safe)
    orphans = spark.sql(
        f"CALL {CATALOG}.system.remove_orphan_files(table => '{short}', "
        f"older_than => {_timestamp(orphan_cutoff)})"
    ).collect()
    result = {
        "audit_branches_dropped": len(branches),
        "expired_data_files": int(expired.deleted_data_files_count),
        "expired_manifest_files": int(expired.deleted_manifest_files_count),
        "rewritten_data_files": int(rewritten.rewritten_data_files_count),
        "added_data_files": int(rewritten.added_data_files_count),
        "orphan_files_removed": len(orphans),
    }
    log.warning("%s: %s", table, result)
    return result


def run(spark: SparkSession, args) -> dict:
    keep = getattr(args, "keep_days", None) or DEFAULT_KEEP_DAYS
    done = {
        f"{zone}.{name}": maintain_table(spark, zone, name, args.ds, keep)
        for zone, name in tables.table_names(spark)
    }
    totals = {key: sum(t[key] for t in done.values()) for key in next(iter(done.values()), {})}
    return {"rows_in": {}, "rows_out": {}, "rows_quarantined": 0, "tables_maintained": done, **totals}
