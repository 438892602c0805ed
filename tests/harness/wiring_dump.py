"""What the pipeline's DAGs are wired to do, as plain JSON, to compare before and after a restructuring.

For every target: each DAG's tasks (type, group, upstream ids, trigger rule, setup/teardown) and,
for a nightly of every output, a subset, a landing history ingest with a blocking audit, a
backfill and the maintenance job, what each step task is handed (its command lines on the local
target, its EMR steps on emr, its job runs on emr-serverless), the run's `RunPlan`, checks and
cluster request (the application's on emr-serverless). Parse-level: the DAGs are built and the
plans rendered by the planners, nothing runs and nothing reaches AWS.

    python -m tests.harness.wiring_dump OUT.json    # then: diff BEFORE.json OUT.json
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any

import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
from tests.harness.settings import EMR_ENV, SERVERLESS_ENV

RUN_ID = "manual__2024-06-30T00:00:00+00:00"
DS = "2024-06-30"
CODE_VERSION = "0123456789ab"
TARGETS = {
    "local": {"PIPELINE_TARGET": "local", "PIPELINE_LAKE": "file:///tmp/wiring-dump-lake"},
    "emr": {**EMR_ENV, "PIPELINE_EMR_POLL_SECONDS": "30"},
    "emr-serverless": {**SERVERLESS_ENV, "PIPELINE_EMR_POLL_SECONDS": "30"},
}
# DAG variants: the Kinesis landing task, the local target without its warm Spark application
VARIANTS = {
    "default": {},
    "kinesis": {"PIPELINE_CLICKSTREAM_KINESIS_STREAM": "clicks"},
    "no_spark_server": {"PIPELINE_LOCAL_SPARK_SERVER": "false"},
}
NIGHTLY_CASES = {
    "nightly": {},
    "subset": {"outputs": ["customer_segments", "stock_daily"]},
    "history": {"ingest_start_ds": "2024-06-01", "publish_despite_warnings": False},
}


@contextmanager
def _env(values: dict[str, str]):
    saved = {k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("PIPELINE_")]:
            del os.environ[key]
        os.environ.update(saved)


def dag_structure(dag: Any) -> dict[str, Any]:
    tasks = {}
    for t in sorted(dag.tasks, key=lambda t: t.task_id):
        group = t.task_group.group_id if t.task_group is not None else None
        tasks[t.task_id] = {
            "type": type(t).__name__,
            "group": group,
            "upstream": sorted(t.upstream_task_ids),
            "trigger_rule": str(t.trigger_rule),
            "setup": t.is_setup,
            "teardown": t.is_teardown,
            "retries": t.retries,
        }
    return tasks


def _builders():
    from include.dag_factory import build_backfill_dag, build_nightly_dag
    from include.upkeep import build_maintenance_dag

    return {
        "nightly": build_nightly_dag,
        "backfill": build_backfill_dag,
        "maintenance": build_maintenance_dag,
    }


def _planners(settings: Any):
    """The planners' rendering of what each task is handed: (nightly, backfill, maintenance).
    Works on the start commit of #29 (a flat dict with `step:<name>` keys) and after it (a
    `RunPlan`, each task rendering its own)."""
    try:
        from include.planning import plan_backfill, plan_nightly
    except ImportError:  # before the planners left include/dag_factory.py (#29's start commit)
        from include.dag_factory import plan_backfill, plan_nightly
    from include.upkeep import plan_maintenance

    def tasks_of(plan: dict[str, Any]) -> dict[str, Any]:
        out = {f"run_{k.removeprefix('step:')}": v for k, v in plan.items() if k.startswith("step:")}
        if "batches" in plan:
            out["run_steps"] = plan["batches"]
        if "commands" in plan:
            out["run_steps"] = plan["commands"]
        return out

    def common(plan: Any) -> dict[str, Any]:
        if isinstance(plan, dict):  # the start commit's flat plan
            keep = ("run_plan", "job_flow_overrides", "code", "checks", "spark_server", "ds")
            return {"tasks": tasks_of(plan), **{k: plan.get(k) for k in keep}}
        return _rendered(settings, plan)

    def nightly(code, params):
        return common(
            plan_nightly(settings, dag_id="nightly", run_id=RUN_ID, ds=DS, params=params, code=code)
        )

    def backfill(code, params):
        return common(plan_backfill(settings, dag_id="backfill", run_id=RUN_ID, params=params, code=code))

    def maintenance(code, keep_days):
        plan = plan_maintenance(
            settings, dag_id="maintenance", run_id=RUN_ID, ds=DS, keep_days=keep_days, code=code
        )
        return common(plan)

    return nightly, backfill, maintenance


def _rendered(settings: Any, run: Any) -> dict[str, Any]:
    """What each task renders from a `RunPlan` (include/targets), in the start commit's terms."""
    from include.lineage import spark_properties
    from include.planning import checks

    conf = spark_properties(settings)
    tasks: dict[str, Any] = {}
    if {p.task_id for p in run.steps} == {"run_steps"}:
        if settings.is_serverless:
            tasks["run_steps"] = run.job_run_batches(conf)
        else:
            tasks["run_steps"] = run.emr_batches(conf) if settings.is_emr else run.commands()
    else:
        for p in run.steps:
            if settings.is_serverless:
                tasks[p.task_id] = run.job_runs(p.step, conf)
            else:
                tasks[p.task_id] = run.emr_steps(p.step, conf) if settings.is_emr else run.commands(p.step)
    # what #29 added to the plan, and #30's Serverless setup (below, on its target only)
    old = ("call", "batch", "spark_server", "code", "cluster", "checks_uri", "serverless")
    xcom = run.to_xcom()
    xcom["steps"] = [{k: v for k, v in s.items() if k not in old} for s in xcom["steps"]]
    serverless = {"serverless": run.serverless} if settings.is_serverless else {}
    return {
        **serverless,
        "tasks": tasks,
        "run_plan": {k: v for k, v in xcom.items() if k not in old},
        "job_flow_overrides": run.cluster,
        "code": run.code,
        "checks": {"uri": run.checks_uri, "json": checks(settings, run)} if run.checks_uri else None,
        "spark_server": run.spark_server,
        "ds": run.ds,
    }


def dump() -> dict[str, Any]:
    from include.packaging import code_location
    from include.settings import load_settings

    out: dict[str, Any] = {"dags": {}, "plans": {}}
    for target, env in TARGETS.items():
        for variant, extra in VARIANTS.items():
            with _env({**env, **extra}):
                settings = load_settings()
                for name, build in _builders().items():
                    out["dags"][f"{target}/{variant}/{name}"] = dag_structure(build(settings))
        with _env(env):
            settings = load_settings()
            code = code_location(settings, CODE_VERSION) if settings.on_aws else None
            nightly, backfill, maintenance = _planners(settings)
            base = {"cluster_profile": "dev", "outputs": None, "ingest_start_ds": None}
            for case, params in NIGHTLY_CASES.items():
                params = {**base, **params}
                if params["outputs"] is None:
                    from include import pipeline as P

                    params["outputs"] = list(P.OUTPUTS)
                out["plans"][f"{target}/{case}"] = nightly(code, params)
            window = {"start_ds": "2024-06-28", "end_ds": DS, "cluster_profile": "prod"}
            out["plans"][f"{target}/backfill"] = backfill(code, window)
            out["plans"][f"{target}/maintenance"] = maintenance(code, 14)
    return out


if __name__ == "__main__":
    text = json.dumps(dump(), indent=1, sort_keys=True, default=str)
    with open(sys.argv[1], "w") as f:
        f.write(text + "\n")
