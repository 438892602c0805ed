"""`python -m bench.orchestration_cost [--delay S] [--poll S]`: what orchestrating one nightly costs on
the emr and the emr-serverless targets under moto: the DAG's tasks and the task instances that ran,
the AWS API calls the run made (by service, and the compute service's by action) and dag.test()'s
wall time; prints the markdown table docs/BENCHMARKS.md holds.

Each target runs in a process of its own (`--probe TARGET`): a throwaway Airflow home, moto as a
server in the process recording every request (tests/harness/aws_fakes.FakeAws), the nightly of
every output with `dag.test()` while a player ends each EMR step (EmrStepPlayer) or job run
(tests/harness/serverless_fakes.JobRunPlayer) `--delay` seconds after it appears, SUCCESS, with the
job's metrics record; no Spark runs. Sensors and deferred job runs poll every `--poll` seconds.
dag.test() runs one task at a time and each trigger inline, so the wall times are upper bounds of
a scheduler's and compare the two targets' orchestration, not Spark.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from bench import core

DS = "2024-06-28"
PROBE_PREFIX = "ORCHESTRATION_PROBE "
TARGETS = ("emr", "emr-serverless")


def probe(target: str, delay: float, poll: int) -> dict:
    import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
    from tests.harness.aws_fakes import EmrStepPlayer
    from tests.harness.dag_runs import run_pipeline_dag
    from tests.harness.serverless_fakes import JobRunPlayer, serverless_requests
    from tests.harness.settings import SERVERLESS_ENV

    env = core.EMR_ENV if target == "emr" else {**SERVERLESS_ENV, **_bench_prefix()}
    server, aws = core.fake_aws({**env, "PIPELINE_EMR_POLL_SECONDS": str(poll)})
    aws.forget_requests()
    player = EmrStepPlayer if target == "emr" else JobRunPlayer
    try:
        with player(aws, delay=lambda name: delay):
            start = time.monotonic()
            run = run_pipeline_dag("nightly", DS, {"cluster_profile": "dev"})
            wall = time.monotonic() - start
        requests = aws.requests()
        if target == "emr":
            compute = Counter(
                r.action.split(".", 1)[1] for r in requests if r.action.startswith("ElasticMapReduce.")
            )
        else:
            compute = Counter(r.action for r in serverless_requests(aws))
    finally:
        server.stop()
    ran = {t: s for t, s in run.task_states.items() if s not in ("skipped", None, "None")}
    return {
        "target": target,
        "state": run.state,
        "wall": wall,
        "tasks": len(run.task_states),
        "ran": len(ran),
        "calls": len(requests),
        "by_service": dict(Counter(r.service for r in requests)),
        "compute": dict(compute),
        "task_states": run.task_states,
    }


def _bench_prefix() -> dict[str, str]:
    return {"PIPELINE_GLUE_DATABASE_PREFIX": core.EMR_ENV["PIPELINE_GLUE_DATABASE_PREFIX"]}


def table(probes: list[dict], delay: float, poll: int, load: float) -> str:
    by = {p["target"]: p for p in probes}
    services = sorted({s for p in probes for s in p["by_service"]})
    rows = [
        ("run state", *(by[t]["state"] for t in TARGETS)),
        ("tasks in the DAG", *(str(by[t]["tasks"]) for t in TARGETS)),
        ("task instances that ran (not skipped)", *(str(by[t]["ran"]) for t in TARGETS)),
        ("AWS API calls", *(str(by[t]["calls"]) for t in TARGETS)),
        *[(f"of which {s}", *(str(by[t]["by_service"].get(s, 0)) for t in TARGETS)) for s in services],
        ("dag.test() wall time (s)", *(f"{by[t]['wall']:.1f}" for t in TARGETS)),
    ]
    compute = {
        t: ", ".join(f"{a} {n}" for a, n in sorted(by[t]["compute"].items(), key=lambda kv: -kv[1]))
        for t in TARGETS
    }
    lines = [
        f"Measured by `python -m bench.orchestration_cost --delay {delay:g} --poll {poll}` "
        f"(load average {load:.2f} at its start).",
        "",
        "| measure | emr | emr-serverless |",
        "|---|---:|---:|",
        *[f"| {m} | {a} | {b} |" for m, a, b in rows],
        "",
        f"EMR calls by action: {compute['emr']}.",
        "",
        f"EMR Serverless calls by action: {compute['emr-serverless']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay", type=float, default=2.0, help="seconds each step or job run takes")
    p.add_argument("--poll", type=int, default=2, help="seconds between a waiting task's polls")
    p.add_argument("--probe", choices=TARGETS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        print(PROBE_PREFIX + json.dumps(probe(args.probe, args.delay, args.poll), default=str), flush=True)
        return
    load = core.load_average()
    probes = []
    for target in TARGETS:
        argv_probe = ["--probe", target, "--delay", str(args.delay), "--poll", str(args.poll)]
        probes.append(core.run_probe("bench.orchestration_cost", argv_probe, PROBE_PREFIX, f"{target} probe"))
    for found in probes:
        if found["state"] != "success":
            bad = {t: s for t, s in found["task_states"].items() if s != "success"}
            raise RuntimeError(f"{found['target']}: the nightly ended {found['state']}: {bad}")
    print(table(probes, args.delay, args.poll, load))


if __name__ == "__main__":
    main()
