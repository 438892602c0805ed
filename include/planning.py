"""A run's plan: the pure planners of the nightly and the backfill, the write-audit-publish
commands, and the `plan` task that validates a run's parameters and derives every task's
arguments from them before anything reaches AWS or a command line.

Every date comes from the run (`include/run_dates.py`: the form's date, the data interval's day,
or the last complete UTC day) or the requested range. The planners take plain values, so they
are tested without Airflow.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task

from include import pipeline as P
from include.cluster_profiles import cluster_tags, job_flow_overrides
from include.lake_files import lake_io
from include.lineage import spark_properties
from include.packaging import code_location
from include.params import checked_profile
from include.run_dates import run_ds
from include.run_plan import PLAN_XCOM_KEY, JobCall, backfill_plan, nightly_plan
from include.settings import Settings
from include.targets.local import spark_server_socket
from spark_jobs.paths import audit_uri

log = logging.getLogger(__name__)


def plan_nightly(
    settings: Settings,
    *,
    dag_id: str,
    run_id: str,
    ds: str,
    params: dict[str, Any],
    code: dict[str, str] | None,
) -> dict[str, Any]:
    """Everything a nightly run's tasks need, keyed for `multiple_outputs` (flat keys); under
    `run_plan` each step as the later tasks and the run report read it (`include.run_plan`)."""
    ds = P.check_ds(ds, "the logical date")
    profile = checked_profile(params)
    outputs = P.check_outputs(params.get("outputs"))
    start = params.get("ingest_start_ds")
    if start is not None:
        start = P.check_ds(start, "ingest_start_ds")
        P.check_range(start, ds, max_days=P.MAX_INGEST_HISTORY_DAYS, what="ingest_start_ds .. ds")
    steps = P.steps_for(outputs)
    branch = P.audit_branch(run_id)
    plan: dict[str, Any] = {"ds": ds, "outputs": outputs, "steps": [s.name for s in steps], "branch": branch}
    if not settings.is_emr:
        plan["spark_server"] = spark_server_socket(dag_id, run_id) if settings.local_spark_server else None
    # Every step has an entry; an empty one tells its task that no requested output needs it,
    # and the task skips (what follows it is skipped by the trigger rules).
    for step in P.PIPELINE:
        plan[f"step:{step.name}"] = []
    calls = {
        step.name: JobCall(step, ds=ds, lake=settings.lake, start_ds=start, run_id=run_id, branch=branch)
        for step in steps
    }
    # Write-audit-publish: every step commits to the run's branch; the audit checks what they
    # wrote there; only then does publish make it what readers see.
    wap = wap_calls(settings, ds=ds, run_id=run_id, branch=branch, steps=list(calls), params=params)
    plan["checks"] = wap.pop("checks")
    calls.update(wap)
    run = nightly_plan(dag_id=dag_id, run_id=run_id, ds=ds, branch=branch, calls=calls, emr=settings.is_emr)
    plan[PLAN_XCOM_KEY] = run.to_xcom()
    emr_names = {planned.step: planned.emr_step_name for planned in run.steps}
    for name, call in calls.items():
        if settings.is_emr:
            assert code is not None  # noqa: S101 (emr plans always get the code location)
            plan[f"step:{name}"] = [call.emr_step(emr_names[name], **code_args(settings, code))]
        else:
            plan[f"step:{name}"] = [call.args]
    if settings.is_emr:
        tags = cluster_tags(dag_id=dag_id, run_id=run_id, ds=ds, profile=profile, extra=settings.extra_tags)
        plan["job_flow_overrides"] = job_flow_overrides(profile, settings, name=f"{dag_id}-{ds}", tags=tags)
        plan["code"] = code
    return plan


def plan_backfill(
    settings: Settings, *, dag_id: str, run_id: str, params: dict[str, Any], code: dict[str, str] | None
) -> dict[str, Any]:
    """A date range on one cluster: ranged ingest per dataset, then each date's steps, dates in order.

    emr: `batches` (each batch runs side by side, the next starts when it completed);
    local: `commands` (run one after another); both: `run_plan`, each step of each date as the
    run report reads it (`include.run_plan`).
    """
    start = P.check_ds(params.get("start_ds"), "start_ds")
    end = P.check_ds(params.get("end_ds"), "end_ds")
    dates = P.check_range(start, end, max_days=P.MAX_BACKFILL_DAYS, what="start_ds .. end_ds")
    profile = checked_profile(params)
    ranged = [s for s in P.PIPELINE if s.ranged]
    daily = [s for s in P.PIPELINE if not s.ranged]
    if any(dep not in {r.name for r in ranged} for s in ranged for dep in s.depends_on):
        raise ValueError("a ranged step depends on a per-date step; it cannot run first")

    # (label of the dates, job call) in execution order, grouped into batches; every step commits
    # to the run's branch; then one audit of every date, then publish.
    lake = settings.lake
    branch = P.audit_branch(run_id)
    batches: list[list[tuple[str, JobCall]]] = [
        [
            (f"{start}..{end}", JobCall(s, ds=end, lake=lake, start_ds=start, run_id=run_id, branch=branch))
            for s in ranged
        ]
    ]
    for ds in dates:
        for wave in P.waves(daily):
            batches.append([(ds, JobCall(s, ds=ds, lake=lake, run_id=run_id, branch=branch)) for s in wave])
    wap = wap_calls(
        settings,
        ds=end,
        run_id=run_id,
        branch=branch,
        steps=[s.name for s in P.PIPELINE],
        params=params,
        start_ds=start,
    )
    batches.append([(f"{start}..{end}", wap["audit"])])
    batches.append([(end, wap["publish"])])

    run = backfill_plan(
        dag_id=dag_id,
        run_id=run_id,
        ds=end,
        branch=branch,
        calls=[call for batch in batches for call in batch],
        emr=settings.is_emr,
    )
    plan: dict[str, Any] = {
        "dates": dates,
        "start_ds": start,
        "end_ds": end,
        "branch": branch,
        "checks": wap["checks"],
        PLAN_XCOM_KEY: run.to_xcom(),
    }
    if not settings.is_emr:
        plan["commands"] = [call.args for batch in batches for _, call in batch]
        plan["spark_server"] = spark_server_socket(dag_id, run_id) if settings.local_spark_server else None
        return plan
    assert code is not None  # noqa: S101
    emr_names = {(planned.step, planned.label): planned.emr_step_name for planned in run.steps}
    plan["batches"] = [
        [
            call.emr_step(emr_names[(call.step.name, label)], **code_args(settings, code))
            for label, call in batch
        ]
        for batch in batches
    ]
    tags = cluster_tags(
        dag_id=dag_id, run_id=run_id, ds=f"{start}..{end}", profile=profile, extra=settings.extra_tags
    )
    plan["job_flow_overrides"] = job_flow_overrides(
        profile, settings, name=f"{dag_id}-{start}-{end}", tags=tags
    )
    plan["code"] = code
    return plan


def wap_calls(
    settings: Settings,
    *,
    ds: str,
    run_id: str,
    branch: str,
    steps: list[str],
    params: dict[str, Any],
    start_ds: str | None = None,
) -> dict[str, Any]:
    """The audit's and publish's job calls of a run whose `steps` write to `branch`, and the
    run's checks (`checks`: the JSON and where the audit reads it)."""
    from include.checks import checks_json, tables_of

    lake = settings.lake
    checks_uri = audit_uri(lake, ds, branch, "checks")
    despite = params.get("publish_despite_warnings", True)
    if not isinstance(despite, bool):
        raise P.RunParamError(f"publish_despite_warnings must be true or false, got {despite!r}")
    # off: the form asked for a clean audit
    options = ("--checks-uri", checks_uri, *(() if despite else ("--warnings-block",)))
    audit = JobCall(P.AUDIT, ds=ds, lake=lake, start_ds=start_ds, run_id=run_id, branch=branch, extra=options)
    publish = JobCall(P.PUBLISH, ds=ds, lake=lake, run_id=run_id, branch=branch)
    # the plan task writes the checks where the audit reads them
    checks = {"uri": checks_uri, "json": checks_json(settings.audit, tables_of(steps))}
    return {"audit": audit, "publish": publish, "checks": checks}


def code_args(settings: Settings, code: dict[str, str]) -> dict[str, Any]:
    return {
        "py_files": code["py_files"],
        "entrypoint": code["entrypoint"],
        "jars": code.get("jars"),
        "conf": spark_properties(settings),  # the jobs' lineage settings (none when it is off)
    }


def plan_task(settings: Settings, kind: str):
    @task(task_id="plan", multiple_outputs=True, retries=0)
    def plan() -> dict[str, Any]:
        """Validate the run's parameters and derive every task's arguments from them."""
        ctx = get_current_context()
        code = None
        if settings.is_emr:
            from include.packaging import build_bundle

            code = code_location(settings, build_bundle().version)
        common = {
            "dag_id": ctx["dag"].dag_id,
            "run_id": ctx["run_id"],
            "params": dict(ctx["params"]),
            "code": code,
        }
        if kind == "nightly":
            run = ctx["dag_run"]
            ds, why = run_ds(
                run_type=run.run_type,
                logical_date=run.logical_date,
                data_interval_start=run.data_interval_start,
                run_after=run.run_after,
                requested=common["params"].get("ds"),
            )
            log.info("building %s because %s", ds, why)
            plan = plan_nightly(settings, ds=ds, **common)
        else:
            plan = plan_backfill(settings, **common)
        # the run's checks, where its audit step reads them (validated above, written once)
        _, write = lake_io(settings.aws_conn_id, settings.region)
        write(plan["checks"]["uri"], plan["checks"]["json"])
        plan["checks"] = plan["checks"]["uri"]
        return plan

    return plan()
