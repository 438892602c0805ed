"""Figure 4: the nightly DAG run locally on demo data, with and without the warm Spark application.

Measured: the wall time of the run `make demo` makes, and its share that is orchestration
(Airflow: parsing, planning, scheduling, task bookkeeping) rather than Spark. The run is
`dag.test()` of the local target, as include/run_local.py does it, on a fresh copy of the
generated demo landing data (every run ingests and writes every table, like a first
`make demo`). Two settings, run in turn: `PIPELINE_LOCAL_SPARK_SERVER=true` (the default: the
run's `start_spark` task starts one Spark application with Iceberg and every step runs on it)
and `false` (each step is its own `python -m spark_jobs ...` process, its own JVM). Spark time
is the wall time of each step's job, measured by wrapping the operator's `_run` (on the
application or in a process; in a process the JVM start-up counts as Spark), plus, with the
application, its start (`spark_jobs.server.start`, until it accepts jobs) and the stop request.
Orchestration is wall time minus Spark time. The DB migration of the throwaway Airflow home is
reported apart. Each setting runs `--repeat` times (default 2), min and median.
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


SETTINGS = {"true": "warm Spark application", "false": "a Spark process per step"}


def _timed(record: list[float], fn):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - start)

    return timed


def probe(lake: Path, home: Path, ds: str, start: str, server: str) -> dict:
    """One dag.test() run of the nightly local DAG in this process; the Spark times in it."""
    import os

    os.environ["PIPELINE_TARGET"] = "local"
    os.environ["PIPELINE_LAKE"] = lake.resolve().as_uri()
    os.environ["PIPELINE_RETRIES"] = "0"
    os.environ["PIPELINE_LOCAL_SPARK_SERVER"] = server
    from include.run_local import DAG_FILES, load_dag, prepare_airflow, run_dag_test

    migrate, _ = core.timed(lambda: prepare_airflow(home))
    from plugins.spark_job import SparkJobSubprocessOperator
    from spark_jobs import server as spark_server

    spark_runs: list[dict] = []
    original = SparkJobSubprocessOperator._run
    app_start: list[float] = []
    app_stop: list[float] = []
    on_app: list[float] = []
    in_process: list[float] = []

    def timed_run(self, args, *rest, **kwargs):  # the operator's own arguments, passed on as they are
        begin = time.perf_counter()
        try:
            return original(self, args, *rest, **kwargs)
        finally:
            spark_runs.append({"job": " ".join(args[:3]), "seconds": time.perf_counter() - begin})

    SparkJobSubprocessOperator._run = timed_run
    SparkJobSubprocessOperator._run_process = _timed(in_process, SparkJobSubprocessOperator._run_process)
    # the tasks import these when they run: the module's attributes are what they call
    spark_server.start = _timed(app_start, spark_server.start)
    spark_server.stop = _timed(app_stop, spark_server.stop)
    spark_server.run_job = _timed(on_app, spark_server.run_job)
    parse, dag = core.timed(lambda: load_dag(DAG_FILES["nightly"]))
    wall, run = core.timed(lambda: run_dag_test(dag, ds, {"ingest_start_ds": start}))
    jobs = sum(r["seconds"] for r in spark_runs)
    spark = jobs + sum(app_start) + sum(app_stop)
    return {
        "state": str(run.state),
        "server": server,
        "migrate": migrate,
        "parse": parse,
        "wall": wall,
        "spark": spark,
        "spark_jobs": jobs,
        "app_start": sum(app_start),
        "app_stop": sum(app_stop),
        "jobs_on_app": len(on_app),
        "jobs_in_process": len(in_process),
        "orchestration": wall - spark,
        "share": (wall - spark) / wall,
        "jobs": spark_runs,
    }


def run_probe(lake: Path, home: Path, spec: dict, server: str) -> dict:
    args = ["--probe", str(lake), str(home), spec["ds"], spec["start"], server]
    return core.run_probe("bench.fig_local_dag", args, PROBE_PREFIX, "local DAG probe")


def run(args: argparse.Namespace) -> core.FigureResult:
    load = core.load_average()
    work = core.work_dir(args.work)
    spec = QUICK if args.quick else FULL
    n = cli.runs(args, full=2, quick=1)
    lake = prepare(work, spec)
    home = work / "fig4" / "airflow_home"
    probes: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    for _ in range(n):
        for setting in SETTINGS:  # in turn, so that load hits both alike
            # a fresh lake copy each time: every run ingests and writes everything, like the first `make demo`
            run_lake = lake.parent / "run_lake"
            if run_lake.exists():
                shutil.rmtree(run_lake)
            shutil.copytree(lake, run_lake)
            probes[setting].append(run_probe(run_lake, home, spec, setting))
    days = (dt.date.fromisoformat(spec["ds"]) - dt.date.fromisoformat(spec["start"])).days + 1
    rows: list[core.Row] = []
    medians: dict[str, dict[str, float]] = {}
    all_ok = True
    for setting, title in SETTINGS.items():
        runs = probes[setting]
        states = [p["state"] for p in runs]
        ok_runs = all(s == "success" for s in states)
        wall = core.Timing([p["wall"] for p in runs])
        spark = core.Timing([p["spark"] for p in runs])
        jobs_t = core.Timing([p["spark_jobs"] for p in runs])
        orch = core.Timing([p["orchestration"] for p in runs])
        share = core.Timing([p["share"] for p in runs])
        met = share.median < 0.10 and ok_runs
        all_ok = all_ok and met
        medians[setting] = {"wall": wall.median, "spark": spark.median, "share": share.median}
        prefix = f"{title} (`PIPELINE_LOCAL_SPARK_SERVER={setting}`)"
        where = f"{runs[0]['jobs_on_app']} on the application, {runs[0]['jobs_in_process']} in processes"
        rows += [
            core.Row(f"{prefix}: dag.test wall time", wall.min, wall.median, note=f"runs: {states}"),
            core.Row(f"{prefix}: Spark", spark.min, spark.median),
            core.Row(
                f"{prefix}: of which the {len(runs[0]['jobs'])} jobs", jobs_t.min, jobs_t.median, note=where
            ),
        ]
        if setting == "true":
            start = core.Timing([p["app_start"] for p in runs])
            stop = core.Timing([p["app_stop"] for p in runs])
            rows += [
                core.Row(f"{prefix}: of which starting the application", start.min, start.median),
                core.Row(f"{prefix}: of which the stop request", stop.min, stop.median),
            ]
        rows += [
            core.Row(f"{prefix}: orchestration (wall - Spark)", orch.min, orch.median),
            core.Row(
                f"{prefix}: orchestration share",
                share.min * 100,
                share.median * 100,
                unit="%",
                target="< 10",
                met=met,
            ),
        ]
        jobs: dict[str, list[float]] = {}
        for p in runs:
            for j in p["jobs"]:
                jobs.setdefault(j["job"], []).append(j["seconds"])
        for name, secs in jobs.items():
            t = core.Timing(secs)
            rows.append(core.Row(f"{prefix}: job `{name}`", t.min, t.median))
    first = probes["true"][0]
    rows.append(
        core.Row("DB migration of the throwaway home (not in wall)", first["migrate"], first["migrate"])
    )
    warm, cold = medians["true"], medians["false"]
    summary = (
        f"local nightly DAG on demo data (scale {spec['scale']}, {days} days): warm Spark application "
        f"wall {warm['wall']:.0f}s (Spark {warm['spark']:.0f}s, orchestration {warm['share']:.1%}), "
        f"a process per step wall {cold['wall']:.0f}s (Spark {cold['spark']:.0f}s, orchestration "
        f"{cold['share']:.1%}); target < 10 %; medians of {n}, load {load}"
    )
    return core.FigureResult(
        figure=4,
        name="local_dag",
        title="Local end-to-end nightly DAG run on demo data, warm Spark application vs a process per step",
        summary=summary,
        load_start=load,
        rows=rows,
        details={"spec": spec, "probes": probes, "runs": n},
        ok=all_ok,
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument(
        "--probe", nargs=5, metavar=("LAKE", "HOME", "DS", "START", "SERVER"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.probe:
        lake, home, ds, start, server = args.probe
        result = probe(Path(lake), Path(home), ds, start, server)
        print(PROBE_PREFIX + json.dumps(result), flush=True)
        return
    run(args).emit()


if __name__ == "__main__":
    main()
