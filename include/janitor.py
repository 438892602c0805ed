"""The EMR janitor: find this project's clusters that outlived their DAG run or their maximum age,
terminate them and say what it did.

A teardown can fail to run (scheduler lost, task killed with the worker, a retried RunJobFlow that
started a second cluster): an hourly sweep bounds what such a cluster costs. `verdict` decides per
cluster and `sweep` acts; both take the run lookup as a function, so they are tested with moto.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from plugins.emr_client import cancel_run_steps, tagged_clusters
from plugins.emr_naming import PROJECT

JANITOR_DAG_ID = "customer_analytics_emr_janitor"
# A run ends within the DAGs' dagrun_timeout (12 h); 2 h more for its teardown and slack.
DEFAULT_MAX_AGE_HOURS = 14
RUN_ACTIVE_STATES = ("queued", "running")

RunActive = Callable[[str, str], bool]  # (dag_id, run_id) -> is that run queued or running?


@dataclass(frozen=True)
class Verdict:
    cluster_id: str
    name: str
    dag_id: str | None
    run_id: str | None
    age_hours: float
    terminate: bool
    reason: str


def verdict(
    cluster: dict[str, Any], *, now: dt.datetime, max_age: dt.timedelta, run_active: RunActive
) -> Verdict:
    """Terminate when older than `max_age`, or when the DAG run named by its tags is not active.

    A project cluster without dag_id/run_id tags was not started by the DAGs (someone debugging):
    only the age limit applies to it.
    """
    tags = {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}
    dag_id, run_id = tags.get("dag_id"), tags.get("run_id")
    created = cluster["Status"]["Timeline"]["CreationDateTime"]
    age = now - (created if created.tzinfo else created.replace(tzinfo=dt.UTC))  # EMR's times are UTC

    def result(terminate: bool, reason: str) -> Verdict:
        hours = round(age.total_seconds() / 3600, 2)
        return Verdict(cluster["Id"], cluster.get("Name", ""), dag_id, run_id, hours, terminate, reason)

    if age > max_age:
        return result(True, f"older than the maximum age of {max_age}")
    if not dag_id or not run_id:
        return result(False, "no dag_id/run_id tags: only the age limit applies")
    if run_active(dag_id, run_id):
        return result(False, f"run {dag_id}/{run_id} is still active")
    return result(True, f"run {dag_id}/{run_id} is no longer running (ended, or not found)")


def sweep(
    client: Any,
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
    run_active: RunActive,
    log: Any,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Judge every active cluster tagged project=<PROJECT>; terminate the stale ones (unless dry_run).

    :return: one dict per cluster: the verdict and `action` (terminated / kept / would terminate /
        failed: <error>)
    """
    report = []
    for cluster in tagged_clusters(client, {"project": PROJECT}):
        v = verdict(cluster, now=now, max_age=max_age, run_active=run_active)
        action = "kept"
        if v.terminate and dry_run:
            action = "would terminate"
        elif v.terminate:
            try:
                cancel_run_steps(client, v.cluster_id, None, log)
                client.terminate_job_flows(JobFlowIds=[v.cluster_id])
                action = "terminated"
            except (ClientError, BotoCoreError) as exc:  # e.g. termination protection: report, go on
                action = f"failed: {exc}"
        log.info("%s %s (%s, %.1f h): %s", action, v.cluster_id, v.name, v.age_hours, v.reason)
        report.append({**asdict(v), "action": action})
    if not report:
        log.info("No active cluster tagged project=%s", PROJECT)
    return report


def build_janitor_dag(settings: Any) -> Any:
    """Hourly, no catchup: the sweep, with the maximum age and a dry run as run parameters."""
    from airflow.sdk import DAG, CronTriggerTimetable, Param, get_current_context, task

    from include.params import default_args
    from plugins.emr_client import AWS_RETRY_CONFIG

    with DAG(
        dag_id=JANITOR_DAG_ID,
        schedule=CronTriggerTimetable("17 * * * *", timezone="UTC"),
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["customer-analytics", "emr", "janitor"],
        default_args=default_args(settings),  # retries as PIPELINE_RETRIES says, as every DAG's
        params={
            "max_age_hours": Param(
                DEFAULT_MAX_AGE_HOURS, type="integer", minimum=1, maximum=168, title="Maximum cluster age (h)"
            ),
            "dry_run": Param(False, type="boolean", title="Only report, terminate nothing"),
        },
        doc_md=__doc__,
    ) as dag:

        @task(task_id="terminate_stale_clusters")
        def terminate_stale_clusters() -> list[dict[str, Any]]:
            import logging

            from airflow.providers.amazon.aws.hooks.emr import EmrHook

            ctx = get_current_context()
            ti, params = ctx["ti"], ctx["params"]
            client = EmrHook(
                aws_conn_id=settings.aws_conn_id, region_name=settings.region, config=AWS_RETRY_CONFIG
            ).conn

            def run_active(dag_id: str, run_id: str) -> bool:
                return ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=list(RUN_ACTIVE_STATES)) > 0

            return sweep(
                client,
                now=ctx["dag_run"].run_after,  # the run's own time, not the wall clock
                max_age=dt.timedelta(hours=int(params["max_age_hours"])),
                run_active=run_active,
                log=logging.getLogger("airflow.task"),
                dry_run=bool(params["dry_run"]),
            )

        terminate_stale_clusters()
    return dag
