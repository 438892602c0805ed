"""The EMR Serverless target (`PIPELINE_TARGET=emr-serverless`): preflight and the code upload as on
EMR, an EMR Serverless application per run as the run's setup, one deferrable job run per step
(`plugins/emr_serverless.py`), the application stopped and deleted as the teardown.

Why an application per run, not a long-lived one per profile with auto-stop: it is the transient
cluster's analogue. The release label, the network and the capacity follow the settings of the run
that creates it, so a changed `PIPELINE_EMR_RELEASE` or profile takes effect at the next run, not
after someone updates a shared application; concurrent runs and backfills never share (or queue
behind) each other's capacity; each run's cost is its own application's; and a repair gets a new
application as a repaired EMR run gets a new cluster. A long-lived application would save little:
a nightly finds it stopped after auto-stop anyway, so its cold start is the same, and
pre-initialized capacity would only help within a run, where the application is warm already.

The emr-serverless API calls this target makes (the Airflow role needs exactly these; the job
runtime role, PIPELINE_SERVERLESS_EXECUTION_ROLE, is passed to the job runs):
    emr-serverless:CreateApplication    setup: the run's application (tagged with the run's tags)
    emr-serverless:ListApplications     setup: a retried create finds the run's application by name
    emr-serverless:GetApplication       setup waits for CREATED; a step waits for STARTED
    emr-serverless:StartApplication     a step starts the application if it is not started
    emr-serverless:StartJobRun          a step's job run (tagged with the run's tags)
    emr-serverless:ListJobRuns          a retried step finds its job run by name; a failed step and
                                        the teardown find the run's job runs still running
    emr-serverless:GetJobRun            a deferred step watches its job run; the run report reads it
    emr-serverless:CancelJobRun         a failed step cancels the others; on kill/Mark failed; teardown
    emr-serverless:StopApplication      teardown
    emr-serverless:DeleteApplication    teardown
    emr-serverless:TagResource          tags given with CreateApplication and StartJobRun
    iam:PassRole                        the job runtime role, to emr-serverless.amazonaws.com
    iam:CreateServiceLinkedRole         once per account: AWSServiceRoleForAmazonEMRServerless
                                        (the application's network interfaces in the subnet)
    s3:GetObject, s3:ListBucket         the failed job run's driver stderr under PIPELINE_EMR_LOG_URI
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
from plugins.emr_serverless import (
    ServerlessApplicationOperator,
    ServerlessJobRunOperator,
    ServerlessTeardownOperator,
)
from plugins.emr_serverless_batches import ServerlessJobRunBatchesOperator

SETUP_TASK_ID = "create_application"
TEARDOWN_TASK_ID = "delete_application"


def _polls(settings: Settings) -> dict[str, int]:
    """How often a deferred task asks about its job runs, and how often before they count as stuck."""
    return {
        "waiter_delay": settings.poll_seconds,
        "waiter_max_attempts": max(1, int(STEP_TIMEOUT.total_seconds()) // settings.poll_seconds),
    }


class PlannedApplicationOperator(FromRunPlan, ServerlessApplicationOperator):
    """create_application: the run's application as its plan requests it (profile, tags, release)."""

    template_fields: Sequence[str] = (*ServerlessApplicationOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, **kwargs: Any) -> None:
        super().__init__(release_label="", job_type="SPARK", config={}, **kwargs)
        self.run_plan = run_plan

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        if plan.serverless is None:
            raise ValueError("the run's plan has no Serverless application: it was not planned for it")
        request = dict(plan.serverless["application"])
        return {
            "release_label": request.pop("releaseLabel"),
            "job_type": request.pop("type"),
            "config": request,
        }


class PlannedJobRunOperator(FromRunPlan, ServerlessJobRunOperator):
    """run_<step>: the planned step's job run (none: no requested output needs it, it skips),
    with the code, the OpenLineage listener jar and the jobs' Spark properties."""

    template_fields: Sequence[str] = (*ServerlessJobRunOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, plan_step: str, spark_conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(execution_role_arn="", job_driver={}, **kwargs)
        self.run_plan = run_plan
        self.plan_step = plan_step
        self.spark_conf = spark_conf

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        runs = plan.job_runs(self.plan_step, self.spark_conf)
        if not runs:
            return {"job_driver": {}}
        if len(runs) != 1:
            raise ValueError(f"{self.task_id} runs one job run, not {len(runs)}")
        (run,) = runs
        return {
            "name": run["name"],
            "execution_role_arn": run["executionRoleArn"],
            "job_driver": run["jobDriver"],
            "configuration_overrides": run["configurationOverrides"],
            "config": {"tags": run["tags"], "executionTimeoutMinutes": run["executionTimeoutMinutes"]},
        }


class PlannedJobRunBatchesOperator(FromRunPlan, ServerlessJobRunBatchesOperator):
    """run_steps: a backfill's every step, batch by batch, on the run's application."""

    template_fields: Sequence[str] = (*ServerlessJobRunBatchesOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, spark_conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(batches=[], **kwargs)
        self.run_plan = run_plan
        self.spark_conf = spark_conf

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        return {"batches": plan.job_run_batches(self.spark_conf)}


class ServerlessTarget:
    """Job runs on an EMR Serverless application per run: preflight, then the application and the
    code upload as the run's setup; one deferrable task per step; the application stopped and
    deleted as its teardown (whatever happened)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._create: PlannedApplicationOperator | None = None

    def preflight(self) -> Any:
        return preflight_task(self.settings)

    def setup(self, run_plan: Any) -> tuple[list[Any], Any]:
        # A retried create takes the application named for the run; the teardown cancels the
        # run's job runs and deletes its application(s), also after the run was marked failed.
        self._create = PlannedApplicationOperator(
            task_id=SETUP_TASK_ID,
            run_plan=run_plan,
            wait_for_completion=False,  # created, then started: the first job run waits for STARTED
            deferrable=False,
            **_polls(self.settings),
            **aws_args(self.settings),
        )
        delete = ServerlessTeardownOperator(
            task_id=TEARDOWN_TASK_ID,
            application_id=self._create.output,
            **_polls(self.settings),
            **aws_args(self.settings),
        ).as_teardown(setups=self._create)
        upload = upload_code_task(self.settings, run_plan)
        return [self._create, upload.operator], delete

    def step(self, run_plan: Any, task_id: str, step: str) -> PlannedJobRunOperator:
        """run_<name>: the step's job run started once on the run's current application
        (`create_application`'s XCom, read again at every try), then watched while deferred. One
        task per step: clearing it with the Clear dialog's defaults brings `create_application`
        (its setup) back, and with it a new application. An empty plan skips it."""
        settings = self.settings
        return PlannedJobRunOperator(
            task_id=task_id,
            application_id=self._application().output,
            run_plan=run_plan,
            plan_step=step,
            spark_conf=spark_properties(settings),  # the jobs' lineage settings (none when it is off)
            # the provider's OpenLineage injection: this task's run becomes the Spark job's parent
            openlineage_inject_parent_job_info=settings.lineage,
            **_polls(settings),
            **step_log_args(settings),
            **aws_args(settings),
        )

    def steps_done(self) -> EmptyOperator:
        # Airflow wants a setup's direct followers on all_success: the join carries the rule.
        return EmptyOperator(task_id="steps_done", trigger_rule="none_failed_min_one_success")

    def batches(self, run_plan: Any, task_id: str) -> PlannedJobRunBatchesOperator:
        """A backfill's batches on the run's application (each batch side by side, the next once
        it succeeded); a retry follows the job runs already started; a failed one fails the task."""
        settings = self.settings
        return PlannedJobRunBatchesOperator(
            task_id=task_id,
            application_id=self._application().output,
            run_plan=run_plan,
            spark_conf=spark_properties(settings),
            openlineage_inject_parent_job_info=settings.lineage,
            **_polls(settings),
            **step_log_args(settings),
            **aws_args(settings),
        )

    def teardown(self, teardown: Any, after: Sequence[Any], *, step_logs: bool = True) -> None:
        # Registering needs no application: it goes as soon as the last job run ended. A failed
        # job run's driver logs are in its own task's log; the others stay in S3 (logUri).
        chain(list(after), teardown)

    def _application(self) -> PlannedApplicationOperator:
        if self._create is None:
            raise RuntimeError("the Serverless target's setup (create_application) is wired before its steps")
        return self._create
