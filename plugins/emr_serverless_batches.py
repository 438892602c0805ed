"""Run batches of EMR Serverless job runs one batch after another on one application, deferring
while they run: a backfill's steps on Serverless, as plugins/emr_step_batches.py runs them on EMR.

The job runs of one batch are independent and run side by side; the next batch is started only
once every job run of the previous one succeeded. Between batches the task is deferred
(`JobRunsTrigger`: no worker slot; a kill cancels the batch's job runs). Job runs are started
once (`reusable_job_run`: a retry follows those running or succeeded); a try on a new
application (the task cleared with its setup after a failure) leaves out each job run that
succeeded on one of the run's earlier applications: its job committed that date to the run's
Iceberg branch, which the audit and publish read.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any
from uuid import uuid4

from airflow.providers.amazon.aws.hooks.emr import EmrServerlessHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.openlineage.utils.spark import (
    inject_parent_job_information_into_emr_serverless_properties,
)
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from plugins.aws_trigger import AwsPollTrigger, aws_connection
from plugins.emr_naming import serverless_application_name
from plugins.emr_serverless import (
    ACTIVE_JOB_STATES,
    FAILED_JOB_STATES,
    JobRunFailureReport,
    cancel_job_runs,
    job_runs,
    reusable_job_run,
    run_applications,
)
from plugins.emr_step_logs import STEP_LOG_LINES, STEP_LOG_WAIT_SECONDS


class JobRunsTrigger(AwsPollTrigger):
    """Poll job runs of one application until every one ended; cancel those still active on kill.

    Events (each with `application_id` and `job_run_ids`): `ended` (with `states`), `error` (an
    AWS error botocore's retries did not get past) and `timeout`."""

    hook_class = EmrServerlessHook
    ids = ("application_id", "job_run_ids")

    def __init__(self, *, application_id: str, job_run_ids: Sequence[str], **poll: Any) -> None:
        super().__init__(**poll)
        self.application_id, self.job_run_ids = application_id, list(job_run_ids)

    def _event(self, status: str, **more: Any) -> TriggerEvent:
        ids = {"application_id": self.application_id, "job_run_ids": self.job_run_ids}
        return TriggerEvent({"status": status, **ids, **more})

    async def _states(self, client: Any) -> dict[str, str]:
        states = {}
        for job_run_id in self.job_run_ids:
            run = await client.get_job_run(applicationId=self.application_id, jobRunId=job_run_id)
            states[job_run_id] = run["jobRun"]["state"]
        return states

    async def run(self) -> AsyncIterator[TriggerEvent]:
        states: dict[str, str] = {}
        async with await self.hook().get_async_conn() as client:
            for attempt in range(max(1, self.waiter_max_attempts)):
                try:
                    states = await self._states(client)
                except (ClientError, BotoCoreError) as exc:
                    yield self._event("error", message=f"{type(exc).__name__}: {exc}")
                    return
                if not any(state in ACTIVE_JOB_STATES for state in states.values()):
                    yield self._event("ended", states=states)
                    return
                self.log.info("Job runs on %s: %s (poll %d)", self.application_id, states, attempt + 1)
                await asyncio.sleep(self.waiter_delay)
        yield self._event("timeout", message=f"still {states} after {self.waiter_max_attempts} polls")

    async def on_kill(self) -> None:
        """A user killed the deferred task (or marked it failed): cancel the batch's active job runs."""
        async with await self.hook().get_async_conn() as client:
            for job_run_id, state in (await self._states(client)).items():
                if state in ACTIVE_JOB_STATES:
                    await client.cancel_job_run(applicationId=self.application_id, jobRunId=job_run_id)
                    self.log.info("Cancelled job run %s", job_run_id)


class ServerlessJobRunBatchesOperator(AwsBaseOperator[EmrServerlessHook]):
    """Start `batches[0]`'s job runs, wait for all, start `batches[1]`'s, ...; fail on the first
    failed job run (its stateDetails and driver logs, the run's other job runs cancelled).

    :param application_id: the run's application (templated; XComArg works)
    :param batches: lists of StartJobRun arguments without the application (templated)
    :param waiter_delay: seconds between two polls of a batch
    :param waiter_max_attempts: polls per batch before giving up
    :param openlineage_inject_parent_job_info: this task's OpenLineage run as the parent of each
        job run's Spark job (the provider's properties, as its EmrServerlessStartJobOperator's)
    :return: every job run id, in the order started
    """

    aws_hook_class = EmrServerlessHook
    template_fields: Sequence[str] = aws_template_fields("application_id", "batches")
    template_fields_renderers = {"batches": "json"}

    def __init__(
        self,
        *,
        application_id: str | Any,
        batches: Sequence[Sequence[dict[str, Any]]] | Any,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 720,
        openlineage_inject_parent_job_info: bool = False,
        step_log_lines: int = STEP_LOG_LINES,
        step_log_wait_seconds: float = STEP_LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.application_id = application_id
        self.batches = batches
        self.waiter_delay, self.waiter_max_attempts = waiter_delay, waiter_max_attempts
        self.openlineage_inject_parent_job_info = openlineage_inject_parent_job_info
        self.step_log_lines, self.step_log_wait_seconds = step_log_lines, step_log_wait_seconds

    def execute(self, context: Any, batch: int = 0, started: Sequence[str] = ()) -> list[str]:
        client, started = self.hook.conn, list(started)
        done_before = self._succeeded_on_earlier_applications(context) if batch == 0 else set()
        for index in range(batch, len(self.batches)):
            ids, waiting = [], False
            for request in self.batches[index]:
                if request["name"] in done_before:
                    self.log.info(
                        "%s succeeded on an earlier application of this run: left out", request["name"]
                    )
                    continue
                found = reusable_job_run(client, self.application_id, request["name"])
                if found is None:
                    job_run_id = client.start_job_run(
                        applicationId=self.application_id,
                        clientToken=str(uuid4()),
                        **self._with_parent(request, context),
                    )["jobRunId"]
                    self.log.info("Started job run %s: %s", job_run_id, request["name"])
                    state = "SUBMITTED"
                else:
                    job_run_id, state = found["id"], found["state"]
                    self.log.info("Job run %s is already %s as %s", request["name"], state, job_run_id)
                ids.append(job_run_id)
                waiting = waiting or state != "SUCCESS"
            started += ids
            if waiting:
                self.defer(
                    trigger=JobRunsTrigger(
                        application_id=self.application_id,
                        job_run_ids=ids,
                        waiter_delay=self.waiter_delay,
                        waiter_max_attempts=self.waiter_max_attempts,
                        **aws_connection(self),
                    ),
                    method_name="batch_ended",
                    kwargs={"batch": index, "started": started},
                    timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 300),
                )
        return started

    def batch_ended(
        self, context: Any, event: dict[str, Any] | None = None, batch: int = 0, started: Sequence[str] = ()
    ) -> list[str]:
        event, client = event or {}, self.hook.conn
        status = event.get("status")
        if status == "error":  # a retry follows the same job runs
            raise AirflowException(f"waiting for batch {batch} failed: {event.get('message')}")
        ids = event.get("job_run_ids") or []
        runs = [client.get_job_run(applicationId=self.application_id, jobRunId=i)["jobRun"] for i in ids]
        failed = [r for r in runs if r["state"] in FAILED_JOB_STATES]
        if failed:
            raise JobRunFailureReport.of(self).fail(self.application_id, failed[0])
        if status == "timeout":
            cancel_job_runs(client, self.application_id, ids, self.log)
            raise AirflowFailException(f"batch {batch} is stuck ({event.get('message')}): cancelled")
        if any(r["state"] != "SUCCESS" for r in runs):
            raise AirflowException(f"batch {batch} stopped waiting while {[r['state'] for r in runs]}")
        return self.execute(context, batch=batch + 1, started=started)

    def _with_parent(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        if not self.openlineage_inject_parent_job_info:
            return request
        request = copy.deepcopy(request)
        request["configurationOverrides"] = inject_parent_job_information_into_emr_serverless_properties(
            request.get("configurationOverrides"), context
        )
        return request

    def _succeeded_on_earlier_applications(self, context: Any) -> set[str]:
        """Names of the run's job runs that succeeded on its other (earlier) applications."""
        client = self.hook.conn
        name = serverless_application_name(context["dag"].dag_id, context["run_id"])
        earlier = [
            a["id"] for a in run_applications(client, name, _ALL_STATES) if a["id"] != self.application_id
        ]
        return {r["name"] for app in earlier for r in job_runs(client, app, ["SUCCESS"]) if r.get("name")}


_ALL_STATES = ("CREATING", "CREATED", "STARTING", "STARTED", "STOPPING", "STOPPED", "TERMINATED")
