"""What both AWS targets (EMR on EC2 and EMR Serverless) wire the same way: the preflight task,
the code upload, and the AWS connection and step-log arguments every AWS task gets."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task

from include.run_plan import RunPlan
from include.settings import PROJECT_ROOT, Settings
from plugins.emr_client import AWS_RETRY_CONFIG

log = logging.getLogger(__name__)


def upload_code_task(settings: Settings, run_plan: Any):
    @task(task_id="upload_code")
    def upload_code(run_plan: dict[str, Any]) -> dict[str, str]:
        """Put the versioned code zip and entrypoint where the steps read them (once per version)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from include.packaging import build_bundle

        code = dict(RunPlan.from_xcom(run_plan).code or {})
        if not code:
            raise ValueError("the run's plan has no code location: it was not planned for EMR")

        bundle = build_bundle()
        if bundle.version != code["version"]:
            raise RuntimeError(
                f"code changed during the run: planned {code['version']}, now {bundle.version}"
            )
        hook = S3Hook(aws_conn_id=settings.aws_conn_id, region_name=settings.region, config=AWS_RETRY_CONFIG)
        uploads = [(code["py_files"], bundle.zip_bytes), (code["entrypoint"], bundle.entrypoint_bytes)]
        if code.get("jars"):
            uploads.append((code["jars"], None))  # the OpenLineage listener, from `make jars`
        for uri, data in uploads:
            bucket, key = S3Hook.parse_s3_url(uri)
            # Same version = same bytes (content hash), so an existing object is already right.
            if hook.check_for_key(key, bucket_name=bucket):
                log.info("%s is already there", uri)
            else:
                data = data if data is not None else _local_jar(uri.rsplit("/", 1)[1])
                hook.load_bytes(data, key=key, bucket_name=bucket, replace=False)
                log.info("uploaded %s (%d bytes)", uri, len(data))
        return code

    return upload_code(run_plan)


def _local_jar(name: str) -> bytes:
    """A jar of the project's cache (`make jars`), to upload where the steps' spark-submit reads it."""
    path = PROJECT_ROOT / ".cache" / "jars" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `make jars` where Airflow runs, or upload {name} to the code "
            "location's jars/ folder (or set PIPELINE_LINEAGE=false)"
        )
    return path.read_bytes()


def preflight_task(settings: Settings):
    @task(task_id="preflight", retries=0)
    def preflight() -> list[str]:
        """Check with read-only calls that everything the target needs exists (deployment/preflight/);
        fail the run before its cluster or application is created, one line per missing piece.
        No retry: a missing piece does not come back by itself (throttling and 5xx are retried
        inside each call)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk.exceptions import AirflowFailException

        from deployment.preflight import SERVICES, report, run_checks
        from include.emr_release import RELEASES
        from include.packaging import build_bundle, code_location

        if not settings.preflight:
            log.warning("PIPELINE_EMR_PREFLIGHT=false: nothing checked before the run's setup")
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
        code_files = code_location(settings, build_bundle().version)["py_files"]
        # the checks of the settings' target (EMR's, or EMR Serverless' with its release labels)
        findings = run_checks(settings, clients, code_files, tuple(RELEASES))
        passed, text = report(findings, settings)
        if not passed:
            raise AirflowFailException(text)
        log.info("%s", text)
        return [f.line() for f in findings]

    return preflight()


def aws_args(settings: Settings) -> dict[str, Any]:
    # botocore retries throttling and transient errors with backoff inside a try; task retries
    # (default_args, exponential) take over when those are exhausted.
    return {
        "aws_conn_id": settings.aws_conn_id,
        "region_name": settings.region,
        "botocore_config": AWS_RETRY_CONFIG,
    }


def step_log_args(settings: Settings) -> dict[str, int]:
    # the tails of the steps' stdout and stderr from the cluster's LogUri, in a task log: a failed
    # step's in its own task's, the completed ones' in `step_logs` after the teardown
    return {
        "step_log_lines": settings.step_log_lines,
        "step_log_wait_seconds": settings.step_log_wait_seconds,
    }
