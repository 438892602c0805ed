"""Run batches of EMR steps one batch after another on one cluster, deferring while EMR works.

For work whose shape is only known at run time (a backfill's date range): the steps of one
batch are independent and run side by side (up to the cluster's StepConcurrencyLevel); the
next batch is added only once every step of the previous one COMPLETED. Between batches the
task is deferred on a trigger (the provider's, plus cancelling the batch on kill), so no worker
slot is held. Steps are added once (`add_steps_once`), so a retry resumes where the run stopped;
a try on a new cluster (the task cleared with its setup after a failure) runs only the steps
that did not complete on the run's earlier clusters (`completed_run_steps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException

from plugins.aws_trigger import aws_connection
from plugins.emr_client import (
    ACTIVE_STEP_STATES,
    FAILED_STEP_STATES,
    add_steps_once,
    cancel_steps,
    completed_run_steps,
)
from plugins.emr_step_logs import STEP_LOG_LINES, STEP_LOG_WAIT_SECONDS, copy_step_logs, ran
from plugins.emr_steps import EmrStepsCancelOnKillTrigger, StepFailureReport
from plugins.openlineage_steps import with_parent_job_information

MAX_STEPS_PER_BATCH = 10  # ListSteps (what the trigger polls) filters on at most 10 step ids


class EmrStepBatchesOperator(AwsBaseOperator[EmrHook]):
    """Add `batches[0]`, wait for all its steps, add `batches[1]`, ... ; fail on the first failed step.

    A retry follows the steps already on the cluster (a completed batch is not run again). Cleared
    after a failure (with its setup: a new cluster), it leaves out each step that COMPLETED on one
    of the run's earlier clusters: its job committed that date to the run's Iceberg branch, which
    the audit and publish read (a step is known by its name: run, date, step). A failed
    step fails the task without retry, with its stderr location and first error lines in the log,
    and the run's other steps cancelled; a killed task cancels the batch it waits for. Once a batch
    ended, the last lines of each of its steps' stdout and stderr are copied into the task log
    (`StepLogCopier`: one wait of at most `step_log_wait_seconds` for the whole batch).

    :param job_flow_id: the cluster (templated; XComArg works)
    :param batches: lists of boto3 `Steps` items (templated; XComArg works)
    :param waiter_delay: seconds between two polls of a batch
    :param waiter_max_attempts: polls per batch before giving up
    :param openlineage_inject_parent_job_info: this task's OpenLineage run as the parent of each
        step's Spark job (`--conf` in spark-submit, as EmrAddStepsOperator: plugins/openlineage_steps.py)
    :return: every step id, in the order added
    """

    aws_hook_class = EmrHook
    template_fields: Sequence[str] = aws_template_fields("job_flow_id", "batches")
    template_fields_renderers = {"batches": "json"}
    ui_color = "#f9c915"

    def __init__(
        self,
        *,
        job_flow_id: str | Any,
        batches: Sequence[Sequence[dict[str, Any]]] | Any,
        waiter_delay: int = 60,
        waiter_max_attempts: int = 360,
        openlineage_inject_parent_job_info: bool = False,
        step_log_lines: int = STEP_LOG_LINES,
        step_log_wait_seconds: float = STEP_LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_log_lines = step_log_lines
        self.step_log_wait_seconds = step_log_wait_seconds
        self.openlineage_inject_parent_job_info = openlineage_inject_parent_job_info
        self.job_flow_id = job_flow_id
        self.batches = batches
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self._batch: tuple[str, list[str]] | None = None
        self._earlier: dict[str, str] | None = None  # step name -> the earlier cluster it completed on

    def execute(self, context: Any) -> list[str]:
        too_big = [i for i, batch in enumerate(self.batches) if not 0 < len(batch) <= MAX_STEPS_PER_BATCH]
        if too_big:
            raise AirflowException(
                f"batches {too_big} are empty or hold more than {MAX_STEPS_PER_BATCH} steps"
            )
        return self._next(0, [], context)

    def _next(self, index: int, done: list[str], context: Any) -> list[str]:
        if index == len(self.batches):
            self.log.info("All %d batches completed (%d steps)", len(self.batches), len(done))
            return done
        if self._earlier is None:
            self._earlier = completed_run_steps(
                self.hook.conn, context["dag"].dag_id, context["run_id"], exclude=[self.job_flow_id]
            )
        batch = [s for s in self.batches[index] if s["Name"] not in self._earlier]
        done_before = [s["Name"] for s in self.batches[index] if s["Name"] in self._earlier]
        if done_before:
            self.log.info(
                "Batch %d/%d: %d steps completed on the run's earlier clusters, not run again: %s",
                index + 1,
                len(self.batches),
                len(done_before),
                {n: self._earlier[n] for n in done_before},
            )
        if not batch:
            return self._next(index + 1, done, context)
        if self.openlineage_inject_parent_job_info:
            batch = with_parent_job_information(batch, context, self.log)
        self.log.info("Batch %d/%d: %s", index + 1, len(self.batches), [s["Name"] for s in batch])
        self._batch = (self.job_flow_id, [])
        step_ids, states = add_steps_once(self.hook, self.job_flow_id, batch, self.log, self._batch[1])
        if all(state == "COMPLETED" for state in states):  # done by an earlier try
            return self._next(index + 1, [*done, *step_ids], context)
        self.defer(
            trigger=EmrStepsCancelOnKillTrigger(
                job_flow_id=self.job_flow_id,
                step_ids=step_ids,
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                **aws_connection(self),
            ),
            method_name="execute_complete",
            kwargs={"index": index, "done": [*done, *step_ids], "batch": step_ids},
            timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 60),
        )
        raise AssertionError("defer() does not return")  # pragma: no cover

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any] | None = None,
        index: int = 0,
        done: list[str] | None = None,
        batch: list[str] | None = None,
    ) -> list[str]:
        if not event or event.get("status") != "success":
            step_ids = list((event or {}).get("value") or [])
            steps = (
                self.hook.conn.list_steps(ClusterId=self.job_flow_id, StepIds=step_ids)["Steps"]
                if step_ids
                else []
            )
            failed = [s for s in steps if s["Status"]["State"] in FAILED_STEP_STATES]
            if failed:
                # the logs of every step of the batch that ended, in the batch's order
                ended = {s["Id"]: s for s in steps if s["Status"]["State"] not in ACTIVE_STEP_STATES}
                logs = self._copy_logs([i for i in step_ids if i in ended and ran(ended[i])])
                raise StepFailureReport.of(self).fail(self.job_flow_id, failed[-1], logs)
            # no step ended badly: the wait itself failed (throttling, network); a retry resumes
            raise AirflowException(f"waiting for batch {index + 1}/{len(self.batches)} failed: {event}")
        if batch is None:  # deferred before the step ids of the batch were passed on their own
            batch = list(done or [])[-len(self.batches[index]) :]
        self._copy_logs(batch)
        return self._next(index + 1, list(done or []), context)

    def _copy_logs(self, step_ids: list[str]) -> dict[str, str]:
        if self.step_log_lines > 0 and step_ids:
            return copy_step_logs(self, self.job_flow_id, step_ids)
        return {}

    def on_kill(self) -> None:
        if self._batch and self._batch[1]:
            cancel_steps(self.hook.conn, self._batch[0], self._batch[1], self.log)
