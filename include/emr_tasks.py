"""The EMR target's tasks: transient cluster, code upload, steps and sensors, assets, teardown.

The jobs register their tables themselves (Iceberg's Glue catalog: Athena sees a commit the
moment it is made); the `register_<output>` tasks turn the job's commit (its metrics) into the
output's Airflow asset event, with the table's new snapshot id.

Imported by `include.dag_factory` only when the target is `emr`, so the default local target
never loads the AWS SDK (boto3 and the provider's hooks are most of a DAG file's parse time).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import chain, get_current_context, task

from include import pipeline as P
from include.dag_factory import STEP_TIMEOUT, table_assets
from include.settings import Settings
from plugins.emr_step_batches import EmrStepBatchesOperator
from plugins.emr_steps import (
    AWS_RETRY_CONFIG,
    EmrIdempotentAddStepsOperator,
    EmrRunClusterOperator,
    EmrRunStepSensor,
    EmrRunTeardownOperator,
)
from plugins.spark_job import add_asset_extras, table_asset_extra

log = logging.getLogger(__name__)


def _upload_code_task(settings: Settings, code: Any):
    @task(task_id="upload_code")
    def upload_code(code: dict[str, str]) -> dict[str, str]:
        """Put the versioned code zip and entrypoint where the steps read them (once per version)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from include.packaging import build_bundle

        bundle = build_bundle()
        if bundle.version != code["version"]:
            raise RuntimeError(
                f"code changed during the run: planned {code['version']}, now {bundle.version}"
            )
        hook = S3Hook(aws_conn_id=settings.aws_conn_id, region_name=settings.region, config=AWS_RETRY_CONFIG)
        for uri, data in (
            (code["py_files"], bundle.zip_bytes),
            (code["entrypoint"], bundle.entrypoint_bytes),
        ):
            bucket, key = S3Hook.parse_s3_url(uri)
            # Same version = same bytes (content hash), so an existing object is already right.
            if hook.check_for_key(key, bucket_name=bucket):
                log.info("%s is already there", uri)
            else:
                hook.load_bytes(data, key=key, bucket_name=bucket, replace=False)
                log.info("uploaded %s (%d bytes)", uri, len(data))
        return code

    return upload_code(code)


def _preflight_task(settings: Settings):
    @task(task_id="preflight", retries=0)
    def preflight() -> list[str]:
        """Check with read-only calls that everything a cluster needs exists (include/preflight.py);
        fail the run before RunJobFlow with one line per missing piece. No retry: a missing
        piece does not come back by itself (throttling and 5xx are retried inside each call)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk.exceptions import AirflowFailException

        from include.preflight import SERVICES, report, run_checks

        if not settings.preflight:
            log.warning("PIPELINE_EMR_PREFLIGHT=false: nothing checked before creating the cluster")
            return []
        from botocore.config import Config

        # one session (one AssumeRole when the connection names a role), a client per service
        hook = AwsBaseHook(aws_conn_id=settings.aws_conn_id, region_name=settings.region)
        session = hook.get_session(region_name=settings.region)
        clients = {
            name: session.client(
                name,
                endpoint_url=hook.conn_config.get_service_endpoint_url(service_name=name),
                config=Config(**AWS_RETRY_CONFIG),
            )
            for name in SERVICES
        }
        findings = run_checks(settings, clients)
        passed, text = report(findings)
        if not passed:
            raise AirflowFailException(text)
        log.info("%s", text)
        return [f.line() for f in findings]

    return preflight()


def _aws(settings: Settings) -> dict[str, Any]:
    # botocore retries throttling and transient errors with backoff inside a try; task retries
    # (default_args, exponential) take over when those are exhausted.
    return {
        "aws_conn_id": settings.aws_conn_id,
        "region_name": settings.region,
        "botocore_config": AWS_RETRY_CONFIG,
    }


def _emr_cluster(settings: Settings, plan: Any) -> tuple[EmrRunClusterOperator, EmrRunTeardownOperator]:
    # A retried create takes the cluster tagged with the run; the teardown cancels the run's
    # steps and terminates its cluster(s), also after the run was marked failed from the UI.
    create_cluster = EmrRunClusterOperator(
        task_id="create_cluster",
        job_flow_overrides=plan["job_flow_overrides"],
        emr_conn_id=None,  # the whole request comes from the profile, not from a connection
        wait_for_completion=False,  # steps queue while the cluster starts
        **_aws(settings),
    )
    terminate_cluster = EmrRunTeardownOperator(
        task_id="terminate_cluster",
        job_flow_id=create_cluster.output,
        **_aws(settings),
    ).as_teardown(setups=create_cluster)
    return create_cluster, terminate_cluster


def _register(settings: Settings, output: str, dates: Any):
    """`register_<output>`: the output's asset event, carrying the snapshot its step committed.

    `dates` (the plan's ds, or the backfill's dates) name the metrics files of the producing step
    (spark_jobs/cli.py) that hold its commits; a file left by another run does not count.
    """
    from include.run_report import lake_io, metrics_uri

    assets = table_assets(settings, (output,))
    step = P.STEPS[P.PRODUCER[output]]

    @task(task_id=f"register_{output}", outlets=list(assets.values()))
    def register(dates: str | list[str]) -> dict[str, Any]:
        ctx = get_current_context()
        read, _ = lake_io(settings.aws_conn_id, settings.region)
        found = []
        for ds in [dates] if isinstance(dates, str) else dates:
            text = read(metrics_uri(settings.lake, step, ds))
            record = json.loads(text) if text else None
            if record is None or record.get("run_id") != P.safe_name(ctx["run_id"]):
                raise RuntimeError(f"step {step.name} left no metrics of this run for {ds}")
            found.append(record)
        add_asset_extras(ctx, assets, found)
        return {table: extra for table in assets if (extra := table_asset_extra(found, table))}

    return register(dates)


def nightly_emr(settings: Settings, plan: Any) -> None:
    create, terminate = _emr_cluster(settings, plan)
    upload = _upload_code_task(settings, plan["code"])
    # nothing reaches AWS before the plan accepted the run's parameters; nothing is created
    # before preflight found everything a cluster needs
    plan >> _preflight_task(settings) >> [create, upload.operator]
    waits: dict[str, EmrRunStepSensor] = {}
    for step in P.PIPELINE:
        # Idempotent (a retry follows the step already added) and cancels its step when killed.
        add = EmrIdempotentAddStepsOperator(
            task_id=f"add_{step.name}",
            job_flow_id=create.output,
            steps=plan[f"step:{step.name}"],
            **_aws(settings),
        )
        # A failed step fails the task at once (no retry), logs its stderr and cancels the run's
        # other steps; errors while waiting are retried; killing it cancels the step.
        wait = EmrRunStepSensor(
            task_id=f"wait_{step.name}",
            job_flow_id=create.output,
            step_id=f"{{{{ ti.xcom_pull(task_ids='add_{step.name}')[0] }}}}",
            deferrable=True,  # the triggerer polls EMR; no worker slot is held while the step runs
            poke_interval=settings.poll_seconds,
            max_attempts=max(1, int(STEP_TIMEOUT.total_seconds()) // settings.poll_seconds),
            **_aws(settings),
        )
        # An empty step list (no requested output needs the step) skips the add task, and with
        # it the wait, the registration and every step after it.
        [create, upload] >> add >> wait
        for dep in step.depends_on:
            waits[dep] >> add
        waits[step.name] = wait
        for output in step.produces:
            wait >> _register(settings, output, plan["ds"])
    # Registering needs no cluster: the cluster goes as soon as the last step ended.
    chain(list(waits.values()), terminate)


def backfill_emr(settings: Settings, plan: Any) -> None:
    """A date range on one cluster: batches of steps, then every output's asset event."""
    create, terminate = _emr_cluster(settings, plan)
    upload = _upload_code_task(settings, plan["code"])
    # parameters first, then preflight, then anything that creates
    plan >> _preflight_task(settings) >> [create, upload.operator]
    run_steps = EmrStepBatchesOperator(
        task_id="run_steps",
        job_flow_id=create.output,
        batches=plan["batches"],
        waiter_delay=settings.poll_seconds,
        waiter_max_attempts=max(1, int(STEP_TIMEOUT.total_seconds()) // settings.poll_seconds),
        # a retry follows the steps already on the cluster; a failed step fails without retry
        **_aws(settings),
    )
    [create, upload] >> run_steps >> terminate
    run_steps >> [_register(settings, out, plan["dates"]) for out in P.OUTPUTS]


def single_step_emr(settings: Settings, plan: Any, step: str) -> None:
    """One step on a transient cluster (the maintenance job): create, upload, add, wait, terminate."""
    create, terminate = _emr_cluster(settings, plan)
    upload = _upload_code_task(settings, plan["code"])
    add = EmrIdempotentAddStepsOperator(
        task_id=f"add_{step}", job_flow_id=create.output, steps=plan[f"step:{step}"], **_aws(settings)
    )
    wait = EmrRunStepSensor(
        task_id=f"wait_{step}",
        job_flow_id=create.output,
        step_id=f"{{{{ ti.xcom_pull(task_ids='add_{step}')[0] }}}}",
        deferrable=True,
        poke_interval=settings.poll_seconds,
        max_attempts=max(1, int(STEP_TIMEOUT.total_seconds()) // settings.poll_seconds),
        **_aws(settings),
    )
    [create, upload] >> add >> wait >> terminate
