"""Turn the pipeline spec into DAGs: the nightly run and the date-range backfill, for either target.

Every task of a run gets its arguments from one `plan` task, which validates the run's
parameters (Param schema first, then here again) before anything reaches AWS or a command
line, and derives every date from the run (`include/run_dates.py`: the form's date, the data
interval's day, or the last complete UTC day) or the requested range. The planning
functions are pure and take plain values, so they are tested without Airflow.

emr:   plan -> create cluster + upload code -> per step: one deferrable task adds the step to
            the run's cluster and waits -> audit -> publish -> Asset events ;
            terminate cluster (teardown, runs whatever happened)
local: plan -> per step: `python -m spark_jobs ...` subprocess (+ Asset)
both:  with PIPELINE_CLICKSTREAM_KINESIS_STREAM, `land_clickstream` (after the plan, on emr after
       preflight) lands the stream's new records before `run_ingest_clickstream`
       (include/clickstream_kinesis.py)

In the UI each step of the spec is a task group named after it (`step_group`), then `audit`,
`publish` and `register` (the asset events); the task ids stay flat (`run_graph` on both targets,
`register_referral_graph`), so the run report, alerting and earlier runs find the same tasks.

The emr tasks live in `include.emr_tasks`, imported only for that target: the local target
never loads the AWS SDK at parse time. What both targets build from (the task groups, the
`register_<output>` tasks, the step timeout) is `include.dag_parts`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from datetime import time as dt_time
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import (
    DAG,
    CronDataIntervalTimetable,
    DeadlineAlert,
    Param,
    SyncCallback,
    get_current_context,
    task,
)

from include import pipeline as P
from include.alert_settings import deadline_interval
from include.alerts import RunFailedNotifier, deadline_missed, record_task_error
from include.clickstream_kinesis import CLICKSTREAM_INGEST, land_clickstream_task
from include.cluster_profiles import PROFILES, cluster_tags, job_flow_overrides
from include.dag_parts import AUDIT_TOOLTIP, PUBLISH_TOOLTIP, register_group, register_output, step_group
from include.lake_files import lake_io
from include.lineage import spark_properties
from include.packaging import code_location
from include.run_dates import DS_DESCRIPTION, run_ds
from include.run_plan import BACKFILL_TASK_ID, PLAN_XCOM_KEY, backfill_plan, nightly_plan, step_task_ids
from include.run_report.task import add_run_report
from include.settings import PROJECT_ROOT, Settings
from plugins.deadline_reference import ScheduledRunLogicalDate
from plugins.spark_job import SparkJobSubprocessOperator
from spark_jobs.paths import audit_uri

NIGHTLY_DAG_ID, BACKFILL_DAG_ID = P.NIGHTLY_DAG_ID, P.BACKFILL_DAG_ID  # named in the spec (infra/ needs them)
# Interval timetable: the run for day D starts at 02:00 UTC on D+1, and its logical date
# (= data_interval_start) is D, so ds is the day whose data is complete.
NIGHTLY_SCHEDULE = "0 2 * * *"
START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
DS_PATTERN = r"^\d{4}-\d{2}-\d{2}$"

log = logging.getLogger(__name__)


# ---- what the DAGs share -------------------------------------------------------------------
def default_args(settings: Settings) -> dict[str, Any]:
    return {
        "owner": "data-platform",
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    }


def _profile_param(settings: Settings) -> Param:
    return Param(
        settings.default_profile,
        type="string",
        enum=sorted(PROFILES),
        title="Cluster profile",
        description="EMR cluster size: dev (3 x m5.xlarge) or prod (Graviton fleets, spot task nodes). "
        "Ignored by the local target.",
    )


def _date_param(title: str, description: str, *, nullable: bool = False) -> Param:
    """A YYYY-MM-DD date; nullable ones default to null, the others must be filled in."""
    schema = {
        "type": ["null", "string"] if nullable else "string",
        "format": "date",
        "pattern": DS_PATTERN,
        "title": title,
        "description": description,
    }
    return Param(None, **schema) if nullable else Param(**schema)


def _publish_param() -> Param:
    return Param(
        True,
        type="boolean",
        title="Publish despite warnings",
        description="On: a run whose audit found only warnings publishes (warnings are reported). "
        "Off: any failed check keeps the run's output on its branch, unpublished, for a person to look at.",
    )


def nightly_params(settings: Settings) -> dict[str, Param]:
    return {
        # first in the form: which date the run builds (include/run_dates.py has the rule)
        "ds": _date_param("Date to build", DS_DESCRIPTION, nullable=True),
        "cluster_profile": _profile_param(settings),
        "outputs": Param(
            list(P.OUTPUTS),
            type="array",
            items={"type": "string", "enum": list(P.OUTPUTS)},
            minItems=1,
            uniqueItems=True,
            title="Outputs to build",
            description="Only the steps these outputs need run; the others are skipped.",
        ),
        "ingest_start_ds": _date_param(
            "Load landing history from",
            "Empty: ingest the run's date only. A date: ingest every day from it to the run's date "
            f"(at most {P.MAX_INGEST_HISTORY_DAYS} days) in one step per dataset.",
            nullable=True,
        ),
        "publish_despite_warnings": _publish_param(),
    }


def backfill_params(settings: Settings) -> dict[str, Param]:
    return {
        "start_ds": _date_param("First date", "First date of the range (inclusive)."),
        "end_ds": _date_param("Last date", f"Last date (inclusive); at most {P.MAX_BACKFILL_DAYS} days."),
        "cluster_profile": _profile_param(settings),
        "publish_despite_warnings": _publish_param(),
    }


# ---- planning (pure) -----------------------------------------------------------------------
def _checked_profile(params: dict[str, Any]) -> str:
    profile = params.get("cluster_profile")
    if not isinstance(profile, str) or profile not in PROFILES:
        raise P.RunParamError(f"cluster_profile must be one of {sorted(PROFILES)}, got {profile!r}")
    return profile


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
    profile = _checked_profile(params)
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
    commands = {
        step.name: P.job_args(step, ds=ds, lake=settings.lake, start_ds=start, run_id=run_id, branch=branch)
        for step in steps
    }
    # Write-audit-publish: every step commits to the run's branch; the audit checks what they
    # wrote there; only then does publish make it what readers see.
    wap = wap_commands(settings, ds=ds, run_id=run_id, branch=branch, steps=list(commands), params=params)
    plan["checks"] = wap.pop("checks")
    commands.update(wap)
    run = nightly_plan(
        dag_id=dag_id, run_id=run_id, ds=ds, branch=branch, commands=commands, emr=settings.is_emr
    )
    plan[PLAN_XCOM_KEY] = run.to_xcom()
    emr_names = {planned.step: planned.emr_step_name for planned in run.steps}
    for name, args in commands.items():
        if settings.is_emr:
            assert code is not None  # noqa: S101 (emr plans always get the code location)
            plan[f"step:{name}"] = [P.emr_step(emr_names[name], args, **_code_args(settings, code))]
        else:
            plan[f"step:{name}"] = [args]
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
    profile = _checked_profile(params)
    ranged = [s for s in P.PIPELINE if s.ranged]
    daily = [s for s in P.PIPELINE if not s.ranged]
    if any(dep not in {r.name for r in ranged} for s in ranged for dep in s.depends_on):
        raise ValueError("a ranged step depends on a per-date step; it cannot run first")

    # (label of the dates, step, args) in execution order, grouped into batches.
    lake = settings.lake
    batches: list[list[tuple[str, P.Step, list[str]]]] = [
        [
            (f"{start}..{end}", s, P.job_args(s, ds=end, lake=lake, start_ds=start, run_id=run_id))
            for s in ranged
        ]
    ]
    for ds in dates:
        for wave in P.waves(daily):
            batches.append([(ds, s, P.job_args(s, ds=ds, lake=lake, run_id=run_id)) for s in wave])
    # Every step commits to the run's branch; then one audit of every date, then publish.
    branch = P.audit_branch(run_id)
    for batch in batches:
        for _, _, args in batch:
            args += ["--branch", branch]
    wap = wap_commands(
        settings,
        ds=end,
        run_id=run_id,
        branch=branch,
        steps=[s.name for s in P.PIPELINE],
        params=params,
        start_ds=start,
    )
    batches.append([(f"{start}..{end}", P.AUDIT, wap["audit"])])
    batches.append([(end, P.PUBLISH, wap["publish"])])

    run = backfill_plan(
        dag_id=dag_id,
        run_id=run_id,
        ds=end,
        branch=branch,
        commands=[command for batch in batches for command in batch],
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
        plan["commands"] = [args for batch in batches for _, _, args in batch]
        plan["spark_server"] = spark_server_socket(dag_id, run_id) if settings.local_spark_server else None
        return plan
    assert code is not None  # noqa: S101
    emr_names = {(planned.step, planned.label): planned.emr_step_name for planned in run.steps}
    plan["batches"] = [
        [
            P.emr_step(emr_names[(s.name, label)], args, **_code_args(settings, code))
            for label, s, args in batch
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


def wap_commands(
    settings: Settings,
    *,
    ds: str,
    run_id: str,
    branch: str,
    steps: list[str],
    params: dict[str, Any],
    start_ds: str | None = None,
) -> dict[str, list[str]]:
    """The audit's and publish's command lines of a run whose `steps` write to `branch`, and the
    run's checks (`checks`: the JSON and where the audit reads it)."""
    from include.checks import checks_json, tables_of

    lake = settings.lake
    checks_uri = audit_uri(lake, ds, branch, "checks")
    audit = P.job_args(P.AUDIT, ds=ds, lake=lake, start_ds=start_ds, run_id=run_id, branch=branch)
    audit += ["--checks-uri", checks_uri]
    despite = params.get("publish_despite_warnings", True)
    if not isinstance(despite, bool):
        raise P.RunParamError(f"publish_despite_warnings must be true or false, got {despite!r}")
    if not despite:
        audit.append("--warnings-block")  # the form asked for a clean audit
    publish = P.job_args(P.PUBLISH, ds=ds, lake=lake, run_id=run_id, branch=branch)
    # the plan task writes the checks where the audit reads them
    checks = {"uri": checks_uri, "json": checks_json(settings.audit, tables_of(steps))}
    return {"audit": audit, "publish": publish, "checks": checks}


def _code_args(settings: Settings, code: dict[str, str]) -> dict[str, Any]:
    return {
        "py_files": code["py_files"],
        "entrypoint": code["entrypoint"],
        "jars": code.get("jars"),
        "conf": spark_properties(settings),  # the jobs' lineage settings (none when it is off)
    }


# ---- tasks ---------------------------------------------------------------------------------
def _plan_task(settings: Settings, kind: str):
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


def local_job(
    settings: Settings, task_id: str, commands: Any, spark_server: Any
) -> SparkJobSubprocessOperator:
    """One local task running job command lines (the nightly's steps, the backfill's, maintain),
    on the run's warm Spark application when there is one, else in a process of its own."""
    return SparkJobSubprocessOperator(
        task_id=task_id,
        commands=commands,
        cwd=str(PROJECT_ROOT),
        env={"SPARK_LOCAL_IP": "127.0.0.1"},
        spark_server=spark_server,
        lineage=spark_properties(settings),
    )


def spark_server_socket(dag_id: str, run_id: str) -> str:
    """Where a local run's warm Spark application listens: one Unix socket per run (short path)."""
    digest = hashlib.sha1(f"{dag_id}|{run_id}".encode()).hexdigest()[:16]  # noqa: S324 (a name, not a secret)
    return os.path.join(tempfile.gettempdir(), f"spark-jobs-{digest}.sock")


def local_spark(settings: Settings, plan: Any) -> tuple[Any, Any]:
    """start_spark (setup) and stop_spark (teardown): the local run's warm Spark application, the
    local twin of the EMR cluster. Steps whose worker cannot reach it run in a process of their own."""

    @task(task_id="start_spark", retries=0)
    def start_spark(path: str) -> str:
        from spark_jobs import server

        log_file = f"{path}.log"
        pid = server.start(path, env={"SPARK_LOCAL_IP": "127.0.0.1"}, log=log_file)
        log.info("Spark application %s ready at %s (its log: %s)", pid, path, log_file)
        return path

    @task(task_id="stop_spark", retries=0)
    def stop_spark(path: str) -> None:
        from spark_jobs import server

        log.info("stopping the Spark application at %s: %s", path, server.stop(path))

    start = start_spark(plan["spark_server"])
    stop = stop_spark(plan["spark_server"]).as_teardown(setups=start)
    return start, stop


# ---- DAGs ----------------------------------------------------------------------------------
class PipelineDAG(DAG):
    """Airflow's DAG, whose `test()` (`airflow dags test`, `python dags/<file>.py`, `make demo`)
    finishes a green run of a DAG with a Deadline Alert.

    Airflow 3.3.2's `dag.test()` schedules its run with a copy of the DAG made by serializing
    and deserializing it in memory, which holds each Deadline Alert as its serialized dict; the
    DAG the scheduler reads from the metadata DB holds the alerts' database ids instead. When the
    run succeeds, `DagRun.update_state` looks the DAG's alerts up by id
    (`DeadlineAlert.get_by_id`) to prune the run's deadlines, and with a dict for an id the query
    fails ("'dict' object has no attribute 'hex'"): every green `dag.test()` of such a DAG ends in
    that error. A `dag.test()` run is a manual run, which the nightly's deadline does not apply
    to (`plugins/deadline_reference.py` gives it none), so it runs without the alert; the DAG
    keeps it (it is set back after the run), and what `dag.test()` writes to the metadata DB is
    parsed afresh from the DAG file, with the alert: scheduled runs keep their deadline."""

    def test(self, *args: Any, **kwargs: Any) -> Any:
        deadline, self.deadline = self.deadline, None
        try:
            return super().test(*args, **kwargs)
        finally:
            self.deadline = deadline


def _dag(settings: Settings, dag_id: str, schedule: Any, **kwargs: Any) -> DAG:
    return PipelineDAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,  # runs share the clickstream checkpoint and the lake's partitions
        default_args=default_args(settings),
        tags=["customer-analytics", settings.target],
        dagrun_timeout=timedelta(hours=12),
        **kwargs,
    )


def _failure_notifier(settings: Settings, *, task_level: bool = False) -> RunFailedNotifier:
    # run_report fails after a step failed: the alert names the step (the cause) instead
    return RunFailedNotifier(
        settings.alerts,
        settings.aws_conn_id,
        settings.region,
        consequences=("run_report",),
        task_level=task_level,
    )


def _nightly_alerts(settings: Settings) -> dict[str, Any]:
    """The nightly's failed-run alert (DAG-level: one per run) and Deadline Alert (include/alerts.py)."""
    minute, hour = NIGHTLY_SCHEDULE.split()[:2]
    return {
        "on_failure_callback": _failure_notifier(settings),
        "deadline": DeadlineAlert(
            # the scheduled run of day D: logical date D 02:00 UTC; due by HH:MM UTC on D+1; a
            # manual or backfill run gets no deadline (it is late by design)
            reference=ScheduledRunLogicalDate(),
            interval=deadline_interval(settings.alerts.deadline_utc, dt_time(int(hour), int(minute))),
            callback=SyncCallback(deadline_missed, kwargs={"deadline_utc": settings.alerts.deadline_utc}),
            name="nightly run not finished by PIPELINE_ALERT_DEADLINE_UTC",
        ),
    }


def _alert_on_failed_tasks(settings: Settings, dag: DAG) -> None:
    """The backfill's failed-run alert, from its tasks: each task's on_failure_callback (run by
    the worker once the task failed for good), every task but the run report (it fails because a
    step did). Not DAG-level as on the nightly: Airflow 3.3.2's dag.test() cannot build a DAG
    callback's context for a DAG whose Params have no default (start_ds, end_ds) and raises
    ParamValidationError out of dag.test(), which `include.run_local --dag backfill` and the
    tests use."""
    notifier = _failure_notifier(settings, task_level=True)
    for each in dag.tasks:
        if each.task_id != "run_report":
            each.on_failure_callback = [notifier]  # a list, as the constructor would make it


def _record_task_errors(dag: DAG) -> None:
    """Each task keeps its error when it fails for good, for the run's failure alert (Airflow
    gives the DAG's on_failure_callback no task's error: include/alerts.record_task_error)."""
    for each in dag.tasks:
        each.on_failure_callback = [*each.on_failure_callback, record_task_error]


def build_nightly_dag(settings: Settings, dag_id: str = NIGHTLY_DAG_ID, doc_md: str | None = None) -> DAG:
    """The nightly pipeline for the logical date, on a transient EMR cluster or locally."""
    with _dag(
        settings,
        dag_id,
        schedule=CronDataIntervalTimetable(NIGHTLY_SCHEDULE, timezone="UTC"),
        params=nightly_params(settings),
        doc_md=doc_md,
        **_nightly_alerts(settings),
    ) as dag:
        plan = _plan_task(settings, "nightly")
        if settings.is_emr:
            from include.emr_tasks import nightly_emr  # the AWS SDK only when it is needed

            nightly_emr(settings, plan)
        else:
            _nightly_local(settings, plan)
        add_run_report(settings, dag)  # last: rows, durations, cost of the run
    _record_task_errors(dag)
    return dag


def _nightly_local(settings: Settings, plan: Any) -> None:
    # A step the requested outputs do not need gets no command and skips itself; a branch
    # operator cannot express that (Airflow's branch leaves a task alone once it is downstream
    # of a chosen one, so an unneeded `segments` would run after a chosen `features`).
    start, stop = local_spark(settings, plan) if settings.local_spark_server else (None, None)
    runs = {}
    for step in P.PIPELINE:
        with step_group(step):
            (task_id,) = step_task_ids(step.name)
            runs[step.name] = local_job(settings, task_id, plan[f"step:{step.name}"], plan["spark_server"])
        for dep in step.depends_on:
            runs[dep] >> runs[step.name]
    # Write-audit-publish: the audit runs once every step ran or was skipped (none failed), on
    # the run's branch; publish only after it passed; each output's asset event after that.
    with step_group(P.AUDIT, AUDIT_TOOLTIP):
        (task_id,) = step_task_ids(P.AUDIT.name)
        audit = local_job(settings, task_id, plan["step:audit"], plan["spark_server"])
        audit.trigger_rule = "none_failed_min_one_success"
    with step_group(P.PUBLISH, PUBLISH_TOOLTIP):
        (task_id,) = step_task_ids(P.PUBLISH.name)
        publish = local_job(settings, task_id, plan["step:publish"], plan["spark_server"])
    list(runs.values()) >> audit >> publish
    if settings.clickstream_stream:  # the clickstream from Kinesis, landed before its ingest
        plan >> land_clickstream_task(settings, plan["ds"]) >> runs[CLICKSTREAM_INGEST]
    if start is not None:
        start >> list(runs.values())
        [*runs.values(), audit, publish] >> stop
    with register_group():
        for step in P.PIPELINE:
            for output in step.produces:
                [runs[step.name], publish] >> register_output(settings, output, plan[PLAN_XCOM_KEY])


def build_backfill_dag(settings: Settings, dag_id: str = BACKFILL_DAG_ID, doc_md: str | None = None) -> DAG:
    """A date range on one cluster (or one local run): ranged ingest, then each date in order."""
    with _dag(settings, dag_id, schedule=None, params=backfill_params(settings), doc_md=doc_md) as dag:
        plan = _plan_task(settings, "backfill")
        if settings.is_emr:
            from include.emr_tasks import backfill_emr  # the AWS SDK only when it is needed

            backfill_emr(settings, plan)
        else:
            # the steps, then the audit of every date, then publish: one command list
            run = local_job(settings, BACKFILL_TASK_ID, plan["commands"], plan["spark_server"])
            if settings.local_spark_server:
                start, stop = local_spark(settings, plan)
                start >> run >> stop
            with register_group():
                run >> [register_output(settings, out, plan[PLAN_XCOM_KEY]) for out in P.OUTPUTS]
        add_run_report(settings, dag)  # last: rows, durations, cost of the run
    _alert_on_failed_tasks(settings, dag)
    return dag
