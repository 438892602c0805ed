"""EMR Serverless operators that survive faults, as plugins/emr_steps.py's do for EMR on EC2: the
run's application created once, each step's job run started once, failures that explain
themselves, kills that cancel what they started, the application deleted whatever happened.

They extend the amazon provider's operators (`EmrServerlessCreateApplicationOperator`,
`EmrServerlessStartJobOperator` deferrable with its trigger's cancel on kill,
`EmrServerlessDeleteApplicationOperator`) and keep their interfaces (XComs, deferral, links). A
run's application is found by its name (`emr_naming.serverless_application_name`: dag and run),
a step's job run by its name (the EMR step's: dag, date, step and run, `emr_naming.emr_step_name`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.emr import (
    EmrServerlessCreateApplicationOperator,
    EmrServerlessDeleteApplicationOperator,
    EmrServerlessStartJobOperator,
)
from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from plugins import emr_step_logs
from plugins.aws_trigger import aws_connection, s3_hook
from plugins.emr_naming import run_of, serverless_application_name
from plugins.emr_step_logs import (
    STEP_LOG_LINES,
    STEP_LOG_WAIT_SECONDS,
    _log_base,
    error_lines,
    log_exists,
    read_log,
    tail_block,
    wait_for_logs,
)

LIVE_APPLICATION_STATES = ("CREATING", "CREATED", "STARTING", "STARTED", "STOPPING", "STOPPED")
ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED")
REUSABLE_JOB_STATES = frozenset({*ACTIVE_JOB_STATES, "SUCCESS"})
FAILED_JOB_STATES = frozenset({"FAILED", "CANCELLING", "CANCELLED"})
DRIVER_LOGS = ("stdout", "stderr")


# ---- the API calls they share ------------------------------------------------------------------
def run_applications(client: Any, name: str, states: Iterable[str] = LIVE_APPLICATION_STATES) -> list[dict]:
    """The applications named `name` (one run's) in `states` (ListApplications summaries)."""
    pages = client.get_paginator("list_applications").paginate(states=list(states))
    return [a for page in pages for a in page["applications"] if a.get("name") == name]


def job_runs(client: Any, application_id: str, states: Iterable[str] = ()) -> list[dict]:
    """The application's job runs (ListJobRuns summaries), optionally only those in `states`."""
    kwargs: dict[str, Any] = {"applicationId": application_id}
    if states:
        kwargs["states"] = list(states)
    pages = client.get_paginator("list_job_runs").paginate(**kwargs)
    return [r for page in pages for r in page["jobRuns"]]


def reusable_job_run(client: Any, application_id: str, name: str) -> dict | None:
    """The job run named `name` on the application that is running or succeeded, else None: a
    retried task follows it instead of starting a second one (a failed one is started anew)."""
    named = [run for run in job_runs(client, application_id) if run.get("name") == name]
    active = [run for run in named if run["state"] in ACTIVE_JOB_STATES]
    return next(iter(active or [run for run in named if run["state"] == "SUCCESS"]), None)


def cancel_job_runs(client: Any, application_id: str, ids: Sequence[str], log: Any) -> list[str]:
    """Cancel `ids` on the application (best effort: logged, never raised); the ids cancelled."""
    done = []
    for job_run_id in ids:
        try:
            client.cancel_job_run(applicationId=application_id, jobRunId=job_run_id)
            done.append(job_run_id)
        except Exception as exc:  # a cancel that fails must not hide why the task failed
            log.warning("could not cancel job run %s on %s: %s", job_run_id, application_id, exc)
    return done


def cancel_run_job_runs(
    client: Any, application_id: str, run: tuple[str, str] | None, log: Any, keep: Sequence[str] = ()
) -> list[str]:
    """Cancel the run's (`run_of` their names; None: every) active job runs on the application."""
    ids = [
        r["id"]
        for r in job_runs(client, application_id, ACTIVE_JOB_STATES)
        if r["id"] not in keep and (run is None or run_of(r.get("name") or "") == run)
    ]
    return cancel_job_runs(client, application_id, ids, log)


def driver_log_uri(log_uri: str | None, application_id: str, job_run_id: str, name: str) -> str | None:
    """Where EMR Serverless puts a job run's driver log `name` (stdout, stderr):
    `<logUri>/applications/<application>/jobs/<job run>/SPARK_DRIVER/<name>.gz`."""
    if not log_uri:
        return None
    return f"{_log_base(log_uri)}/applications/{application_id}/jobs/{job_run_id}/SPARK_DRIVER/{name}.gz"


def log_uri_of(overrides: Mapping[str, Any] | None) -> str | None:
    """The S3 log URI a job run's configurationOverrides name (None: no logs in S3)."""
    monitoring = (overrides or {}).get("monitoringConfiguration") or {}
    return (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")


class JobRunFailureReport:
    """Why a job run ended badly: its stateDetails, the tails of its driver's stdout and stderr
    (copied into the task log, as the EMR steps' are), and the run's other job runs cancelled."""

    def __init__(self, client: Any, s3: S3Hook, log: Any, lines: int, wait_seconds: float) -> None:
        self.client, self.s3, self.log = client, s3, log
        self.lines, self.wait_seconds = lines, wait_seconds

    @classmethod
    def of(cls, operator: Any) -> JobRunFailureReport:
        """The report of a job run `operator` waited for, on its connection and log settings."""
        lines, wait = operator.step_log_lines, operator.step_log_wait_seconds
        return cls(operator.hook.conn, s3_hook(operator), operator.log, lines, wait)

    def fail(self, application_id: str, job_run: Mapping[str, Any]) -> AirflowFailException:
        state, name = job_run["state"], job_run.get("name") or ""
        lines = [f"EMR Serverless job run {name} ({job_run['jobRunId']}) on {application_id} ended {state}"]
        if job_run.get("stateDetails"):
            lines.append(f"reason: {job_run['stateDetails']}")
        log_uri = log_uri_of(job_run.get("configurationOverrides"))
        uri = driver_log_uri(log_uri, application_id, job_run["jobRunId"], "stderr")
        if uri is None:
            lines.append("the job run has no S3 log URI: no driver logs in S3")
        elif state != "CANCELLED":
            logs = self._copy(application_id, job_run["jobRunId"], log_uri)
            lines.append(f"driver stderr: {uri}")
            if logs.get(uri) is not None:
                lines.append("first error lines of the driver's stderr:")
                lines.extend(f"    {line}" for line in error_lines(logs[uri]))
            else:
                lines.append("(the driver's stderr is not in S3 yet)")
        cancelled = cancel_run_job_runs(
            self.client, application_id, run_of(name), self.log, keep=[job_run["jobRunId"]]
        )
        if cancelled:
            lines.append(f"cancelled the run's other active job runs: {cancelled}")
        message = "\n".join(lines)
        self.log.error("%s", message)
        return AirflowFailException(message)

    def _copy(self, application_id: str, job_run_id: str, log_uri: str | None) -> dict[str, str | None]:
        """The driver's logs, waited for at most `wait_seconds`, their last lines in the task log."""
        if self.lines <= 0:
            return {}
        uris = [driver_log_uri(log_uri, application_id, job_run_id, n) for n in DRIVER_LOGS]
        wait_for_logs(
            lambda: all(log_exists(self.s3, u) for u in uris if u),
            emr_step_logs._clock() + self.wait_seconds,
            self.log,
            f"EMR Serverless to upload job run {job_run_id}'s driver logs",
        )
        read: dict[str, str | None] = {}
        for name, uri in zip(DRIVER_LOGS, uris, strict=True):
            if uri is None:
                continue
            read[uri] = text = read_log(self.s3, uri)
            if text is None:
                self.log.info("job run %s driver %s: not in S3 (yet): %s", job_run_id, name, uri)
            else:
                self.log.info("%s", tail_block(f"job run {job_run_id} driver {name}", uri, text, self.lines))
        return read


# ---- the application ---------------------------------------------------------------------------
class ServerlessApplicationOperator(EmrServerlessCreateApplicationOperator):
    """Create the run's application once; a retry takes the one an earlier try created.

    The application is known by its name (unique to the run). Returns its id; the application
    is created (CREATED, started without waiting: the first job run waits for STARTED). A failed
    creation deletes what it left (its teardown does not run when the setup failed)."""

    def execute(self, context: Any) -> str | None:
        name = self.config.get("name")
        if name:
            for app in run_applications(self.hook.conn, name, ("CREATING", "CREATED", "STARTING", "STARTED")):
                self.log.info("Application %s of this run is already %s: using it", app["id"], app["state"])
                return app["id"]
        try:
            return super().execute(context)
        except Exception as exc:
            # A failed setup keeps its teardown from running: delete what this creation left
            # (best effort; one still CREATING stops itself after its idle timeout if it ever starts)
            for app in run_applications(self.hook.conn, name, ("CREATED", "STOPPED")) if name else []:
                self.log.warning("Deleting %s, left by the failed creation", app["id"])
                try:
                    self.hook.conn.delete_application(applicationId=app["id"])
                except Exception as error:  # the creation's error is the one to report
                    self.log.warning("could not delete %s: %s", app["id"], error)
            raise AirflowException(f"EMR Serverless did not create the application: {exc}") from exc


class ServerlessTeardownOperator(EmrServerlessDeleteApplicationOperator):
    """Cancel the run's job runs still running, stop and delete its application(s), whatever happened.

    Runs as the DAG's teardown (also after the run was marked failed from the UI). Besides
    `application_id` (None when creation failed) it deletes every live application with the
    run's name, so one created by a failed or retried creation goes too.

    :return: one line per application: what was done
    """

    def __init__(self, *, application_id: str | None, **kwargs: Any) -> None:
        super().__init__(application_id=application_id or "", wait_for_completion=True, **kwargs)

    def execute(self, context: Any) -> list[str]:
        client = self.hook.conn
        ids = [self.application_id] if self.application_id and self.application_id != "None" else []
        name = serverless_application_name(context["dag"].dag_id, context["run_id"])
        ids += [a["id"] for a in run_applications(client, name) if a["id"] not in ids]
        if not ids:
            self.log.info("No application of this run to delete")
        done = []
        for application_id in ids:
            state = client.get_application(applicationId=application_id)["application"]["state"]
            if state == "TERMINATED":
                done.append(f"application {application_id} was already deleted")
                continue
            cancelled = cancel_run_job_runs(client, application_id, None, self.log)
            if cancelled:  # stopping waits for no job run
                waiter = {"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts}
                self.hook.get_waiter("no_job_running").wait(
                    applicationId=application_id,
                    states=[*ACTIVE_JOB_STATES, "CANCELLING"],
                    WaiterConfig=waiter,
                )
            stop = state not in ("CREATED", "STOPPED")  # StopApplication wants a started one
            if stop:
                client.stop_application(applicationId=application_id)
                self._wait("serverless_app_stopped", application_id)
            client.delete_application(applicationId=application_id)
            done.append(
                f"application {application_id} ({state}): cancelled {len(cancelled)} job runs, "
                f"{'stopped and ' if stop else ''}deleted"
            )
            self.log.info("%s", done[-1])
        return done

    def _wait(self, waiter: str, application_id: str) -> None:
        self.hook.get_waiter(waiter).wait(
            applicationId=application_id,
            WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
        )


# ---- job runs --------------------------------------------------------------------------------
class ServerlessJobRunOperator(EmrServerlessStartJobOperator):
    """One step's job run on the run's current application, in one deferrable task.

    `application_id` is `create_application`'s XCom, rendered again at every try: a task cleared
    with its setup (the Clear dialog's defaults bring `create_application` back, which makes a
    new application) runs its job run there. Before StartJobRun the task looks for the job run of
    its name on the application (`reusable_job_run`): a retry follows the one running or
    succeeded, so a step gets exactly one job run per attempt. While it runs the task is
    deferred on the provider's trigger (a kill or Mark failed cancels the job run). A job run that
    ends FAILED or CANCELLED fails the task without retry: its stateDetails, the tails of its
    driver's logs from the S3 log URI and the run's other job runs cancelled
    (`JobRunFailureReport`). An empty job driver: the run's outputs do not need the step, it skips.

    :return: the job run's id
    """

    def __init__(
        self,
        *,
        step_log_lines: int = STEP_LOG_LINES,
        step_log_wait_seconds: float = STEP_LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.step_log_lines = step_log_lines
        self.step_log_wait_seconds = step_log_wait_seconds

    def execute(self, context: Any, event: dict[str, Any] | None = None) -> str | None:
        if not self.job_driver:
            raise AirflowSkipException("no job run: the run's outputs do not need this step")
        found = reusable_job_run(self.hook.conn, self.application_id, self.name)
        if found is not None:
            self.job_id = found["id"]
            self.log.info(
                "Job run %s is already %s as %s: following it", self.name, found["state"], found["id"]
            )
            if found["state"] == "SUCCESS":
                return found["id"]
            self._wait_for(found["id"])
        return super().execute(context, event)

    def _wait_for(self, job_run_id: str) -> None:
        self.defer(
            trigger=EmrServerlessStartJobTrigger(
                application_id=self.application_id,
                job_id=job_run_id,
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                cancel_on_kill=self.cancel_on_kill,
                **aws_connection(self),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.waiter_max_attempts * self.waiter_delay),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        """The trigger's event names the job run only on success: the job run is read by its name."""
        client = self.hook.conn
        mine = [r for r in job_runs(client, self.application_id) if r.get("name") == self.name]
        if not mine:
            raise AirflowException(f"no job run named {self.name} on {self.application_id}: {event}")
        ordered = sorted(mine, key=lambda r: (r["state"] in ACTIVE_JOB_STATES, r["state"] == "SUCCESS"))
        job_run = client.get_job_run(applicationId=self.application_id, jobRunId=ordered[-1]["id"])["jobRun"]
        state = job_run["state"]
        if state == "SUCCESS":
            self.log.info("Job run %s (%s) succeeded", self.name, job_run["jobRunId"])
            return job_run["jobRunId"]
        if state in FAILED_JOB_STATES:
            raise JobRunFailureReport.of(self).fail(self.application_id, job_run)
        message = (event or {}).get("message", "")
        if "max attempts" in message.lower() or "timeout" in message.lower():
            cancel_job_runs(client, self.application_id, [job_run["jobRunId"]], self.log)
            raise AirflowFailException(f"job run {job_run['jobRunId']} is stuck ({message}): cancelled")
        # an AWS error while waiting: the retry follows the same job run
        raise AirflowException(
            f"waiting for job run {job_run['jobRunId']} stopped while it is {state}: {event}"
        )
