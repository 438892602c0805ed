"""Run a pipeline DAG locally with `dag.test()`: the local target on a lake directory, no scheduler.

`python -m include.run_local --lake lake --ds 2024-06-30 [--history-start 2024-05-01]` (what
`make demo` runs) prepares a throwaway Airflow home (.airflow/, sqlite), migrates it, runs the
nightly DAG for the logical date and prints what the run produced. Airflow reads its settings
when first imported, so this module sets them before importing anything from Airflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = PROJECT_ROOT / "dags"
DAG_FILES = {
    "nightly": DAGS_FOLDER / "customer_analytics_nightly.py",
    "backfill": DAGS_FOLDER / "customer_analytics_backfill.py",
    "maintenance": DAGS_FOLDER / "customer_analytics_maintenance.py",
    "rollback": DAGS_FOLDER / "customer_analytics_rollback.py",
}


def airflow_env(home: Path) -> dict[str, str]:
    """What a local dag.test needs: its own home and DB, this project's dags/, no examples."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        # Parsing the DAG files imports include/ and plugins/ from the project root.
        "PYTHONPATH": os.pathsep.join(filter(None, (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")))),
    }


def prepare_airflow(home: Path) -> None:
    """Point Airflow at `home` and migrate its DB; must run before Airflow is first imported."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        raise RuntimeError(
            "prepare_airflow() must run before airflow is imported (it reads AIRFLOW_HOME once)"
        )
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(home))
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from airflow.utils.db import upgradedb

    upgradedb()


def load_dag(path: Path) -> Any:
    """Import a DAG file the way Airflow does (by path) and return its `dag`."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def logical_date(ds: str) -> dt.datetime:
    """The logical date of the scheduled run for `ds` (02:00 UTC that day)."""
    return dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(2, 0), tzinfo=dt.UTC)


def run_dag_test(dag: Any, ds: str | None, conf: dict[str, Any] | None = None) -> Any:
    """Run `dag` once with dag.test(); returns the DagRun.

    Without the DAG's Deadline Alert: Airflow 3.3.2's dag.test() cannot finish a successful run
    of a DAG that has one (DagRun.update_state looks the alerts up by database id, and dag.test's
    DAG holds them serialized: "'dict' object has no attribute 'hex'"). dag.test() runs are
    manual runs, which have no deadline anyway (include/alerts.py)."""
    dag.deadline = None
    return dag.test(logical_date=logical_date(ds) if ds else None, run_conf=conf or None)


def dag_test_from_command_line(dag: Any, argv: list[str] | None = None) -> None:
    """`python dags/<file>.py --ds YYYY-MM-DD [--conf JSON]` (Airflow home and PYTHONPATH already set)."""
    parser = argparse.ArgumentParser(description=f"dag.test() of {dag.dag_id}")
    parser.add_argument("--ds", help="logical date YYYY-MM-DD (the nightly DAG needs one)")
    parser.add_argument(
        "--conf", type=json.loads, default=None, help='params as JSON, e.g. \'{"outputs": ["stock_daily"]}\''
    )
    args = parser.parse_args(argv)
    run = run_dag_test(dag, args.ds, args.conf)
    raise SystemExit(0 if str(run.state) == "success" else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lake", required=True, help="lake directory or file:// URI")
    parser.add_argument("--ds", help="nightly: logical date YYYY-MM-DD")
    parser.add_argument(
        "--history-start", help="nightly: ingest landing from this date to ds (ingest_start_ds)"
    )
    parser.add_argument("--outputs", help="nightly: comma-separated outputs to build (default: all)")
    parser.add_argument("--dag", choices=("nightly", "backfill"), default="nightly")
    parser.add_argument("--start-ds", help="backfill: first date")
    parser.add_argument("--end-ds", help="backfill: last date")
    parser.add_argument("--airflow-home", type=Path, default=PROJECT_ROOT / ".airflow")
    args = parser.parse_args(argv)

    lake = Path(args.lake).resolve().as_uri() if "://" not in args.lake else args.lake
    os.environ["PIPELINE_TARGET"] = "local"
    os.environ["PIPELINE_LAKE"] = lake
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from include.lineage import airflow_environment
    from include.settings import load_settings

    settings = load_settings()
    # Airflow's OpenLineage provider: the tasks' events beside the jobs' (read at Airflow's import)
    os.environ.update(airflow_environment(settings))
    prepare_airflow(args.airflow_home.resolve())
    dag = load_dag(DAG_FILES[args.dag])

    if args.dag == "nightly":
        if not args.ds:
            parser.error("--ds is required for the nightly DAG")
        conf: dict[str, Any] = {"ingest_start_ds": args.history_start}
        if args.outputs:
            conf["outputs"] = [o.strip() for o in args.outputs.split(",") if o.strip()]
        run = run_dag_test(dag, args.ds, conf)
        dates = [args.ds]
    else:
        if not (args.start_ds and args.end_ds):
            parser.error("--start-ds and --end-ds are required for the backfill DAG")
        run = run_dag_test(dag, None, {"start_ds": args.start_ds, "end_ds": args.end_ds})
        dates = [args.end_ds]

    from include.lake_summary import summarize

    rows = {}
    for ds in dates:
        rows = summarize(lake, ds)
    from include.lake_files import report_uri

    for ds in dates:
        for name in ("report.json", "report.html"):
            page = Path(report_uri(lake, dag.dag_id, ds, name).removeprefix("file://"))
            if page.exists():
                print(f"run report: {page}")
    if settings.lineage and not settings.lineage_url:
        where = Path(lake.removeprefix("file://")) / "_lineage"
        print(f"lineage (OpenLineage events, JSON lines): {where}")
        print(f"  upstream of an output: python -m include.lineage customer_segments --lake {where.parent}")
    print(f"\n{dag.dag_id}: run {run.run_id} {run.state}")
    return 0 if str(run.state) == "success" and None not in rows.values() else 1


if __name__ == "__main__":
    raise SystemExit(main())
