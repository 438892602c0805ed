"""What the run report reads of an EMR Serverless run: every application of the run (found by its
run-unique name, oldest first; a repaired run has one per attempt) and on each the run's job runs
(by their names, as the plan names them), each read with GetJobRun: its state, stateDetails, how
long it ran (totalExecutionDurationSeconds) and what it was billed for (billedResourceUtilization:
vCPU-, memory GB- and storage GB-hours), and where its driver's logs are.

The job runs are listed as the EMR steps are: `job_run_timings` maps a job run's name (the plan's
`emr_step_name`) to its last try, which `model.build_report` puts on the step's row (`emr_step`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.settings import Settings

log = logging.getLogger(__name__)
ALL_APPLICATION_STATES = ("CREATING", "CREATED", "STARTING", "STARTED", "STOPPING", "STOPPED", "TERMINATED")


def job_run_row(application_id: str, run: Mapping[str, Any], attempt: int) -> dict[str, Any]:
    """One job run (GetJobRun's `jobRun`) as the report lists it."""
    from plugins.emr_naming import parse_emr_step_name
    from plugins.emr_serverless import driver_log_uri, log_uri_of

    named = parse_emr_step_name(run.get("name") or "") or {}
    seconds = run.get("totalExecutionDurationSeconds")
    return {
        "name": run.get("name"),
        "step": named.get("step"),
        "ds": named.get("ds"),
        "id": run["jobRunId"],
        "application_id": application_id,
        "attempt": attempt,
        "state": run["state"],
        "state_details": run.get("stateDetails") or None,
        "seconds": float(seconds) if seconds is not None else None,
        "billed_resource_utilization": dict(run.get("billedResourceUtilization") or {}),
        "driver_stderr": driver_log_uri(
            log_uri_of(run.get("configurationOverrides")), application_id, run["jobRunId"], "stderr"
        ),
    }


def read_job_runs(client: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The run's applications, oldest first, each with the run's job runs on it (`job_run_row`)."""
    from plugins.emr_naming import run_of, safe_name, serverless_application_name
    from plugins.emr_serverless import job_runs, run_applications

    run = (safe_name(dag_id), safe_name(run_id))
    name = serverless_application_name(dag_id, run_id)
    applications = sorted(
        run_applications(client, name, ALL_APPLICATION_STATES), key=lambda a: a.get("createdAt") or 0
    )
    out = []
    for attempt, app in enumerate(applications, start=1):
        mine = [r for r in job_runs(client, app["id"]) if run_of(r.get("name") or "") == run]
        rows = [
            job_run_row(
                app["id"], client.get_job_run(applicationId=app["id"], jobRunId=r["id"])["jobRun"], attempt
            )
            for r in sorted(mine, key=lambda r: r.get("createdAt") or 0)
        ]
        out.append({"attempt": attempt, "application_id": app["id"], "state": app["state"], "job_runs": rows})
    return out


def serverless_part(settings: Settings, dag_id: str, run_id: str) -> tuple[dict | None, dict | None]:
    """(job run name -> its last try's row, {"applications": [...]}) of the run; (None, None) when
    they cannot be read (the numbers are worth having, not worth failing a run for)."""
    from airflow.providers.amazon.aws.hooks.emr import EmrServerlessHook

    from plugins.emr_client import AWS_RETRY_CONFIG

    try:
        hook = EmrServerlessHook(
            aws_conn_id=settings.aws_conn_id, region_name=settings.region, config=AWS_RETRY_CONFIG
        )
        applications = read_job_runs(hook.conn, dag_id, run_id)
    except Exception:
        log.exception("could not read the EMR Serverless job runs of run %s for the report", run_id)
        return None, None
    timings = {r["name"]: r for app in applications for r in app["job_runs"]}  # the last try wins
    return timings, {"applications": applications}
