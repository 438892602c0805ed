"""EMR operators that survive faults: idempotent cluster and step creation, failures that explain
themselves, and kills that cancel what they started.

The provider's operators create a cluster and add a step again on every try, cancel nothing when
a task is killed, and report a failed step without its log. These subclasses keep the provider's
interfaces (XComs, deferral, links) and find a run's cluster by its tags and a run's step by its
name (`plugins/emr_naming.py`: dag, date, step and run in one string). The EMR calls they share
with the janitor are `plugins/emr_client.py`; reading a step's logs is `plugins/emr_step_logs.py`,
the run's cluster `plugins/emr_cluster.py`.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from plugins.aws_trigger import AwsPollTrigger, aws_connection, s3_hook
from plugins.emr_client import (
    ACTIVE_STEP_STATES,
    FAILED_STEP_STATES,
    add_steps_once,
    cancel_run_steps,
    cancel_steps,
    cluster_end,
)
from plugins.emr_naming import run_of
from plugins.emr_step_logs import (
    STEP_LOG_LINES,
    STEP_LOG_WAIT_SECONDS,
    copy_step_logs,
    error_lines,
    ran,
    read_error_lines,
    stderr_uri,
)
from plugins.openlineage_steps import with_parent_job_information


# ---- steps ----------------------------------------------------------------------------------
def cluster_gone(ended: str) -> str:
    """The one line a step task fails with when the run's cluster ended before the step could run."""
    return (
        f"the run's cluster is gone ({ended}): repair the run (its Repair run tab), or clear this "
        "task with its downstream tasks (the Clear dialog's defaults); either creates a new cluster "
        "and reruns only what failed"
    )


class EmrStepOnClusterTrigger(AwsPollTrigger):
    """Poll one step of one cluster until it ends, or its cluster does; cancel the step on kill.

    Each poll asks DescribeStep, then DescribeCluster while the step is active: a cluster that
    ended under the run (terminated from outside, the janitor, spot or AZ loss of its core nodes)
    ends the wait at once, even when EMR has not cancelled the step yet. Events (each with
    `cluster_id` and `step_id`): `ended` (the step is COMPLETED, FAILED, CANCELLED or
    INTERRUPTED: the task reads it), `cluster_ended` (with EMR's state and reason as `message`),
    `error` (an AWS error that botocore's own retries did not get past) and `timeout`.
    """

    hook_class = EmrHook
    ids = ("job_flow_id", "step_id")

    def __init__(self, *, job_flow_id: str, step_id: str, **poll: Any) -> None:
        super().__init__(**poll)
        self.job_flow_id, self.step_id = job_flow_id, step_id

    def _event(self, status: str, **more: Any) -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "cluster_id": self.job_flow_id, "step_id": self.step_id, **more}
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ids = {"ClusterId": self.job_flow_id}
        async with await self.hook().get_async_conn() as client:
            for attempt in range(max(1, self.waiter_max_attempts)):
                try:
                    step = (await client.describe_step(StepId=self.step_id, **ids))["Step"]
                    state = step["Status"]["State"]
                    if state not in ACTIVE_STEP_STATES:
                        yield self._event("ended", state=state)
                        return
                    ended = cluster_end((await client.describe_cluster(**ids))["Cluster"])
                except (ClientError, BotoCoreError) as exc:
                    yield self._event("error", message=f"{type(exc).__name__}: {exc}")
                    return
                if ended:
                    yield self._event("cluster_ended", message=ended, state=state)
                    return
                self.log.info(
                    "Step %s on %s is %s (poll %d)", self.step_id, self.job_flow_id, state, attempt + 1
                )
                await asyncio.sleep(self.waiter_delay)
        yield self._event("timeout", message=f"still {state} after {self.waiter_max_attempts} polls")

    async def on_kill(self) -> None:
        """A user killed the deferred task: cancel its step if it is still pending or running."""
        async with await self.hook().get_async_conn() as client:
            step = (await client.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id))["Step"]
            if step["Status"]["State"] in ("PENDING", "RUNNING"):
                await client.cancel_steps(
                    ClusterId=self.job_flow_id, StepIds=[step["Id"]], StepCancellationOption="SEND_INTERRUPT"
                )
                self.log.info("Cancelled step %s", step["Id"])


class EmrStepsCancelOnKillTrigger(EmrAddStepsTrigger):
    """The provider's steps trigger, plus: a user killing the deferred task cancels the steps."""

    async def on_kill(self) -> None:
        cluster_id, step_ids = self.waiter_args["ClusterId"], self.waiter_args["StepIds"]
        async with await self.hook().get_async_conn() as client:
            steps = (await client.list_steps(ClusterId=cluster_id, StepIds=step_ids))["Steps"]
            active = [s["Id"] for s in steps if s["Status"]["State"] in ("PENDING", "RUNNING")]
            if active:
                await client.cancel_steps(
                    ClusterId=cluster_id, StepIds=active, StepCancellationOption="SEND_INTERRUPT"
                )
                self.log.info("Cancelled steps %s", active)


class StepFailureReport:
    """Why a step ended badly, read from EMR and the step's log, and the run's other steps cancelled."""

    def __init__(self, emr: Any, s3: S3Hook, log: Any) -> None:
        self.emr, self.s3, self.log = emr, s3, log

    @classmethod
    def of(cls, operator: Any) -> StepFailureReport:
        """The report of a step `operator` waited for, on its connection."""
        return cls(operator.hook.conn, s3_hook(operator), operator.log)

    def fail(
        self, cluster_id: str, step: Mapping[str, Any], logs: Mapping[str, str] | None = None
    ) -> AirflowFailException:
        """Log everything known about the ended `step`, cancel its run's other steps, return the error.

        `logs`: step logs already read (by URI, from `StepLogCopier.copy`), not read again."""
        status = step["Status"]
        lines = [f"EMR step {step['Name']} ({step['Id']}) on cluster {cluster_id} ended {status['State']}"]
        details = status.get("FailureDetails") or {}
        reason = (
            details.get("Message")
            or details.get("Reason")
            or (status.get("StateChangeReason") or {}).get("Message")
        )
        if reason:
            lines.append(f"reason: {reason}")
        cluster = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        ended = cluster_end(cluster)
        if ended:
            lines.append(ended)
        uri = stderr_uri(cluster.get("LogUri"), cluster_id, step["Id"])
        if uri is None:
            lines.append("the cluster has no LogUri: no step logs in S3")
        else:
            lines.append(f"step stderr: {uri}")
            errors = None
            if status["State"] != "CANCELLED":
                known = (logs or {}).get(uri)
                errors = error_lines(known) if known is not None else read_error_lines(self.s3, uri)
            if errors:
                lines.append("first error lines of stderr:")
                lines.extend(f"    {line}" for line in errors)
            elif status["State"] != "CANCELLED":
                lines.append("(stderr not readable yet: EMR uploads step logs every few minutes)")
        if details.get("LogFile"):
            lines.append(f"EMR's failure log: {details['LogFile']}")
        cancelled = cancel_run_steps(self.emr, cluster_id, run_of(step["Name"]), self.log, keep=[step["Id"]])
        if cancelled:
            lines.append(f"cancelled the run's other active steps: {cancelled}")
        message = "\n".join(lines)
        self.log.error("%s", message)
        return AirflowFailException(message)


class EmrRunStepOperator(AwsBaseOperator[EmrHook]):
    """One EMR step of the run in one task: add it to the run's current cluster once, wait, explain.

    `job_flow_id` is the run's current cluster: `create_cluster`'s XCom, rendered again at every
    try, so a task cleared with its setup (the Clear dialog's defaults bring `create_cluster`
    back, which makes a new cluster) runs its step on the new cluster. The step is found there by
    its name (`add_steps_once`: a retry follows the step its earlier try added, a step that
    failed is added anew), and the trigger polls that step *of that cluster*: no try ever polls a
    step id of another cluster. When the cluster has ended before the step could be added (the
    run was cleared with "Only failed tasks", which leaves the setup and its old cluster), the
    task fails at once with one line saying so and what to do (`cluster_gone`); no cluster is
    created here, so none can leak.

    While the step runs the task is deferred (`EmrStepOnClusterTrigger`: no worker slot; a kill
    cancels the step). A step that ends FAILED, CANCELLED or INTERRUPTED fails the task without
    retry (the step stays failed): the log names the S3 URI of its stderr, its first error lines
    when readable and EMR's reason when the cluster itself ended; the run's other pending and
    running steps are cancelled. A cluster that ends under a waiting step fails the task within
    one poll, with the cluster's state and EMR's reason. AWS errors while waiting fail the try
    and are retried (the retry follows the same step).

    A completed step ends the task at once: the next step starts when its inputs' steps ended,
    not when EMR has uploaded their logs (every few minutes); the `step_logs` task copies them
    after the teardown (`EmrRunStepLogsOperator`). A step that ended badly has the last
    `step_log_lines` lines of its stdout and stderr and of its driver's copied into this task's
    log before the failure report, waiting at most `step_log_wait_seconds` for EMR to upload
    them (`StepLogCopier`): its error is what the task log is for.

    :param job_flow_id: the run's cluster (templated; `create_cluster.output`)
    :param steps: the step, as a one-item boto3 `Steps` list (templated; XComArg works); empty: the
        run's outputs do not need the step and the task skips itself
    :param poll_seconds: seconds between two polls of the step (and its cluster)
    :param max_polls: polls before the step counts as stuck: it is cancelled and the task fails
    :param openlineage_inject_parent_job_info: this task's OpenLineage run as the parent of the
        step's Spark job (`--conf` in spark-submit, as EmrAddStepsOperator: plugins/openlineage_steps.py)
    :param step_log_lines: lines of each log (step and driver stdout and stderr) of a step that
        ended badly to copy (0: none)
    :param step_log_wait_seconds: the longest wait for EMR to upload a failed step's logs
    :return: the step's id
    """

    aws_hook_class = EmrHook
    template_fields: Sequence[str] = aws_template_fields("job_flow_id", "steps")
    template_fields_renderers = {"steps": "json"}
    ui_color = "#f9c915"

    def __init__(
        self,
        *,
        job_flow_id: str | Any,
        steps: Sequence[dict[str, Any]] | Any,
        poll_seconds: int = 30,
        max_polls: int = 720,
        openlineage_inject_parent_job_info: bool = False,
        step_log_lines: int = STEP_LOG_LINES,
        step_log_wait_seconds: float = STEP_LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_flow_id = job_flow_id
        self.steps = steps
        self.poll_seconds = poll_seconds
        self.max_polls = max_polls
        self.openlineage_inject_parent_job_info = openlineage_inject_parent_job_info
        self.step_log_lines = step_log_lines
        self.step_log_wait_seconds = step_log_wait_seconds
        self._added: tuple[str, list[str]] | None = None

    def execute(self, context: Any) -> str:
        steps = ast.literal_eval(self.steps) if isinstance(self.steps, str) else list(self.steps or [])
        if not steps:
            # The plan gives a step nothing to run when no requested output needs it.
            raise AirflowSkipException("no step to run: the run's outputs do not need this step")
        if len(steps) != 1:
            raise ValueError(f"{self.task_id} runs one step, not {len(steps)}")
        cluster_id = str(self.job_flow_id)
        client = self.hook.conn
        ended = cluster_end(client.describe_cluster(ClusterId=cluster_id)["Cluster"])
        if ended:
            raise self._fail(cluster_gone(ended))
        if self.openlineage_inject_parent_job_info:
            steps = with_parent_job_information(steps, context, self.log)
        self._added = (cluster_id, [])
        (step_id,), (state,) = add_steps_once(self.hook, cluster_id, steps, self.log, self._added[1])
        if state == "COMPLETED":  # done by an earlier try
            return self._completed(cluster_id, {"Id": step_id, "Status": {"State": state}})
        self.defer(
            trigger=EmrStepOnClusterTrigger(
                job_flow_id=cluster_id,
                step_id=step_id,
                waiter_delay=self.poll_seconds,
                waiter_max_attempts=self.max_polls,
                **aws_connection(self),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.poll_seconds * self.max_polls + 300),
        )
        raise AssertionError("defer() does not return")  # pragma: no cover

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        event = event or {}
        cluster_id, step_id = event.get("cluster_id"), event.get("step_id")
        if not cluster_id or not step_id:
            raise AirflowException(f"the wait for this task's step ended without naming it: {event}")
        status = event.get("status")
        if status == "cluster_ended":
            raise self._fail(
                f"step {step_id} was {event.get('state')} when its cluster ended: {event['message']}"
            )
        if status == "error":  # botocore's retries did not get past it: a retry follows the step
            raise AirflowException(
                f"waiting for step {step_id} on {cluster_id} failed: {event.get('message')}"
            )
        client = self.hook.conn
        step = client.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
        state = step["Status"]["State"]
        if state == "COMPLETED":
            return self._completed(cluster_id, step)
        if state in FAILED_STEP_STATES:
            raise StepFailureReport.of(self).fail(cluster_id, step, self._copy_logs(cluster_id, step))
        if status == "timeout":
            cancel_steps(client, cluster_id, [step_id], self.log)
            raise AirflowFailException(
                f"step {step_id} on {cluster_id} is stuck ({event.get('message')}, "
                f"{self.poll_seconds} s apart): cancelled"
            )
        raise AirflowException(f"waiting for step {step_id} stopped while it is {state}: {event}")

    def on_kill(self) -> None:
        if self._added and self._added[1]:
            cancel_steps(self.hook.conn, self._added[0], self._added[1], self.log)

    def _completed(self, cluster_id: str, step: Mapping[str, Any]) -> str:
        self.log.info(
            "Step %s on %s completed; the tails of its logs: in the run's step_logs task, after the teardown",
            step["Id"],
            cluster_id,
        )
        return step["Id"]

    def _fail(self, message: str) -> AirflowFailException:
        """The error, also in the task log (a task's exception is not always printed with it)."""
        self.log.error("%s", message)
        return AirflowFailException(message)

    def _copy_logs(self, cluster_id: str, step: Mapping[str, Any]) -> dict[str, str]:
        if self.step_log_lines > 0 and ran(step):
            return copy_step_logs(self, cluster_id, [step["Id"]])
        return {}
