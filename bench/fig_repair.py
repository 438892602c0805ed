"""Figure 7: a repaired EMR run against a full rerun, and the step logs off the critical path (moto).

The nightly DAG of the emr target runs with `dag.test()` against moto, as in figure 5; a player
thread (tests/harness/aws_fakes.EmrStepPlayer's loop, with timestamps) plays each step for the
job time it took for real: the median wall time of its Spark job in figure 4's run with a
process per step (`PIPELINE_LOCAL_SPARK_SERVER=false`: one JVM per job, as a spark-submit step
on EMR; demo data, 12-24 s), after holding every step PENDING until its cluster is
`--start` seconds old (EMR's start-up, 6-10 minutes on a real cluster, scaled down to 60 s here
so that a run takes minutes). Each step's stdout and stderr reach the cluster's LogUri
`--log-delay` (60) s after the step ended, as EMR's log pusher uploads them.

Measured, in one process, one after the other on the same moto:
1. a run whose `segments` step fails at its first try; then its repair as the UI's Clear does it
   (the failed step task with the dialog's defaults), to the run's end;
2. a full rerun of the same date (a new run, every step green), to its end.
Wall time is the dag.test() loop's (for the repair: from the Clear to the run's end); cluster
time is each cluster's life from its creation to its termination (DescribeCluster's timeline),
summed over the clusters the phase created. dag.test() runs one task at a time and a step
task's trigger inline, so the steps of a run follow one another: a real scheduler runs the five
ingest steps (and graph, stock_daily, sales_rolling, clickstream) side by side, so the full
rerun's times here are upper bounds; the repair's three steps depend on one another anyway.

The critical path (from the full rerun): from the first step's submission to the cluster's
terminate request, measured with the step logs off the critical path (today: `step_logs` copies
them after the teardown). Before the change each step's wait held its dependants (and the
terminate) until its logs were in S3: the old `wait_<step>` looked every 10 s, at most
PIPELINE_EMR_STEP_LOG_WAIT_SECONDS (120) s (plugins/emr_step_logs.py before 729c59b). That
"before" is this same measured run with the old wait added after each step task saw its step
end (10 s x ceil((60 s - what the task already waited) / 10 s)), propagated through the steps'
dependencies to the terminate request; a real scheduler runs those waits side by side, as here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time

from bench import cli, core

DS = "2024-06-28"
PROBE_PREFIX = "REPAIR_PROBE "
# figure 4, a Spark process per step: each job's median wall time (s) on the demo data
JOB_SECONDS = {
    "ingest_sales": 19.4, "ingest_clickstream": 16.3, "ingest_stock_ticks": 17.3, "ingest_referrals": 17.6,
    "ingest_customers": 20.7, "clickstream": 14.2, "sales_rolling": 12.3, "graph": 14.5, "stock_daily": 12.6,
    "features": 17.2, "segments": 20.5, "audit": 23.6, "publish": 12.9,
}  # fmt: skip
START_SECONDS, LOG_DELAY_SECONDS, OLD_LOG_POLL, OLD_LOG_WAIT = 60.0, 60.0, 10.0, 120.0


def probe(start: float, log_delay: float) -> dict:
    import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
    from include import pipeline as P
    from include.run_local import DAG_FILES, load_dag, run_dag_test
    from plugins.emr_naming import parse_emr_step_name
    from plugins.emr_step_logs import STEP_LOG_FILES, step_log_uri
    from tests.harness.airflow_runs import clear_tasks_as_the_ui_does, resume_run
    from tests.harness.aws_fakes import EmrStepPlayer, fails_once
    from tests.harness.dag_runs import record_run

    def step_of(name: str) -> str:
        return (parse_emr_step_name(name) or {}).get("step", name)

    class TimedPlayer(EmrStepPlayer):
        """Each step PENDING until its cluster is `start` s old, then RUNNING for its job's time;
        its logs in S3 `log_delay` s after it ended. Records when each step (by id) appeared,
        started and ended, and when each cluster was first seen and asked to terminate."""

        def __post_init__(self) -> None:
            super().__post_init__()
            self.appeared: dict[str, float] = {}
            self.started: dict[str, float] = {}
            self.ended: dict[str, float] = {}
            self.names: dict[str, str] = {}
            self.cluster_seen: dict[str, float] = {}
            self.terminated: dict[str, float] = {}
            self.logs_due: list[tuple[float, str, str, str]] = []  # (when, cluster, step id, log uri)

        def _loop(self) -> None:
            while not self._stop.wait(0.05):
                now = time.time()  # epoch seconds, comparable with the task instances' end dates
                for cluster in list(self.aws.emr_backend().clusters.values()):
                    seen = self.cluster_seen.setdefault(cluster.id, now)
                    if cluster.id not in self.terminated and cluster.state in ("TERMINATING", "TERMINATED"):
                        self.terminated[cluster.id] = now
                    for step in list(cluster.steps):
                        self.appeared.setdefault(step.id, now)
                        self.names[step.id] = step.name
                        if step.state not in ("PENDING", "RUNNING") or now - seen < start:
                            continue
                        began = self.started.setdefault(step.id, now)
                        step.state = "RUNNING"
                        if now - began < JOB_SECONDS[step_of(step.name)]:
                            continue
                        try:  # leaves the job's metrics record, as a step does
                            step.state = "FAILED" if self.fail(step.name) else self._play(step)
                        except Exception as exc:  # the player's own failure: said when it exits
                            self.errors.append(f"step {step.name}: {type(exc).__name__}: {exc}")
                            step.state = "FAILED"
                        self.ended[step.id] = now
                        self.finished.append((step.name, step.state))
                        for log in STEP_LOG_FILES:
                            uri = step_log_uri(cluster.log_uri, cluster.id, step.id, log)
                            if uri:
                                self.logs_due.append((now + log_delay, cluster.id, step.id, uri))
                for due in [d for d in self.logs_due if d[0] <= now]:
                    self.logs_due.remove(due)
                    bucket, _, key = due[3].removeprefix("s3://").partition("/")
                    body = gzip.compress(f"step {due[2]} on {due[1]}: done\n".encode())
                    self.aws.s3_backend().put_object(bucket, key, body)

    server, aws = core.fake_aws(core.EMR_ENV)
    fail = fails_once("segments")  # segments fails on its first attempt only

    def life(cluster_ids: list[str]) -> float:
        emr = aws.client("emr")
        total = 0.0
        for cid in cluster_ids:
            t = emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["Timeline"]
            total += (t["EndDateTime"] - t["CreationDateTime"]).total_seconds()
        return total

    def clusters() -> list[str]:
        return list(aws.emr_backend().clusters)

    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None  # as run_dag_test
    try:
        with TimedPlayer(aws, fail=fail) as player:
            t0 = time.monotonic()
            failed_run = run_dag_test(dag, DS, {"cluster_profile": "dev"}).run_id
            first_wall = time.monotonic() - t0
            first_state = record_run(dag, failed_run).state
            before = clusters()
            t0 = time.monotonic()
            clear_tasks_as_the_ui_does(dag.dag_id, failed_run, ["run_segments"])
            repair_state = resume_run(dag, failed_run)
            repair_wall = time.monotonic() - t0
            repair_clusters = [c for c in clusters() if c not in before]
            repaired_steps = [
                step_of(n) for s, n in player.names.items() if s in _steps_of(aws, repair_clusters)
            ]

            before = clusters()
            t0 = time.monotonic()
            full_run = run_dag_test(dag, DS, {"cluster_profile": "dev"}).run_id
            full_wall = time.monotonic() - t0
            full = record_run(dag, full_run)
            full_clusters = [c for c in clusters() if c not in before]
        repair_seconds, full_seconds = life(repair_clusters), life(full_clusters)  # moto still up
    finally:
        server.stop()

    (cluster,) = full_clusters
    ids = _steps_of(aws, full_clusters)
    appeared = {step_of(player.names[s]): player.appeared[s] for s in ids}
    ended = {step_of(player.names[s]): player.ended[s] for s in ids if s in player.ended}
    task_end = {t.removeprefix("run_"): e.timestamp() for t, (_, e) in full.task_times.items() if e}
    return {
        "first_state": first_state,
        "first_wall": first_wall,
        "repair_state": repair_state,
        "repair_wall": repair_wall,
        "repair_cluster_seconds": repair_seconds,
        "repair_clusters": len(repair_clusters),
        "repaired_steps": repaired_steps,
        "full_state": full.state,
        "full_wall": full_wall,
        "full_cluster_seconds": full_seconds,
        "full_clusters": len(full_clusters),
        "appeared": appeared,
        "ended": ended,
        "task_end": {s: task_end[s] for s in appeared if s in task_end},
        "terminate_request": player.terminated.get(cluster),
        "depends_on": {
            **{s.name: list(s.depends_on) for s in P.PIPELINE},
            "audit": [s.name for s in P.PIPELINE],
            "publish": ["audit"],
        },
        "start": start,
        "log_delay": log_delay,
        "errors": player.errors,
    }


def _steps_of(aws, cluster_ids: list[str]) -> list[str]:
    backend = aws.emr_backend()
    return [s.id for c in cluster_ids for s in backend.clusters[c].steps]


def critical_path(p: dict, log_wait: bool) -> float:
    """First step submitted -> terminate request of the full rerun: as measured (`log_wait`
    False), or with the old code's wait for each step's logs after its task saw the step end."""
    appeared, ended, task_end, deps = p["appeared"], p["ended"], p["task_end"], p["depends_on"]
    order = [s for s in deps if s in appeared]  # the spec's order is a topological one
    new_end: dict[str, float] = {}
    for s in order:
        mine = [d for d in deps[s] if d in appeared]
        gap = appeared[s] - max(task_end[d] for d in mine) if mine else 0.0  # orchestration, measured
        submitted = max(new_end[d] for d in mine) + gap if mine else appeared[s]
        ran = ended[s] - appeared[s]  # PENDING (cluster start-up, queue) and RUNNING
        seen = task_end[s] - ended[s]  # the step task's poll saw the end
        wait = 0.0
        if log_wait:
            wait = min(OLD_LOG_WAIT, OLD_LOG_POLL * math.ceil(max(0.0, p["log_delay"] - seen) / OLD_LOG_POLL))
        new_end[s] = submitted + ran + seen + wait
    last = max(task_end[s] for s in order)
    return max(new_end.values()) + (p["terminate_request"] - last) - min(appeared.values())


def run_probe(start: float, log_delay: float) -> dict:
    return core.run_probe(
        "bench.fig_repair",
        ["--probe", str(start), "--log-delay", str(log_delay)],
        PROBE_PREFIX,
        "repair probe",
    )


def run(args: argparse.Namespace) -> core.FigureResult:
    load = core.load_average()
    core.work_dir(args.work)
    start = args.start if args.start is not None else (10.0 if args.quick else START_SECONDS)
    n = cli.runs(args, full=1, quick=1)
    probes, loads = [], []
    for _ in range(n):
        loads.append(core.load_average())
        probes.append(run_probe(start, args.log_delay))
    for p in probes:
        states = (p["first_state"], p["repair_state"], p["full_state"])
        if states != ("failed", "success", "success") or p["errors"]:
            raise RuntimeError(f"figure 7: the runs ended {states}; player errors {p['errors']}")

    def timing(key: str) -> core.Timing:
        return core.Timing([p[key] for p in probes])

    rw, fw = timing("repair_wall"), timing("full_wall")
    rc, fc = timing("repair_cluster_seconds"), timing("full_cluster_seconds")
    after = core.Timing([critical_path(p, False) for p in probes])
    before = core.Timing([critical_path(p, True) for p in probes])
    steps = probes[0]["repaired_steps"]
    rows = [
        core.Row("repair (Clear of the failed step task): wall time", rw.min, rw.median,
                 note=f"{probes[0]['repair_clusters']} new cluster ran {', '.join(steps)}"),
        core.Row("full rerun of the same date: wall time", fw.min, fw.median),
        core.Row("repair: cluster time", rc.min, rc.median, note=f"cluster start-up {start:g} s (scaled)"),
        core.Row("full rerun: cluster time", fc.min, fc.median),
        core.Row("repair / full rerun, cluster time", rc.median / fc.median * 100, None, unit="%"),
        core.Row("critical path, step logs off it (measured)", after.min, after.median,
                 note="first step submitted -> terminate request"),
        core.Row(f"critical path, old wait for each step's logs (logs {args.log_delay:g} s late)",
                 before.min, before.median, note="the measured run + the old 10 s-poll wait per step"),
        core.Row("cluster time the log change saves per night", before.median - after.median, None),
    ]  # fmt: skip
    summary = (
        f"repair {rw.median:.0f}s wall / {rc.median:.0f}s cluster vs full rerun {fw.median:.0f}s / "
        f"{fc.median:.0f}s ({rc.median / fc.median:.0%} of its cluster time; steps of figure 4's job times, "
        f"cluster start {start:g}s); critical path with logs {args.log_delay:g}s late: "
        f"{after.median:.0f}s now, {before.median:.0f}s with the old per-step log wait"
    )
    return core.FigureResult(
        figure=7,
        name="repair",
        title="EMR under moto: a repaired run vs a full rerun; step logs off the critical path",
        summary=summary,
        load_start=load,
        rows=rows,
        details={"probes": probes, "runs": n, "loads": loads},
        ok=None,
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--start", type=float, default=None, help=f"cluster start-up seconds ({START_SECONDS:g})")
    p.add_argument(
        "--log-delay", type=float, default=LOG_DELAY_SECONDS, help="step end -> its logs in S3 (s)"
    )
    p.add_argument("--probe", type=float, metavar="START", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe is not None:
        print(PROBE_PREFIX + json.dumps(probe(args.probe, args.log_delay), default=str), flush=True)
        return
    run(args).emit()


if __name__ == "__main__":
    main()
