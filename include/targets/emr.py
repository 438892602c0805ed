"""The EMR target: preflight, a transient cluster and the code upload as the run's setup, one
deferrable task per step (`plugins/emr_steps.py`), the cluster terminated as the teardown
(`plugins/emr_cluster.py`).

The jobs register their tables themselves (Iceberg's Glue catalog: Athena sees a commit the
moment it is made); the `register_<output>` tasks (`include.dag_parts`) turn the job's commit
(its metrics) into the output's Airflow asset event, with the table's new snapshot id.

Imported by `include.targets.target_for` only when the target is `emr`, so the default local
target never loads the AWS SDK (boto3 and the provider's hooks are most of a DAG file's parse time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import chain

from include.dag_parts import STEP_TIMEOUT
from include.lineage import spark_properties
from include.run_plan import RunPlan
from include.settings import Settings
from include.targets import FromRunPlan
from include.targets.aws import aws_args, preflight_task, step_log_args, upload_code_task
from plugins.emr_cluster import EmrRunClusterOperator, EmrRunTeardownOperator
from plugins.emr_step_batches import EmrStepBatchesOperator
from plugins.emr_step_logs import EmrRunStepLogsOperator
from plugins.emr_steps import EmrRunStepOperator


def _step_logs_task(settings: Settings) -> EmrRunStepLogsOperator:
    # the tails of the completed steps' logs, once the cluster is going: off the critical path
    return EmrRunStepLogsOperator(
        task_id="step_logs",
        trigger_rule="all_done",
        retries=0,
        **step_log_args(settings),
        **aws_args(settings),
    )


class PlannedClusterOperator(FromRunPlan, EmrRunClusterOperator):
    """create_cluster: the run's cluster as its plan requests it (profile, tags, release)."""

    template_fields: Sequence[str] = (*EmrRunClusterOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, **kwargs: Any) -> None:
        super().__init__(job_flow_overrides=None, **kwargs)
        self.run_plan = run_plan

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        if plan.cluster is None:
            raise ValueError("the run's plan has no cluster: it was not planned for EMR")
        return {"job_flow_overrides": dict(plan.cluster)}


class PlannedStepOperator(FromRunPlan, EmrRunStepOperator):
    """run_<step>: the planned step's EMR step (none: no requested output needs it, it skips),
    submitted with the code, the OpenLineage listener jar and the jobs' Spark properties."""

    template_fields: Sequence[str] = (*EmrRunStepOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, plan_step: str, spark_conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(steps=[], **kwargs)
        self.run_plan = run_plan
        self.plan_step = plan_step
        self.spark_conf = spark_conf

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        return {"steps": plan.emr_steps(self.plan_step, self.spark_conf)}


class PlannedBatchesOperator(FromRunPlan, EmrStepBatchesOperator):
    """run_steps: a backfill's every step, batch by batch, on the run's cluster."""

    template_fields: Sequence[str] = (*EmrStepBatchesOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, spark_conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(batches=[], **kwargs)
        self.run_plan = run_plan
        self.spark_conf = spark_conf

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        return {"batches": plan.emr_batches(self.spark_conf)}


class EmrTarget:
    """Steps on a transient EMR cluster: preflight, then the cluster and the code upload as the
    run's setup; one deferrable task per step; the cluster terminated as its teardown (whatever
    happened), then the completed steps' log tails."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._create: PlannedClusterOperator | None = None

    def preflight(self) -> Any:
        return preflight_task(self.settings)

    def setup(self, run_plan: Any) -> tuple[list[Any], Any]:
        # A retried create takes the cluster tagged with the run; the teardown cancels the run's
        # steps and terminates its cluster(s), also after the run was marked failed from the UI.
        self._create = PlannedClusterOperator(
            task_id="create_cluster",
            run_plan=run_plan,
            emr_conn_id=None,  # the whole request comes from the profile, not from a connection
            wait_for_completion=False,  # steps queue while the cluster starts
            **aws_args(self.settings),
        )
        terminate = EmrRunTeardownOperator(
            task_id="terminate_cluster",
            job_flow_id=self._create.output,
            **aws_args(self.settings),
        ).as_teardown(setups=self._create)
        upload = upload_code_task(self.settings, run_plan)
        return [self._create, upload.operator], terminate

    def step(self, run_plan: Any, task_id: str, step: str) -> PlannedStepOperator:
        """run_<name>: the step added once to the run's current cluster (`create_cluster`'s XCom,
        read again at every try), then watched while deferred (a failed step fails it at once,
        with its stderr, and cancels the run's other steps; a cluster that ends under it fails it
        within one poll). One task per step, so a step is never cleared apart from its wait:
        clearing it with the Clear dialog's defaults brings `create_cluster` (its setup) back, and
        with it a new cluster. An empty step list skips the task, and with it what follows."""
        settings = self.settings
        return PlannedStepOperator(
            task_id=task_id,
            job_flow_id=self._cluster().output,
            run_plan=run_plan,
            plan_step=step,
            spark_conf=spark_properties(settings),  # the jobs' lineage settings (none when it is off)
            poll_seconds=settings.poll_seconds,
            max_polls=max(1, int(STEP_TIMEOUT.total_seconds()) // settings.poll_seconds),
            # the provider's OpenLineage injection: this task's run becomes the Spark job's parent
            openlineage_inject_parent_job_info=settings.lineage,
            **step_log_args(settings),
            **aws_args(settings),
        )

    def steps_done(self) -> EmptyOperator:
        # Airflow wants a setup's direct followers on all_success: the join carries the rule.
        return EmptyOperator(task_id="steps_done", trigger_rule="none_failed_min_one_success")

    def batches(self, run_plan: Any, task_id: str) -> PlannedBatchesOperator:
        """A backfill's batches on the run's cluster (each batch side by side, the next once it
        completed); a retry follows the steps already on the cluster; a failed step fails without retry."""
        settings = self.settings
        return PlannedBatchesOperator(
            task_id=task_id,
            job_flow_id=self._cluster().output,
            run_plan=run_plan,
            spark_conf=spark_properties(settings),
            waiter_delay=settings.poll_seconds,
            waiter_max_attempts=max(1, int(STEP_TIMEOUT.total_seconds()) // settings.poll_seconds),
            openlineage_inject_parent_job_info=settings.lineage,
            **step_log_args(settings),
            **aws_args(settings),
        )

    def teardown(self, teardown: Any, after: Sequence[Any], *, step_logs: bool = True) -> None:
        # Registering needs no cluster: the cluster goes as soon as the last step ended; the
        # completed steps' logs are copied after that (EMR uploads them every few minutes).
        chain(list(after), teardown, *([_step_logs_task(self.settings)] if step_logs else []))

    def _cluster(self) -> PlannedClusterOperator:
        if self._create is None:
            raise RuntimeError("the EMR target's setup (create_cluster) is wired before its steps")
        return self._create
