"""Run a pipeline DAG locally with `dag.test()`: the local target on a lake directory, no scheduler.

A throwaway Airflow home (its own sqlite DB), this project's DAG files loaded by path, and one
`dag.test()` run of a logical date: what `python -m scripts.run_dag_locally` (`make demo`), the
DAG files' own command line and the tests use. Airflow reads its settings when first imported,
so `prepare_airflow` sets them before anything imports Airflow.
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
    """Run `dag` once with dag.test() (as `airflow dags test` does); returns the DagRun."""
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
