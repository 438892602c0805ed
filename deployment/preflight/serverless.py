"""Preflight of the emr-serverless target: read-only calls, seconds, before CreateApplication.

What an EMR Serverless run needs that an EMR cluster does not: the job runtime role
(PIPELINE_SERVERLESS_EXECUTION_ROLE) trusted by emr-serverless.amazonaws.com, the application's
subnet and security group (in the subnet's VPC), a release label EMR Serverless offers, and the
buckets of the code and of the job runs' logs. The KMS key, the lake bucket's encryption, the Glue
databases, the code location's writability, the metrics and alerts and the clickstream's stream
are checked as for EMR (`preflight`'s own checks). No emr-serverless call lists release labels
(botocore's emr-serverless has no ListReleaseLabels), so the label is held to the project's
release table (include.emr_release.RELEASES), every release of which EMR Serverless runs; like
the code zip's location, the caller hands it in (deployment/ imports nothing of include/).
`deployment.preflight.run_checks` runs these for a settings object of the emr-serverless target.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from deployment.preflight.findings import (
    Clients,
    Finding,
    Settings,
    bucket_exists,
    bucket_key,
    error_code,
    is_missing,
    missing_or_unreadable,
    role_name,
    unreadable,
)
from deployment.preflight.permissions import check_code_location, check_monitoring
from deployment.preflight.resources import (
    check_bucket,
    check_clickstream_stream,
    check_glue_databases,
    check_kms_key,
    read_subnet,
)

SERVICE = "emr-serverless.amazonaws.com"


DEPLOY_SERVERLESS = "deploy the stack with ServerlessTarget=true (make aws-deploy) and paste its settings"


def _principals(document: Any) -> list[str]:
    """The services a trust policy lets assume the role (Allow statements with sts:AssumeRole)."""
    doc = json.loads(unquote(document)) if isinstance(document, str) else document
    out = []
    for st in doc.get("Statement", []):
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if st.get("Effect") != "Allow" or "sts:AssumeRole" not in actions:
            continue
        service = (st.get("Principal") or {}).get("Service", [])
        out += [service] if isinstance(service, str) else list(service)
    return out


def check_execution_role(settings: Settings, aws: Clients) -> list[Finding]:
    """The job runtime role exists and emr-serverless.amazonaws.com may assume it."""
    piece, arn = "Serverless execution role", settings.serverless_execution_role
    if not arn:
        return [Finding(piece, "PIPELINE_SERVERLESS_EXECUTION_ROLE is not set", DEPLOY_SERVERLESS)]
    try:
        role = aws["iam"].get_role(RoleName=role_name(arn))["Role"]
    except ClientError as exc:
        return [missing_or_unreadable(piece, repr(role_name(arn)), exc, DEPLOY_SERVERLESS)]
    if SERVICE not in _principals(role.get("AssumeRolePolicyDocument", {})):
        return [
            Finding(
                piece,
                f"{role_name(arn)!r} does not trust {SERVICE}",
                f"let {SERVICE} assume it (the stack's ServerlessExecutionRole does)",
            )
        ]
    return []


def check_serverless_network(settings: Settings, aws: Clients) -> list[Finding]:
    """The application's subnet exists and is private; its security group exists in that VPC."""
    subnet_id, sg, ec2 = settings.subnet_id, settings.serverless_security_group, aws["ec2"]
    subnet, findings = read_subnet(subnet_id, ec2)
    if subnet is None:
        return findings
    piece = "Serverless security group"
    if not sg:
        return [*findings, Finding(piece, "PIPELINE_SERVERLESS_SECURITY_GROUP is not set", DEPLOY_SERVERLESS)]
    try:
        group = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
    except ClientError as exc:
        if is_missing(exc) or "NotFound" in error_code(exc):
            return [*findings, Finding(piece, f"{sg} does not exist", DEPLOY_SERVERLESS)]
        return [*findings, unreadable(piece, exc)]
    if group.get("VpcId") != subnet.get("VpcId"):
        findings.append(
            Finding(piece, f"{sg} is not in the VPC of subnet {subnet_id}", "use a group of that VPC")
        )
    return findings


def check_serverless_release(settings: Settings, releases: Collection[str]) -> list[Finding]:
    """The release label is one of the project's `releases` (each offered by EMR Serverless)."""
    label = settings.release_label
    if label in releases:
        return []
    known = ", ".join(sorted(releases))
    return [
        Finding(
            "release label",
            f"{label} is not in the project's release table ({known}): its Python, Iceberg and "
            "OpenLineage listener are unknown here",
            "use one of them in PIPELINE_EMR_RELEASE (the default emr-spark-8.1.0), or add it to "
            "include/emr_release.py once its release page is read",
        )
    ]


def check_code_and_log_buckets(settings: Settings, aws: Clients) -> list[Finding]:
    """The buckets of the code (PIPELINE_CODE_URI) and of the job runs' logs (PIPELINE_EMR_LOG_URI)
    exist and are this account's."""
    account = aws["sts"].get_caller_identity()["Account"]
    findings, seen = [], set()
    for piece, uri in (("code bucket", settings.code_uri), ("log bucket", settings.log_uri)):
        bucket, _ = bucket_key(uri)
        if bucket in seen:
            continue
        seen.add(bucket)
        missing = bucket_exists(aws, bucket, piece, account)
        if missing:
            findings.append(missing)
    return findings


SERVERLESS_CHECKS = (
    check_execution_role,
    check_serverless_network,
    check_serverless_release,
    check_code_and_log_buckets,
    check_kms_key,
    check_bucket,
    check_glue_databases,
    check_code_location,
    check_monitoring,
    check_clickstream_stream,
)
