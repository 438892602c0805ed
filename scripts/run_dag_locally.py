"""Run the nightly (or backfill) DAG locally with `dag.test()` on a lake directory and print what
the run produced: what `make demo` runs.

`python -m scripts.run_dag_locally --lake lake --ds 2024-06-30 [--history-start 2024-05-01]`
prepares a throwaway Airflow home (.airflow/, sqlite), migrates it, runs the nightly DAG for the
logical date and prints what the run produced. Airflow reads its settings when first imported,
so this program sets them before importing anything from Airflow.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from include.lake_files import report_uri
from include.run_local import DAG_FILES, PROJECT_ROOT, load_dag, prepare_airflow, run_dag_test
from scripts.summarize_lake import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.run_dag_locally",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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

    rows = {}
    for ds in dates:
        rows = summarize(lake, ds)
    for ds in dates:
        for name in ("report.json", "report.html"):
            page = Path(report_uri(lake, dag.dag_id, ds, name).removeprefix("file://"))
            if page.exists():
                print(f"run report: {page}")
    if settings.lineage and not settings.lineage_url:
        where = Path(lake.removeprefix("file://")) / "_lineage"
        print(f"lineage (OpenLineage events, JSON lines): {where}")
        print(
            f"  upstream of an output: python -m scripts.show_lineage customer_segments --lake {where.parent}"
        )
    print(f"\n{dag.dag_id}: run {run.run_id} {run.state}")
    return 0 if str(run.state) == "success" and None not in rows.values() else 1


if __name__ == "__main__":
    raise SystemExit(main())
