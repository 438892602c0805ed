"""Job `publish`: make a run's audited branch what readers see, table by table, in one step each.

    python -m spark_jobs publish --ds DS --lake LAKE --branch BRANCH

For every table of the lake that has the branch: main is fast-forwarded to the branch's head
(one atomic change of the table's main ref: readers see all of the run's commits of that table
or none) and the branch is dropped. Fast-forward only: if main moved since the branch was made
(another run published meanwhile), the table is left as it is and the job fails saying which
(rerun the date). Publishing again is a no-op, so a retried publish picks up where it stopped.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from spark_jobs import table_history, tables
from spark_jobs.catalog import CATALOG, ZONES
from spark_jobs.common import JobInputError

log = logging.getLogger("spark_jobs.publish")


def tables_on_branch(spark: SparkSession, branch: str) -> list[tuple[str, str]]:
    """(zone, name) of every table of the lake that has `branch`."""
    found = []
    for zone, name in tables.table_names(spark):
        if table_history.current_snapshot_id(spark, tables.identifier(spark, zone, name), branch) is not None:
            found.append((zone, name))
    return found


def is_ancestor(spark: SparkSession, table: str, ancestor: int | None, of: int) -> bool:
    """Whether snapshot `ancestor` is `of` or one of its ancestors (None: the table had no main)."""
    if ancestor is None:
        return True
    parents = {r.snapshot_id: r.parent_id for r in tables.metadata(spark, table, "snapshots").collect()}
    snapshot: int | None = of
    while snapshot is not None:
        if snapshot == ancestor:
            return True
        snapshot = parents.get(snapshot)
    return False


def publish(spark: SparkSession, branch: str) -> dict[str, int]:
    """Fast-forward main to `branch` in every table that has it; returns table -> main's new snapshot."""
    published, refused = {}, []
    for zone, name in tables_on_branch(spark, branch):
        table = tables.identifier(spark, zone, name)
        head = table_history.current_snapshot_id(spark, table, branch)
        main = table_history.current_snapshot_id(spark, table)
        if not is_ancestor(spark, table, main, head):
            refused.append(f"{zone}.{name}")
            continue
        short = table.removeprefix(f"{CATALOG}.")
        if main is None:  # the run created the table: main starts at the branch's head
            spark.sql(f"ALTER TABLE {table} CREATE BRANCH `main` AS OF VERSION {int(head)}")
        elif main != head:
            spark.sql(f"CALL {CATALOG}.system.fast_forward('{short}', 'main', '{branch}')")
        spark.sql(f"ALTER TABLE {table} DROP BRANCH `{branch}`")
        published[f"{zone}.{name}"] = head
        log.warning("published %s: main is now snapshot %d", table, head)
    if refused:
        raise JobInputError(
            f"main moved since branch {branch} was made (another run published): {', '.join(refused)} "
            "not published; the branch is kept; rerun the date"
        )
    return published


def run(spark: SparkSession, args) -> dict:
    branch = table_history.wap_branch(spark)
    if not branch:
        raise JobInputError("publish needs --branch (the branch to make what readers see)")
    # The publish itself must act on main, not through the branch.
    spark.conf.unset(tables.WAP_BRANCH)
    published = publish(spark, branch)
    if not published:
        log.warning("publish: no table has branch %s (already published, or nothing written)", branch)
    return {
        "rows_in": {},
        "rows_out": {},
        "rows_quarantined": 0,
        "branch": branch,
        "published": published,
        "zones": list(ZONES),
    }
