"""EMR operators that survive faults: idempotent cluster and step creation, failures that explain
themselves, and kills that cancel what they started.

The provider's operators create a cluster and add a step again on every try, cancel nothing when
a task is killed, and report a failed step without its log. These subclasses keep the provider's
interfaces (XComs, deferral, links) and find a run's cluster by its tags and a run's step by its
name (`plugins/emr_naming.py`: dag, date, step and run in one string). The EMR calls they share
with the janitor are `plugins/emr_client.py`; reading a step's logs is `plugins/emr_step_logs.py`.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger, EmrStepSensorTrigger
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from plugins.emr_client import add_steps_once, cancel_run_steps, cancel_steps, cluster_end, tagged_clusters
from plugins.emr_naming import run_of, run_tags
from plugins.emr_step_logs import (
    STEP_LOG_LINES,
    STEP_LOG_WAIT_SECONDS,
    copy_step_logs,
    error_lines,
    ran,
    read_error_lines,
    stderr_uri,
)


# ---- the cluster -----------------------------------------------------------------------------
class EmrRunClusterOperator(EmrCreateJobFlowOperator):
    """Create the run's cluster once; a retry takes the one its earlier try started.

    The run is read from the request's tags (project, dag_id, run_id). RunJobFlow has no client
    token, so a lost response or a retried request can start a cluster nobody knows of: when
    creation fails, every cluster tagged with the run is terminated (best effort) before failing.
    """

    def execute(self, context: Any) -> str | None:
        overrides = self.job_flow_overrides
        if isinstance(overrides, str):
            overrides = self.job_flow_overrides = ast.literal_eval(overrides)
        tags = {t["Key"]: t["Value"] for t in overrides.get("Tags", [])}
        mine = {k: tags[k] for k in ("project", "dag_id", "run_id") if k in tags}
        client = self.hook.conn
        if len(mine) == 3:
            for cluster in tagged_clusters(client, mine, name=overrides.get("Name")):
                self.log.info(
                    "Cluster %s of this run is already %s: using it",
                    cluster["Id"],
                    cluster["Status"]["State"],
                )
                return cluster["Id"]
        try:
            return super().execute(context)
        except Exception as exc:
            if len(mine) == 3:
                for cluster in tagged_clusters(client, mine):
                    self.log.warning("Terminating %s, started by the failed creation", cluster["Id"])
                    client.terminate_job_flows(JobFlowIds=[cluster["Id"]])
            raise AirflowException(f"EMR did not create the cluster: {exc}") from exc


class EmrRunTeardownOperator(AwsBaseOperator[EmrHook]):
    """Cancel the run's pending and running steps, then terminate its cluster(s); says why one ended.

    Runs as the DAG's teardown, whatever happened (also after the run was marked failed from the
    UI). Besides `job_flow_id` (None when creation failed) it terminates every active cluster
    tagged with this run, so a cluster started by a failed or retried creation goes too.

    :return: one line per cluster: what was done
    """

    aws_hook_class = EmrHook
    template_fields: Sequence[str] = aws_template_fields("job_flow_id")
    ui_color = "#f9c915"

    def __init__(self, *, job_flow_id: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_flow_id = job_flow_id

    def execute(self, context: Any) -> list[str]:
        client = self.hook.conn
        ids = [self.job_flow_id] if self.job_flow_id and self.job_flow_id != "None" else []
        tags = run_tags(context["dag"].dag_id, context["run_id"])
        ids += [c["Id"] for c in tagged_clusters(client, tags) if c["Id"] not in ids]
        if not ids:
            self.log.info("No cluster of this run to terminate")
        done = []
        for cluster_id in ids:
            cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
            ended = cluster_end(cluster)
            if ended:
                self.log.warning("%s", ended)
                done.append(ended)
                continue
            cancelled = cancel_run_steps(client, cluster_id, None, self.log)
            client.terminate_job_flows(JobFlowIds=[cluster_id])
            done.append(f"cluster {cluster_id}: cancelled {len(cancelled)} steps, terminating")
            self.log.info("%s", done[-1])
        return done


# ---- steps -----------------------------------------------------------------------------------
class EmrIdempotentAddStepsOperator(EmrAddStepsOperator):
    """Add steps unless the cluster already has them (`add_steps_once`): a retry adds no duplicate.

    Cancels the steps it added when the task is killed. Never waits: a sensor does
    (`EmrRunStepSensor`).
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("deferrable") or kwargs.get("wait_for_completion"):
            raise ValueError("EmrIdempotentAddStepsOperator never waits; use EmrRunStepSensor")
        super().__init__(**kwargs)
        self._added: tuple[str, list[str]] | None = None

    def execute(self, context: Any) -> list[str]:
        steps = ast.literal_eval(self.steps) if isinstance(self.steps, str) else list(self.steps or [])
        if not steps:
            # The plan gives a step nothing to add when no requested output needs it.
            raise AirflowSkipException("no step to add: the run's outputs do not need this step")
        job_flow_id = self.job_flow_id or self.hook.get_cluster_id_by_name(
            str(self.job_flow_name), self.cluster_states
        )
        if not job_flow_id:
            raise AirflowException(f"No cluster found for name: {self.job_flow_name}")
        if self.openlineage_inject_parent_job_info:
            steps = self._inject_openlineage_parent_job_information(steps, context)
        self._added = (job_flow_id, [])
        ids, _ = add_steps_once(
            self.hook,
            job_flow_id,
            steps,
            self.log,
            self._added[1],
            execution_role_arn=self.execution_role_arn,
        )
        return ids

    def on_kill(self) -> None:
        if self._added and self._added[1]:
            cancel_steps(self.hook.conn, self._added[0], self._added[1], self.log)


class EmrStepCancelOnKillTrigger(EmrStepSensorTrigger):
    """The provider's step trigger, plus: a user killing the deferred task cancels the step."""

    async def on_kill(self) -> None:
        async with await self.hook().get_async_conn() as client:
            step = (
                await client.describe_step(
                    ClusterId=self.waiter_args["ClusterId"], StepId=self.waiter_args["StepId"]
                )
            )["Step"]
            if step["Status"]["State"] in ("PENDING", "RUNNING"):
                await client.cancel_steps(
                    ClusterId=self.waiter_args["ClusterId"],
                    StepIds=[step["Id"]],
                    StepCancellationOption="SEND_INTERRUPT",
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


class EmrRunStepSensor(EmrStepSensor):
    """Wait for a step (deferring to a trigger that cancels it on kill); explain and contain a failure.

    When the step ends FAILED, CANCELLED or INTERRUPTED the task fails without retry (the step
    stays failed), logging the S3 URI of the step's stderr, its first error lines when readable,
    and EMR's reason when the cluster itself ended (spot capacity lost, bootstrap failure); the
    run's other pending and running steps are cancelled, so the teardown comes without waiting
    for them. Errors while waiting (throttling, network) fail the try and are retried.

    Once the step ended (completed or failed, deferred or poking), the last `step_log_lines` lines
    of its stdout and stderr and of its driver's are copied from the cluster's LogUri into this
    task's log, waiting at most `step_log_wait_seconds` for EMR to upload them (`StepLogCopier`).

    :param step_log_lines: lines of each log (step and driver stdout and stderr) to copy (0: none)
    :param step_log_wait_seconds: the longest wait for EMR to upload the step's logs
    """

    def __init__(
        self,
        *,
        step_log_lines: int = STEP_LOG_LINES,
        step_log_wait_seconds: float = STEP_LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_log_lines = step_log_lines
        self.step_log_wait_seconds = step_log_wait_seconds

    def execute(self, context: Any) -> None:
        if not self.deferrable:
            super().execute(context=context)
        elif not self.poke(context):
            self.defer(
                timeout=timedelta(seconds=self.max_attempts * self.poke_interval),
                trigger=EmrStepCancelOnKillTrigger(
                    job_flow_id=self.job_flow_id,
                    step_id=self.step_id,
                    waiter_delay=int(self.poke_interval),
                    waiter_max_attempts=self.max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )

    def poke(self, context: Any) -> bool:
        step = self.get_emr_response(context=context)["Step"]
        state = step["Status"]["State"]
        self.log.info("Step %s is %s", self.step_id, state)
        if state in self.target_states:
            self._copy_logs(step)
            return True
        if state in self.failed_states:
            raise self._report().fail(self.job_flow_id, step, self._copy_logs(step))
        return False

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if event and event.get("status") == "success":
            self.log.info("Step %s completed", self.step_id)
            self._copy_logs({"Id": self.step_id, "Status": {"State": "COMPLETED"}})
            return
        step = self.hook.conn.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id)["Step"]
        state = step["Status"]["State"]
        if state in self.failed_states:
            raise self._report().fail(self.job_flow_id, step, self._copy_logs(step))
        if state in self.target_states:
            self._copy_logs(step)
            return
        raise AirflowException(f"waiting for step {self.step_id} stopped while it is {state}: {event}")

    def on_kill(self) -> None:
        client = self.hook.conn
        state = client.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id)["Step"]["Status"][
            "State"
        ]
        if state in ("PENDING", "RUNNING"):
            cancel_steps(client, self.job_flow_id, [self.step_id], self.log)

    def _s3(self) -> S3Hook:
        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, config=self.botocore_config)

    def _report(self) -> StepFailureReport:
        return StepFailureReport(self.hook.conn, self._s3(), self.log)

    def _copy_logs(self, step: Mapping[str, Any]) -> dict[str, str]:
        if self.step_log_lines > 0 and ran(step):
            return copy_step_logs(self, self.job_flow_id, [step["Id"]])
        return {}
