"""The pipeline's DAGs: the nightly run and the date-range backfill, for either target.

The DAG objects (schedule, form, alerts, defaults) are made here; what runs in them, in which
order, is wired once for every target by `include.wiring` (the order) and `include.targets`
(how each part runs on the local Spark application or a transient EMR cluster); the forms are
`include.params`', the plan task and its planners `include.planning`'s.

In the UI each step of the spec is a task group named after it (`step_group`), then `audit`,
`publish` and `register` (the asset events); the task ids stay flat (`run_graph` on both targets,
`register_referral_graph`), so the run report, alerting and earlier runs find the same tasks.
"""

from __future__ import annotations

from datetime import time as dt_time
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, DeadlineAlert, SyncCallback

from include import pipeline as P
from include import wiring
from include.alert_settings import deadline_interval
from include.alerts import RunFailedNotifier, deadline_missed, record_task_error
from include.params import START_DATE, backfill_params, default_args, nightly_params
from include.settings import Settings
from plugins.deadline_reference import ScheduledRunLogicalDate

NIGHTLY_DAG_ID, BACKFILL_DAG_ID = P.NIGHTLY_DAG_ID, P.BACKFILL_DAG_ID  # named in the spec (infra/ needs them)
# Interval timetable: the run for day D starts at 02:00 UTC on D+1, and its logical date
# (= data_interval_start) is D, so ds is the day whose data is complete.
NIGHTLY_SCHEDULE = "0 2 * * *"


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
        wiring.nightly(settings, dag)
    _record_task_errors(dag)
    return dag


def build_backfill_dag(settings: Settings, dag_id: str = BACKFILL_DAG_ID, doc_md: str | None = None) -> DAG:
    """A date range on one cluster (or one local run): ranged ingest, then each date in order."""
    with _dag(settings, dag_id, schedule=None, params=backfill_params(settings), doc_md=doc_md) as dag:
        wiring.backfill(settings, dag)
    _alert_on_failed_tasks(settings, dag)
    return dag
