"""Figure 4: the nightly DAG run locally on demo data (what `make demo` runs): wall time and its
share that is orchestration (Airflow: parsing, planning, scheduling, task bookkeeping) rather
than the Spark job processes.

The run is `dag.test()` of the local target, as include/run_local.py does it; the Spark time
is the wall time of each `python -m spark_jobs ...` subprocess, measured by wrapping the
operator's `_run` (so JVM start-up counts as Spark, not as orchestration). Orchestration is
wall time minus Spark time. The DB migration of the throwaway Airflow home is reported apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
from pathlib import Path

from bench import cli, core

FULL = {"start": "2024-05-01", "ds": "2024-06-28", "scale": 0.02}  # the Makefile's demo defaults
QUICK = {"start": "2024-06-24", "ds": "2024-06-30", "scale": 0.002}
PROBE_PREFIX = "LOCAL_DAG_PROBE "


def prepare(work: Path, spec: dict) -> Path:
    from include.demo_data import generate

    root = work / "fig4" / f"demo_{spec['start']}_{spec['ds']}_{spec['scale']}"
    marker = root / "generated.json"
    if not marker.exists():
        if root.exists():
            shutil.rmtree(root)
        generate(str(root / "lake"), spec["start"], spec["ds"], scale=spec["scale"])
        marker.write_text(json.dumps(spec))
    return root / "lake"


def probe(lake: Path, home: Path, ds: str, start: str) -> dict:
    """One dag.test() run of the nightly local DAG in this process; Spark subprocess times."""
    import os

    os.environ["PIPELINE_TARGET"] = "local"
    os.environ["PIPELINE_LAKE"] = lake.resolve().as_uri()
    os.environ["PIPELINE_RETRIES"] = "0"
    from include.run_local import DAG_FILES, load_dag, prepare_airflow, run_dag_test

    migrate, _ = core.timed(lambda: prepare_airflow(home))
    from plugins.spark_job import SparkJobSubprocessOperator

    spark_runs: list[dict] = []
    original = SparkJobSubprocessOperator._run

    def timed_run(self, args, env):
        start = time.perf_counter()
        try:
            return original(self, args, env)
        finally:
            spark_runs.append({"job": " ".join(args[:3]), "seconds": time.perf_counter() - start})

    SparkJobSubprocessOperator._run = timed_run
    parse, dag = core.timed(lambda: load_dag(DAG_FILES["nightly"]))
    wall, run = core.timed(lambda: run_dag_test(dag, ds, {"ingest_start_ds": start}))
    spark = sum(r["seconds"] for r in spark_runs)
    return {
        "state": str(run.state),
        "migrate": migrate,
        "parse": parse,
        "wall": wall,
        "spark": spark,
        "orchestration": wall - spark,
        "share": (wall - spark) / wall,
        "jobs": spark_runs,
    }


def run_probe(lake: Path, home: Path, spec: dict) -> dict:
    args = ["--probe", str(lake), str(home), spec["ds"], spec["start"]]
    return core.run_probe("bench.fig_local_dag", args, PROBE_PREFIX, "local DAG probe")


def run(args: argparse.Namespace) -> core.FigureResult:
    load = core.load_average()
    work = core.work_dir(args.work)
    spec = QUICK if args.quick else FULL
    n = cli.runs(args, full=2, quick=1)
    lake = prepare(work, spec)
    home = work / "fig4" / "airflow_home"
    probes = []
    for _ in range(n):
        # a fresh lake copy each time: every run ingests and writes everything, like the first `make demo`
        run_lake = lake.parent / "run_lake"
        if run_lake.exists():
            shutil.rmtree(run_lake)
        shutil.copytree(lake, run_lake)
        probes.append(run_probe(run_lake, home, spec))
    states = [p["state"] for p in probes]
    wall = core.Timing([p["wall"] for p in probes])
    spark = core.Timing([p["spark"] for p in probes])
    orch = core.Timing([p["orchestration"] for p in probes])
    share = core.Timing([p["share"] for p in probes])
    ok_runs = all(s == "success" for s in states)
    days = (dt.date.fromisoformat(spec["ds"]) - dt.date.fromisoformat(spec["start"])).days + 1
    rows = [
        core.Row("dag.test wall time", wall.min, wall.median, note=f"runs: {states}"),
        core.Row(f"Spark job processes ({len(probes[0]['jobs'])} jobs)", spark.min, spark.median),
        core.Row("orchestration (wall - Spark)", orch.min, orch.median),
        core.Row(
            "orchestration share",
            share.min * 100,
            share.median * 100,
            unit="%",
            target="< 10",
            met=share.median < 0.10 and ok_runs,
        ),
        core.Row(
            "DB migration of the throwaway home (not in wall)", probes[0]["migrate"], probes[0]["migrate"]
        ),
    ]
    jobs: dict[str, list[float]] = {}
    for p in probes:
        for j in p["jobs"]:
            jobs.setdefault(j["job"], []).append(j["seconds"])
    for name, secs in jobs.items():
        t = core.Timing(secs)
        rows.append(core.Row(f"job `{name}`", t.min, t.median))
    summary = (
        f"local nightly DAG on demo data (scale {spec['scale']}, {days} days): wall {wall.median:.0f}s, "
        f"Spark {spark.median:.0f}s, orchestration {share.median:.1%} (target < 10 %), "
        f"runs {states}, load {load}"
    )
    return core.FigureResult(
        figure=4,
        name="local_dag",
        title="Local end-to-end nightly DAG run on demo data",
        summary=summary,
        load_start=load,
        rows=rows,
        details={"spec": spec, "probes": probes, "runs": n},
        ok=rows[3].met,
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--probe", nargs=4, metavar=("LAKE", "HOME", "DS", "START"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        lake, home, ds, start = args.probe
        result = probe(Path(lake), Path(home), ds, start)
        print(PROBE_PREFIX + json.dumps(result), flush=True)
        return
    run(args).emit()


if __name__ == "__main__":
    main()
