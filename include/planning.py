"""A run's plan: the pure planners of the nightly and the backfill, the write-audit-publish
calls, and the `plan` task that validates a run's parameters and derives every task's
arguments from them before anything reaches AWS or a command line. What the plan task hands
on is one `RunPlan` (`include.run_plan`, the XCom `run_plan`); each task renders from it what
it runs.

Every date comes from the run (`include/run_dates.py`: the form's date, the data interval's day,
or the last complete UTC day) or the requested range. The planners take plain values, so they
are tested without Airflow.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task

from include import pipeline as P
from include import serverless_profiles as S
from include.cluster_profiles import cluster_tags, job_flow_overrides
from include.dag_parts import STEP_TIMEOUT
from include.lake_files import lake_io
from include.packaging import code_location
from include.params import checked_profile
from include.run_dates import run_ds
from include.run_plan import PLAN_XCOM_KEY, JobCall, RunPlan, backfill_plan, nightly_plan
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
) -> RunPlan:
    """Every step of a nightly run for `ds`: the steps the requested outputs need (the others
    are planned unselected: their tasks skip), then the audit and publish."""
    ds = P.check_ds(ds, "the logical date")
    profile = checked_profile(params)
    outputs = P.check_outputs(params.get("outputs"))
    start = params.get("ingest_start_ds")
    if start is not None:
        start = P.check_ds(start, "ingest_start_ds")
        P.check_range(start, ds, max_days=P.MAX_INGEST_HISTORY_DAYS, what="ingest_start_ds .. ds")
    branch = P.audit_branch(run_id)
    calls = {
        step.name: JobCall(step, ds=ds, lake=settings.lake, start_ds=start, run_id=run_id, branch=branch)
        for step in P.steps_for(outputs)
    }
    # Write-audit-publish: every step commits to the run's branch; the audit checks what they
    # wrote there; only then does publish make it what readers see.
    calls.update(wap_calls(settings, ds=ds, run_id=run_id, branch=branch, params=params))
    setup = setup_of(
        settings, dag_id=dag_id, run_id=run_id, label=ds, name=f"{dag_id}-{ds}", profile=profile, code=code
    )
    return nightly_plan(
        dag_id=dag_id,
        run_id=run_id,
        ds=ds,
        branch=branch,
        calls=calls,
        emr=settings.on_aws,
        checks_uri=audit_uri(settings.lake, ds, branch, "checks"),
        **setup,
    )


def plan_backfill(
    settings: Settings, *, dag_id: str, run_id: str, params: dict[str, Any], code: dict[str, str] | None
) -> RunPlan:
    """A date range in one run: ranged ingest per dataset, then each date's steps, dates in
    order, in batches (a batch runs side by side on EMR, the next once it completed; one after
    the other locally); then the audit of every date, then publish."""
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
    wap = wap_calls(settings, ds=end, run_id=run_id, branch=branch, params=params, start_ds=start)
    batches.append([(f"{start}..{end}", wap["audit"])])
    batches.append([(end, wap["publish"])])
    name = f"{dag_id}-{start}-{end}"
    setup = setup_of(
        settings, dag_id=dag_id, run_id=run_id, label=f"{start}..{end}", name=name, profile=profile, code=code
    )
    return backfill_plan(
        dag_id=dag_id,
        run_id=run_id,
        ds=end,
        branch=branch,
        batches=batches,
        emr=settings.on_aws,
        checks_uri=audit_uri(lake, end, branch, "checks"),
        **setup,
    )


def wap_calls(
    settings: Settings,
    *,
    ds: str,
    run_id: str,
    branch: str,
    params: dict[str, Any],
    start_ds: str | None = None,
) -> dict[str, JobCall]:
    """The audit's and publish's job calls of a run whose steps write to `branch`; the audit
    reads the run's checks where the plan task writes them (`checks`)."""
    despite = params.get("publish_despite_warnings", True)
    if not isinstance(despite, bool):
        raise P.RunParamError(f"publish_despite_warnings must be true or false, got {despite!r}")
    lake = settings.lake
    # off: the form asked for a clean audit
    options = (
        "--checks-uri",
        audit_uri(lake, ds, branch, "checks"),
        *(() if despite else ("--warnings-block",)),
    )
    audit = JobCall(P.AUDIT, ds=ds, lake=lake, start_ds=start_ds, run_id=run_id, branch=branch, extra=options)
    publish = JobCall(P.PUBLISH, ds=ds, lake=lake, run_id=run_id, branch=branch)
    return {"audit": audit, "publish": publish}


def checks(settings: Settings, run: RunPlan) -> dict[str, Any]:
    """The run's checks (include/checks.py) over the tables its selected steps write."""
    from include.checks import checks_json, tables_of

    selected = {p.step for p in run.steps if p.selected}
    return checks_json(settings.audit, tables_of([s.name for s in P.PIPELINE if s.name in selected]))


def setup_of(
    settings: Settings,
    *,
    dag_id: str,
    run_id: str,
    label: str,
    name: str,
    profile: str,
    code: dict[str, str] | None,
) -> dict[str, Any]:
    """What a run's setup needs: locally its Spark application's socket (None: a process a step);
    on EMR the code location and the cluster request, on EMR Serverless the code location, the
    application's request and what its job runs share; both tagged with the run."""
    if not settings.on_aws:
        return {"spark_server": spark_server_socket(dag_id, run_id) if settings.local_spark_server else None}
    if code is None:
        raise ValueError("an AWS run's plan needs the code location")
    tags = cluster_tags(dag_id=dag_id, run_id=run_id, ds=label, profile=profile, extra=settings.extra_tags)
    if settings.is_serverless:
        application = S.application_request(profile, settings, dag_id=dag_id, run_id=run_id, tags=tags)
        timeout = int(STEP_TIMEOUT.total_seconds()) // 60
        job = S.job_defaults(profile, settings, tags=tags, timeout_minutes=timeout)
        return {"code": code, "serverless": {"application": application, "job": job}}
    return {"code": code, "cluster": job_flow_overrides(profile, settings, name=name, tags=tags)}


def plan_task(settings: Settings, kind: str):
    @task(task_id="plan", multiple_outputs=True, retries=0)
    def plan() -> dict[str, Any]:
        """Validate the run's parameters and derive every task's arguments from them."""
        ctx = get_current_context()
        code = None
        if settings.on_aws:
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
            planned = plan_nightly(settings, ds=ds, **common)
        else:
            planned = plan_backfill(settings, **common)
        # the run's checks, where its audit step reads them (written once, before any step)
        _, write = lake_io(settings.aws_conn_id, settings.region)
        write(planned.checks_uri, checks(settings, planned))
        return {PLAN_XCOM_KEY: planned.to_xcom()}

    return plan()
