"""A person's commands for the lake's Iceberg tables, without Spark (pyiceberg, include.lake):

    python -m scripts.manage_lake_tables [--lake LAKE] snapshots curated.stock_daily
    python -m scripts.manage_lake_tables [--lake LAKE] rollback curated.stock_daily --before-run RUN [--apply]
    python -m scripts.manage_lake_tables [--lake LAKE] publish --branch audit_RUN --ds DS [--apply]

`snapshots` lists the commits readers have seen. `rollback` puts a table back to the snapshot it
had before a run's first commit. `publish` makes a branch a run left unpublished (its audit
failed, a person looked and accepts it) what readers see, in every table that has it, and
records that in the run's report. Without --apply both only say what they would do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any
from urllib.parse import urlparse

from include.lake import (
    branch_tables,
    local_catalog_exists,
    main_history,
    open_catalog,
    plan_rollback,
    publish_branch,
    record_publish_by_hand,
    rollback,
    table_id,
)
from spark_jobs.catalog import CATALOG_FILE, glue_prefix, is_s3


def _lake_default() -> str:
    from include.settings import load_settings

    return load_settings().lake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.manage_lake_tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--lake", help="lake URI (default: PIPELINE_LAKE, as the DAGs see it)")
    parser.add_argument(
        "--glue-prefix", help="Glue database prefix (s3:// lakes; default PIPELINE_GLUE_DATABASE_PREFIX)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("snapshots", help="the commits readers have seen, oldest first")
    show.add_argument("table", help="<zone>.<name>, e.g. curated.customer_features")
    back = sub.add_parser("rollback", help="put a table back to its snapshot before a run")
    back.add_argument("table", help="<zone>.<name>, e.g. curated.customer_features")
    back.add_argument("--before-run", required=True, help="the Airflow run_id whose commits to take away")
    back.add_argument("--apply", action="store_true", help="do it (without: say what it would do)")
    pub = sub.add_parser("publish", help="make a kept audit branch what readers see (after a person looked)")
    pub.add_argument("--branch", required=True, help="the run's branch: audit_<run id>")
    pub.add_argument("--ds", required=True, help="the run's date (its report gets a record of this)")
    pub.add_argument("--dag-id", default="customer_analytics_nightly", help="the run's DAG (its report)")
    pub.add_argument("--apply", action="store_true", help="do it (without: say what it would do)")
    args = parser.parse_args(argv)

    lake = (args.lake or _lake_default()).rstrip("/")
    if "://" not in lake:
        lake = f"file://{os.path.abspath(lake)}"
    prefix = args.glue_prefix or glue_prefix()
    if not is_s3(lake) and not local_catalog_exists(lake):
        print(
            f"no catalog at {urlparse(lake).path}/{CATALOG_FILE}: nothing has been written yet",
            file=sys.stderr,
        )
        return 2
    catalog = open_catalog(lake)
    if args.command == "publish":
        return _publish_command(catalog, lake, args)
    ident = table_id(lake, args.table, prefix)
    if not catalog.table_exists(ident):
        print(f"no table {ident} in the catalog of {lake}", file=sys.stderr)
        return 2
    table = catalog.load_table(ident)
    if args.command == "snapshots":
        for commit in main_history(table):
            print(commit.line())
        return 0
    plan = plan_rollback(table, args.table, args.before_run)
    print(plan.describe())
    if not args.apply:
        print("(nothing changed: add --apply to roll back)")
        return 0
    rollback(table, plan)
    print(f"{args.table} now reads snapshot {plan.target}")
    return 0


def _publish_command(catalog: Any, lake: str, args: argparse.Namespace) -> int:
    found = branch_tables(catalog, lake, args.branch)
    if not found:
        print(f"no table of {lake} has branch {args.branch}", file=sys.stderr)
        return 2
    for name, table in found:
        print(f"{name}: main -> {table.metadata.refs[args.branch].snapshot_id} ({args.branch})")
    if not args.apply:
        print("(nothing changed: add --apply to publish)")
        return 0
    published = {name: publish_branch(table, args.branch) for name, table in found}
    entry = {
        "branch": args.branch,
        "tables": published,
        "by": os.environ.get("USER") or "unknown",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),  # when a person acted: a record
    }
    where = record_publish_by_hand(lake, args.dag_id, args.ds, entry)
    print(f"published {len(published)} table(s); recorded in {where or 'no report (none for that run)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
