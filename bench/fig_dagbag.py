"""Figure 1: how long Airflow's own DagBag takes to parse dags/ (the DAG processor's work per file).

Each run is a fresh Python process (as the DAG processor parses in a fresh child), with Airflow
itself already imported and the timer started just before `DagBag(dags/)`: what is timed is our
DAG files and everything they import (include/, plugins/, the Amazon provider). Both targets
are parsed: `local` and `emr` (which builds the EMR and Glue operators).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench import cli, core

PROBE_PREFIX = "DAGBAG_PROBE "


def probe(target: str) -> dict:
    """One parse in this (fresh) process; the DAG folder comes from include.run_local."""
    import tests.harness.airflow_home  # noqa: F401  (throwaway AIRFLOW_HOME, no PIPELINE_* leaking in)

    if target == "emr":
        os.environ.update(core.EMR_ENV)
    else:
        os.environ["PIPELINE_TARGET"] = "local"
        os.environ["PIPELINE_LAKE"] = (core.PROJECT_ROOT / "lake").as_uri()
    start = time.perf_counter()
    import airflow  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    imported = time.perf_counter()
    from include.run_local import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))  # examples are off in the throwaway home
    parsed = time.perf_counter()
    return {
        "target": target,
        "airflow_import": imported - start,
        "dagbag": parsed - imported,
        "files": {os.path.basename(s.file): s.duration.total_seconds() for s in bag.dagbag_stats},
        "dags": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v)[:500] for k, v in bag.import_errors.items()},
    }


def run_probe(target: str, bytecode_cache: bool = True) -> dict:
    return core.run_probe(
        "bench.fig_dagbag",
        ["--probe", target],
        PROBE_PREFIX,
        f"dagbag probe for {target}",
        timeout=600,
        bytecode_cache=bytecode_cache,
    )


def run(args: argparse.Namespace) -> core.FigureResult:
    load = core.load_average()
    n = cli.runs(args, full=5, quick=2)
    rows, details, worst, errors = [], {}, 0.0, []
    for target in ("local", "emr"):
        run_probe(target)  # untimed: fills the bytecode cache
        probes = [run_probe(target) for _ in range(n)]
        cold = run_probe(target, bytecode_cache=False)
        bag = core.Timing([p["dagbag"] for p in probes])
        imp = core.Timing([p["airflow_import"] for p in probes])
        errors += [f"{target}: {e}" for p in probes for e in p["import_errors"].values()]
        per_file = {f: core.Timing([p["files"][f] for p in probes]) for f in probes[0]["files"]}
        worst = max(worst, bag.median)
        rows.append(
            core.Row(
                f"{target} target: DagBag(dags/) total, {len(probes[0]['dags'])} DAGs",
                bag.min,
                bag.median,
                target="< 1",
                met=bag.median < 1 and not errors,
            )
        )
        for name, t in sorted(per_file.items()):
            rows.append(core.Row(f"{target} target: {name}", t.min, t.median))
        rows.append(core.Row(f"{target} target: `import airflow` (before the timer)", imp.min, imp.median))
        rows.append(
            core.Row(
                f"{target} target: DagBag without bytecode cache (compiles every import)",
                cold["dagbag"],
                cold["dagbag"],
                note="1 run; PYTHONDONTWRITEBYTECODE=1 as on this machine",
            )
        )
        details[target] = {
            "dagbag": bag.as_dict(),
            "airflow_import": imp.as_dict(),
            "files": {f: t.as_dict() for f, t in per_file.items()},
            "dags": probes[0]["dags"],
            "cold_dagbag": cold["dagbag"],
        }
    ok = worst < 1 and not errors
    summary = (
        f"DagBag parse of dags/: median {details['local']['dagbag']['median']:.2f}s local target, "
        f"{details['emr']['dagbag']['median']:.2f}s emr target (target < 1 s), "
        f"import errors: {len(errors)}, load {load}"
    )
    return core.FigureResult(
        figure=1,
        name="dagbag",
        title="DAG folder parse time (Airflow DagBag)",
        summary=summary,
        load_start=load,
        rows=rows,
        details={**details, "runs": n, "import_errors": errors},
        ok=ok,
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--probe", choices=("local", "emr"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        print(PROBE_PREFIX + json.dumps(probe(args.probe)), flush=True)
        return
    run(args).emit()


if __name__ == "__main__":
    main()
