"""Figure 5: EMR orchestration latency under moto, steps completing a fixed delay after they appear.

The nightly DAG of the emr target runs with `dag.test()` against moto (a server in this
process, as in tests/dags); a player thread (tests/harness/aws_fakes.EmrStepPlayer's loop, with
timestamps) completes every step `--delay` seconds after it is submitted and notes when each
step appeared, ended, and when the cluster was asked to terminate. Measured: for each step
that waits on other steps, the time from the last of those steps' end to its own submission,
and from the last step's end to the terminate request. Sensors are deferrable and poll every
PIPELINE_EMR_POLL_SECONDS (the settings' default unless --poll is given); dag.test() runs
their triggers inline, one task at a time, so this is an upper bound for a real scheduler.
"""

from __future__ import annotations

import argparse
import json
import time

from bench import cli, core

DS = "2024-06-28"
PROBE_PREFIX = "EMR_PROBE "
FULL_DELAY, QUICK_DELAY = 20.0, 2.0


def probe(delay: float, poll: int | None) -> dict:
    import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
    from include import pipeline as P
    from include.settings import Settings
    from plugins.emr_naming import parse_emr_step_name
    from tests.harness.aws_fakes import EmrStepPlayer
    from tests.harness.dag_runs import run_pipeline_dag

    class TimedPlayer(EmrStepPlayer):
        """EmrStepPlayer that also records when each step appeared and ended, and the termination."""

        def __post_init__(self) -> None:
            super().__post_init__()
            self.appeared: dict[str, float] = {}
            self.ended: dict[str, float] = {}
            self.terminated: float | None = None

        def _loop(self) -> None:
            while not self._stop.wait(0.05):
                now = time.time()  # epoch seconds, comparable with the task instances' end dates
                for cluster in list(self.aws.emr_backend().clusters.values()):
                    if self.terminated is None and cluster.state in ("TERMINATING", "TERMINATED"):
                        self.terminated = now
                    for step in list(cluster.steps):
                        self.appeared.setdefault(step.name, now)
                        if step.state in ("PENDING", "RUNNING") and now - self.appeared[step.name] >= delay:
                            try:  # leaves the job's metrics record, as a step does
                                step.state = self._play(step)
                            except Exception as exc:  # the player's own failure: said when it exits
                                self.errors.append(f"step {step.name}: {type(exc).__name__}: {exc}")
                                step.state = "FAILED"
                            self.ended[step.name] = now
                            self.finished.append((step.name, step.state))

    poll_seconds = poll or Settings.poll_seconds
    server, aws = core.fake_aws({**core.EMR_ENV, "PIPELINE_EMR_POLL_SECONDS": str(poll_seconds)})
    try:
        with TimedPlayer(aws) as player:
            start = time.monotonic()
            run = run_pipeline_dag("nightly", DS, {"cluster_profile": "dev"})
            wall = time.monotonic() - start
    finally:
        server.stop()

    def step_of(name: str) -> str:
        return (parse_emr_step_name(name) or {}).get("step", name)

    appeared = {step_of(k): v for k, v in player.appeared.items()}
    ended = {step_of(k): v for k, v in player.ended.items()}
    sensed = sensor_end_times(run.run_id)
    gaps, detect = {}, {}
    for step in P.PIPELINE:
        if step.depends_on and step.name in appeared and all(d in ended for d in step.depends_on):
            last = max(step.depends_on, key=lambda d: ended[d])
            gaps[step.name] = appeared[step.name] - ended[last]
            if f"run_{last}" in sensed:
                # how long the step task of the last dependency took to see its step end
                detect[step.name] = sensed[f"run_{last}"] - ended[last]
    terminate = player.terminated - max(ended.values()) if player.terminated and ended else None
    return {
        "state": run.state,
        "wall": wall,
        "poll_seconds": poll_seconds,
        "delay": delay,
        "steps": len(ended),
        "gaps": gaps,
        "detection": detect,
        "terminate": terminate,
        "task_states": run.task_states,
    }


def sensor_end_times(run_id: str) -> dict[str, float]:
    """task_id -> end (epoch seconds) of the run_<step> tasks of the run (each adds its step and waits)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_id == run_id)).all()
        return {
            ti.task_id: ti.end_date.timestamp()
            for ti in tis
            if ti.task_id.startswith("run_") and ti.task_id != "run_report" and ti.end_date
        }


def run_probe(delay: float, poll: int | None) -> dict:
    args = ["--probe", str(delay)] + (["--poll", str(poll)] if poll else [])
    return core.run_probe("bench.fig_emr", args, PROBE_PREFIX, "EMR probe")


def run(args: argparse.Namespace) -> core.FigureResult:
    load = core.load_average()
    core.work_dir(args.work)
    delay = QUICK_DELAY if args.quick else FULL_DELAY
    poll = args.poll or (2 if args.quick else None)
    n = cli.runs(args, full=3, quick=1)
    probes, loads = [], []
    for _ in range(n):
        loads.append(core.load_average())  # each run's own: the load moves between runs
        probes.append(run_probe(delay, poll))
    for p in probes:  # a latency of a run that failed measures nothing: say which tasks, stop
        if p["state"] != "success":
            bad = {t: s for t, s in p["task_states"].items() if s != "success"}
            raise RuntimeError(f"figure 5: the DAG run ended {p['state']}: {bad}")
    gaps = core.Timing([g for p in probes for g in p["gaps"].values()])
    terms = [p["terminate"] for p in probes if p["terminate"] is not None]
    term = core.Timing(terms) if terms else None
    wall = core.Timing([p["wall"] for p in probes])
    states = [p["state"] for p in probes]
    poll_s = probes[0]["poll_seconds"]
    rows = [
        core.Row(
            f"step end -> next step submitted ({len(gaps.runs)} waits; max {max(gaps.runs):.1f}s)",
            gaps.min,
            gaps.median,
            target="< 60",
            met=max(gaps.runs) < 60,
            note=f"poll {poll_s}s, steps take {delay:g}s",
        ),
        core.Row(
            "last step end -> terminate request",
            term.min if term else None,
            term.median if term else None,
            target="< 60",
            met=bool(term) and max(terms) < 60,
        ),
        core.Row("dag.test wall time", wall.min, wall.median),
    ]
    per_step: dict[str, list[float]] = {}
    for p in probes:
        for name, g in p["gaps"].items():
            per_step.setdefault(name, []).append(g)
    detection = [d for p in probes for d in p.get("detection", {}).values()]
    if detection:
        t = core.Timing(detection)
        rows.insert(
            1,
            core.Row(
                f"of which: step end -> its sensor succeeds (max {max(detection):.1f}s)",
                t.min,
                t.median,
                note="the rest is dag.test running the other ready tasks one at a time",
            ),
        )
    for name, values in per_step.items():
        t = core.Timing(values)
        rows.append(core.Row(f"wait before `{name}`", t.min, t.median))
    summary = (
        f"EMR under moto (steps {delay:g}s, poll {poll_s}s): step end -> next step median {gaps.median:.1f}s "
        f"max {max(gaps.runs):.1f}s, last step -> terminate "
        f"{f'{term.median:.1f}s' if term else 'never'} (target < 60 s each), runs {states}, "
        f"loads at each run's start {loads}"
    )
    return core.FigureResult(
        figure=5,
        name="emr",
        title="EMR orchestration latency under moto (deferrable sensors)",
        summary=summary,
        load_start=load,
        rows=rows,
        details={"probes": probes, "runs": n, "loads": loads},
        ok=all(r.met for r in rows if r.met is not None) and all(s == "success" for s in states),
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument(
        "--poll", type=int, default=None, help="sensor poll seconds (default: the settings' default)"
    )
    p.add_argument("--probe", type=float, metavar="DELAY", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe is not None:
        print(PROBE_PREFIX + json.dumps(probe(args.probe, args.poll), default=str), flush=True)
        return
    run(args).emit()


if __name__ == "__main__":
    main()
