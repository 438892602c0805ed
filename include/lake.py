"""The lake's Iceberg tables without Spark: read a date, list a table's commits, roll an output back.

pyiceberg opens the same catalog the jobs write through: the SQLite file of a local lake
(`LAKE/_catalog/iceberg.db`), or the Glue Data Catalog of an s3:// lake (credentials from the
usual AWS chain). Used by `make demo`'s summary, the run report's charts, the rollback DAG and
a person's `python -m scripts.manage_lake_tables` (snapshots, rollback, publish).

`rollback` puts a table back to the snapshot it had before a run's first commit (the jobs record
the Airflow run id on every commit). `publish` makes a branch a run left unpublished (its audit
failed, a person looked and accepts it) what readers see, in every table that has it, and
records that in the run's report. Without --apply both only say what they would do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spark_jobs.catalog import CATALOG, CATALOG_FILE, WAREHOUSE, glue_prefix, is_s3, local_path, namespaces

PROPERTY = "pipeline."  # the snapshot properties spark_jobs/table_writes.py writes


def open_catalog(lake: str, *, properties: Mapping[str, str] | None = None):
    """pyiceberg's catalog of a lake: SqlCatalog on the local file, GlueCatalog for s3://."""
    if is_s3(lake):
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog(CATALOG, **{"warehouse": f"{lake.rstrip('/')}/{WAREHOUSE}", **(properties or {})})
    from pyiceberg.catalog.sql import SqlCatalog

    root = local_path(lake)
    os.makedirs(os.path.dirname(f"{root}/{CATALOG_FILE}"), exist_ok=True)
    return SqlCatalog(CATALOG, uri=f"sqlite:///{root}/{CATALOG_FILE}", warehouse=f"file://{root}/{WAREHOUSE}")


def table_id(lake: str, zone_table: str, glue_prefix: str | None = None) -> str:
    """`zone.name` (as the contract names tables) -> the catalog's `namespace.name`."""
    zone, _, name = zone_table.partition(".")
    spaces = namespaces(lake, glue_prefix) if glue_prefix else namespaces(lake)
    if zone not in spaces or not name:
        raise SystemExit(f"{zone_table!r}: name a table as <zone>.<name>, zone one of {sorted(spaces)}")
    return f"{spaces[zone]}.{name}"


def local_catalog_exists(lake: str) -> bool:
    return not is_s3(lake) and os.path.exists(f"{local_path(lake)}/{CATALOG_FILE}")


def read_date(lake: str | os.PathLike, zone: str, name: str, ds: str):
    """One date's rows as pandas (without `dt`), or None when no job wrote that date."""
    lake = str(lake) if "://" in str(lake) else f"file://{os.path.abspath(lake)}"
    if not local_catalog_exists(lake):
        return None
    catalog = open_catalog(lake)
    ident = f"{namespaces(lake)[zone]}.{name}"
    if not catalog.table_exists(ident):
        return None
    table = catalog.load_table(ident)
    rows = table.scan(row_filter=f"dt = '{ds}'").to_pandas()
    if rows.empty and dt.date.fromisoformat(ds) not in written_dates(table):
        return None
    return rows.drop(columns=["dt"]).reset_index(drop=True)


def written_dates(table: Any) -> set[dt.date]:
    """Dates the kept snapshots say a job replaced (rows or not)."""
    dates: set[dt.date] = set()
    for snapshot in table.snapshots():
        label = (snapshot.summary.additional_properties if snapshot.summary else {}).get(f"{PROPERTY}dates")
        if label:
            first, _, last = label.partition("..")
            start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
            dates.update(start + dt.timedelta(days=i) for i in range((end - start).days + 1))
    return dates


# ---- commits and rollback --------------------------------------------------------------------
@dataclass(frozen=True)
class Commit:
    snapshot_id: int
    parent_id: int | None
    committed_at: dt.datetime
    operation: str
    job: str
    dates: str
    run_id: str

    def line(self) -> str:
        when = self.committed_at.strftime("%Y-%m-%d %H:%M:%S")
        fields = (
            f"{self.snapshot_id:>20}",
            when,
            f"{self.operation:<9}",
            f"{self.job:<14}",
            f"{self.dates:<23}",
        )
        return "  ".join((*fields, self.run_id))


def main_history(table: Any) -> list[Commit]:
    """The commits readers have seen, oldest first (main's current snapshot and its ancestors)."""
    by_id = {s.snapshot_id: s for s in table.snapshots()}
    current = table.current_snapshot()
    chain = []
    snapshot = current
    while snapshot is not None:
        chain.append(snapshot)
        snapshot = by_id.get(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    commits = []
    for s in reversed(chain):
        props = s.summary.additional_properties if s.summary else {}
        commits.append(
            Commit(
                snapshot_id=s.snapshot_id,
                parent_id=s.parent_snapshot_id,
                committed_at=dt.datetime.fromtimestamp(s.timestamp_ms / 1000, tz=dt.UTC),
                operation=str(s.summary.operation.value) if s.summary else "",
                job=props.get(f"{PROPERTY}job", ""),
                dates=props.get(f"{PROPERTY}dates", ""),
                run_id=props.get(f"{PROPERTY}run-id", ""),
            )
        )
    return commits


@dataclass(frozen=True)
class RollbackPlan:
    table: str
    target: int | None  # the snapshot before the run (None: the table was created by the run)
    undone: list[Commit]  # every commit the rollback takes away, the run's and any later ones
    later_runs: list[str]  # other runs whose commits go too

    def describe(self) -> str:
        lines = [f"{self.table}: back to snapshot {self.target}, taking away {len(self.undone)} commit(s):"]
        lines += ["  " + c.line() for c in self.undone]
        if self.later_runs:
            lines.append(f"  later runs whose commits go too: {', '.join(self.later_runs)}")
        return "\n".join(lines)


def plan_rollback(table: Any, table_name: str, run_id: str) -> RollbackPlan:
    history = main_history(table)
    first = next((i for i, c in enumerate(history) if c.run_id == run_id), None)
    if first is None:
        raise SystemExit(f"{table_name}: no commit of run {run_id!r} among the snapshots readers have seen")
    undone = history[first:]
    later = sorted({c.run_id for c in undone if c.run_id and c.run_id != run_id})
    return RollbackPlan(table_name, history[first].parent_id, undone, later)


def rollback(table: Any, plan: RollbackPlan) -> None:
    if plan.target is None:
        raise SystemExit(f"{plan.table} was created by that run: nothing to go back to (drop it instead)")
    table.manage_snapshots().rollback_to_snapshot(plan.target).commit()


def branch_tables(catalog: Any, lake: str, branch: str) -> list[tuple[str, Any]]:
    """(zone.name, table) of every table of the lake that has `branch`."""
    found = []
    for zone, namespace in namespaces(lake, glue_prefix()).items():
        if (namespace,) not in catalog.list_namespaces():
            continue
        for ident in catalog.list_tables(namespace):
            table = catalog.load_table(ident)
            if branch in table.metadata.refs:
                found.append((f"{zone}.{ident[-1]}", table))
    return sorted(found, key=lambda pair: pair[0])


def publish_branch(table: Any, branch: str) -> int:
    """Fast-forward main to `branch` (refused unless main is the branch's ancestor); drop the branch."""
    head = table.metadata.refs[branch].snapshot_id
    main = table.current_snapshot()
    ancestors, snapshot = set(), table.snapshot_by_id(head)
    while snapshot is not None:
        ancestors.add(snapshot.snapshot_id)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    if main is not None and main.snapshot_id not in ancestors:
        raise SystemExit(f"main of {table.name()} moved since {branch} was made: not a fast-forward")
    # main moves to the branch's head (the commit asserts main is still where it was read)
    table.manage_snapshots().set_current_snapshot(snapshot_id=head).remove_branch(branch).commit()
    return head


def record_publish_by_hand(lake: str, dag_id: str, ds: str, entry: dict[str, Any]) -> str | None:
    """Add `entry` to the run report of (dag_id, ds), when there is one; returns its URI."""
    from include.lake_files import lake_io, report_uri

    read, write = lake_io(None, None)
    uri = report_uri(lake, dag_id, ds)
    text = read(uri)
    if text is None:
        return None
    report = json.loads(text)
    report.setdefault("published_by_hand", []).append(entry)
    write(uri, json.dumps(report, indent=2, sort_keys=True, default=str))
    return uri
