"""The order of a run, written once for every target (`include.targets`): the nightly, the
backfill and the maintenance job are each wired here, top to bottom, as they run.

    plan >> preflight >> setup >> the steps in the spec's order >> audit >> publish
         >> register ; teardown (whatever happened) ; run report

A target decides how each of these runs (an EMR step on the run's cluster, a job on the local
Spark application), never their order: a step of the backfill or the maintenance job gets
exactly what a step of the nightly gets.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG

from include import pipeline as P
from include.clickstream_kinesis import CLICKSTREAM_INGEST, land_clickstream_task
from include.dag_parts import AUDIT_TOOLTIP, PUBLISH_TOOLTIP, register_group, register_output, step_group
from include.planning import plan_task
from include.run_plan import BACKFILL_TASK_ID, PLAN_XCOM_KEY, step_task_ids
from include.run_report.task import add_run_report
from include.settings import Settings
from include.targets import Target, target_for


def _step(target: Target, run_plan: Any, name: str) -> Any:
    """run_<name>, the task the plan (and the run report) name for the step."""
    (task_id,) = step_task_ids(name)
    return target.step(run_plan, task_id, name)


def nightly(settings: Settings, dag: DAG) -> None:
    """The nightly run for the logical date (inside `with dag`)."""
    target = target_for(settings)
    # nothing reaches AWS before the plan accepted the run's parameters; nothing is created
    # before preflight found everything the run needs
    plan = plan_task(settings, "nightly")
    run_plan = plan[PLAN_XCOM_KEY]  # the one thing the plan hands on: every task renders from it
    preflight = target.preflight()
    first = plan if preflight is None else plan >> preflight
    setups, teardown = target.setup(run_plan)
    first >> setups
    # One task per step; a step the requested outputs do not need gets no command and skips
    # itself (a branch operator cannot express that: Airflow's branch leaves a task alone once
    # it is downstream of a chosen one, so an unneeded `segments` would run after `features`).
    runs: dict[str, Any] = {}
    for step in P.PIPELINE:
        with step_group(step):  # run_<step>, one box per step of the spec
            runs[step.name] = _step(target, run_plan, step.name)
        setups >> runs[step.name]
        for dep in step.depends_on:
            runs[dep] >> runs[step.name]
    if settings.clickstream_stream:  # the clickstream from Kinesis, landed before its ingest
        first >> land_clickstream_task(settings, run_plan) >> runs[CLICKSTREAM_INGEST]
    # Write-audit-publish: the audit once every step ended (none failed), on the run's branch;
    # publish only after it passed; each output's asset event after that.
    with step_group(P.AUDIT, AUDIT_TOOLTIP):
        steps_done = target.steps_done()
        audit = _step(target, run_plan, P.AUDIT.name)
    if steps_done is None:
        audit.trigger_rule = "none_failed_min_one_success"
        steps_done = audit
    else:
        steps_done >> audit
    with step_group(P.PUBLISH, PUBLISH_TOOLTIP):
        publish = _step(target, run_plan, P.PUBLISH.name)
    list(runs.values()) >> steps_done
    audit >> publish
    with register_group():
        for step in P.PIPELINE:
            for output in step.produces:
                [runs[step.name], publish] >> register_output(settings, output, run_plan)
    # registering needs no cluster: the teardown follows the last step
    target.teardown(teardown, [*runs.values(), audit, publish])
    add_run_report(settings, dag)  # last: rows, durations, cost of the run


def backfill(settings: Settings, dag: DAG) -> None:
    """A date range in one run (inside `with dag`): ranged ingest per dataset, then each date's
    steps, dates in order, then the audit of every date and publish, all in one task."""
    target = target_for(settings)
    plan = plan_task(settings, "backfill")
    run_plan = plan[PLAN_XCOM_KEY]
    preflight = target.preflight()
    first = plan if preflight is None else plan >> preflight
    setups, teardown = target.setup(run_plan)
    first >> setups
    run = target.batches(run_plan, BACKFILL_TASK_ID)
    setups >> run
    # one task runs every batch: no group per step here (the run report lists them)
    with register_group():
        run >> [register_output(settings, out, run_plan) for out in P.OUTPUTS]
    target.teardown(teardown, [run], step_logs=False)
    add_run_report(settings, dag)  # last: rows, durations, cost of the run


def single_step(settings: Settings, plan: Any, step: str) -> None:
    """One step in a run of its own (the maintenance job), set up and torn down as the nightly's
    steps are: setup >> run_<step> >> teardown. No preflight (as before this module)."""
    target = target_for(settings)
    run_plan = plan[PLAN_XCOM_KEY]
    setups, teardown = target.setup(run_plan)
    run = _step(target, run_plan, step)
    setups >> run
    target.teardown(teardown, [run])
