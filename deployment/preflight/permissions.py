"""Preflight's checks of what the caller may do, judged from its own IAM policies (nothing is
written): upload the code, publish the metrics and the alerts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from deployment.iam.evaluate import Request, UnsupportedPolicy, is_allowed
from deployment.preflight.findings import Clients, Finding, Settings, bucket_exists, bucket_key, error_code

_ASSUMED_ROLE = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/(?P<role>[^/]+)/")


def _role_policies(iam: Any, role: str) -> list[dict[str, Any]]:
    """The identity policies of `role`: inline, then attached (default versions)."""
    docs = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        docs.append(_document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]))
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        got = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
        docs.append(_document(got["PolicyVersion"]["Document"]))
    return docs


def _document(doc: Any) -> dict[str, Any]:
    """boto3 decodes policy documents; a document it could not decode arrives as its JSON text."""
    return json.loads(doc) if isinstance(doc, str) else doc


@dataclass(frozen=True)
class _Caller:
    """The caller's role and its identity policies, or why they could not be had."""

    role: str | None
    policies: list[dict[str, Any]]
    why_not: str = ""  # "the caller ... is not an assumed role" / "... could not be read (...)"
    fix: str = ""


def _caller(aws: Clients, identity: Mapping[str, Any]) -> _Caller:
    role = _ASSUMED_ROLE.match(identity["Arn"])
    if role is None:
        return _Caller(
            None,
            [],
            f"the caller {identity['Arn']} is not an assumed role",
            "run preflight with the Airflow role's credentials to judge it",
        )
    name = role.group("role")
    try:
        return _Caller(name, _role_policies(aws["iam"], name))
    except ClientError as exc:
        return _Caller(
            name,
            [],
            f"the policies of role {name} could not be read ({error_code(exc)})",
            "grant the role deployment/iam/airflow-role-policy.json's PreflightReadsItsOwnPolicies",
        )


def _denied(caller: _Caller, questions: Sequence[Request]) -> list[Request] | str:
    """The questions the caller's policies deny, or the feature that keeps them from being judged."""
    try:
        return [q for q in questions if not is_allowed(caller.policies, q)]
    except UnsupportedPolicy as exc:
        return str(exc)


def check_code_location(settings: Settings, aws: Clients, code_files: str) -> list[Finding]:
    """May the caller upload this run's code to `code_files` (its zip's S3 location)?"""
    target = code_files
    bucket, key = bucket_key(target)
    piece = "code location"
    identity = aws["sts"].get_caller_identity()
    missing = bucket_exists(aws, bucket, piece, identity["Account"])
    if missing:
        return [missing]
    caller = _caller(aws, identity)
    if caller.why_not:
        return [
            Finding(
                piece, f"writability of {target} not judged: {caller.why_not}", caller.fix, blocking=False
            )
        ]
    questions = [Request("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")]
    if settings.s3_encryption == "SSE-KMS" and settings.kms_key_arn and settings.region:
        via_s3 = {"kms:ViaService": f"s3.{settings.region}.amazonaws.com"}
        questions.append(Request("kms:GenerateDataKey", settings.kms_key_arn, via_s3))
    denied = _denied(caller, questions)
    if isinstance(denied, str):
        return [
            Finding(
                piece,
                f"writability of {target} not judged: a policy of role {caller.role} uses {denied}",
                "check the role grants s3:PutObject there",
                blocking=False,
            )
        ]
    return [
        Finding(
            piece,
            f"role {caller.role} may not {q.action} on {q.resource} (uploading {target})",
            "grant it deployment/iam/airflow-role-policy.json (the stack's Airflow role has it) "
            "or point PIPELINE_CODE_URI inside the lake",
        )
        for q in denied
    ]


def check_monitoring(settings: Settings, aws: Clients) -> list[Finding]:
    """May the caller publish the run's metrics to its namespace (PIPELINE_CLOUDWATCH_METRICS) and
    the alerts to their topic (PIPELINE_ALERT_SNS_TOPIC_ARN)? Judged from its own policies: neither
    call has a read-only twin, and a test metric or message would land where people watch."""
    asked: list[tuple[str, Request, str]] = []
    if settings.cloudwatch_metrics:
        namespace = settings.cloudwatch_namespace
        asked.append(
            (
                "CloudWatch metrics",
                Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace}),
                f"grant it PutMetricData on namespace {namespace} (deployment/iam/airflow-role-policy.json; "
                "the stack's Airflow role has it for the stack's MetricsNamespace), or set "
                "PIPELINE_CLOUDWATCH_NAMESPACE to that namespace",
            )
        )
    if settings.alerts.sns_topic_arn:
        topic = settings.alerts.sns_topic_arn
        asked.append(
            (
                "alerts topic",
                Request("sns:Publish", topic),
                "grant it sns:Publish on the topic (the stack's Airflow role has it for the stack's topic)",
            )
        )
    if not asked:
        return []
    caller = _caller(aws, aws["sts"].get_caller_identity())
    what = " and ".join(piece for piece, _, _ in asked)
    if caller.why_not:
        return [
            Finding(
                asked[0][0], f"permission for {what} not judged: {caller.why_not}", caller.fix, blocking=False
            )
        ]
    denied = _denied(caller, [q for _, q, _ in asked])
    if isinstance(denied, str):
        return [
            Finding(
                asked[0][0],
                f"permission for {what} not judged: a policy of role {caller.role} uses {denied}",
                "check the role's grants by hand",
                blocking=False,
            )
        ]
    return [
        Finding(piece, f"role {caller.role} may not {q.action} ({_context(q)})", fix)
        for piece, q, fix in asked
        if q in denied
    ]


def _context(q: Request) -> str:
    return ", ".join(f"{k}={v}" for k, v in q.context.items()) if q.context else q.resource
