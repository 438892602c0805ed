"""Preflight's checks of what exists: the security configuration and its certificates, the KMS key,
the roles, the private network, the lake bucket, the zones' Glue databases, the clickstream's
stream."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from deployment.emr_security import network_problems
from deployment.preflight.findings import (
    DEPLOY,
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

MANAGED_TAG = ("for-use-with-amazon-emr-managed-policies", "true")


def check_security_configuration(settings: Settings, aws: Clients) -> list[Finding]:
    name, piece = settings.security_configuration, "EMR security configuration"
    try:
        found = aws["emr"].describe_security_configuration(Name=name)
    except ClientError as exc:
        if error_code(exc) == "InvalidRequestException" or is_missing(exc):
            return [Finding(piece, f"{name!r} does not exist", DEPLOY)]
        return [unreadable(piece, exc)]
    document = json.loads(found["SecurityConfiguration"])
    tls = document.get("EncryptionConfiguration", {}).get("InTransitEncryptionConfiguration", {})
    certs = tls.get("TLSCertificateConfiguration", {}).get("S3Object")
    if not certs:
        return []
    # Listed, not read: only the nodes may read the private key.
    bucket, key = bucket_key(certs)
    piece = "TLS certificates"
    try:
        listed = aws["s3"].list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    except ClientError as exc:
        return [missing_or_unreadable(piece, f"bucket of {certs}", exc)]
    if not any(obj["Key"] == key for obj in listed):
        return [
            Finding(
                piece,
                f"{certs} (named by {name!r}) does not exist",
                "make aws-certs STACK=<stack> REGION=<region> (python -m infra.tls_certs) uploads them",
            )
        ]
    return []


def check_kms_key(settings: Settings, aws: Clients) -> list[Finding]:
    if not settings.kms_key_arn:
        return [Finding("KMS key", "PIPELINE_EMR_KMS_KEY_ARN is not set", DEPLOY)]
    try:
        key = aws["kms"].describe_key(KeyId=settings.kms_key_arn)["KeyMetadata"]
    except ClientError as exc:
        return [missing_or_unreadable("KMS key", settings.kms_key_arn, exc)]
    if key.get("KeyState") != "Enabled":
        return [Finding("KMS key", f"{settings.kms_key_arn} is {key.get('KeyState')}", "enable the key")]
    return []


def check_roles(settings: Settings, aws: Clients) -> list[Finding]:
    findings = []
    role = role_name(settings.service_role)
    try:
        aws["iam"].get_role(RoleName=role)
    except ClientError as exc:
        findings.append(missing_or_unreadable("EMR service role", repr(role), exc))
    profile = role_name(settings.instance_profile)
    try:
        roles = aws["iam"].get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
    except ClientError as exc:
        findings.append(missing_or_unreadable("EMR instance profile", repr(profile), exc))
    else:
        if not roles:
            findings.append(
                Finding("EMR instance profile", f"{profile!r} has no role", "add the nodes' role to it")
            )
    return findings


def _tagged(tags: Sequence[Mapping[str, str]] | None) -> bool:
    return any((t.get("Key"), t.get("Value")) == MANAGED_TAG for t in tags or [])


def read_subnet(subnet_id: str, ec2: Any) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The subnet (None when it cannot be read) and what is wrong with it: it does not exist, cannot
    be read, or is not private (EMR's and EMR Serverless's nodes run in it)."""
    try:
        subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    except ClientError as exc:
        if is_missing(exc) or "NotFound" in error_code(exc):
            return None, [Finding("subnet", f"{subnet_id} does not exist", DEPLOY)]
        return None, [unreadable("subnet", exc)]
    return subnet, [
        Finding("subnet", problem, "use a private subnet (the stack's CreateNetwork=true makes one)")
        for problem in network_problems(ec2, subnet_id)
    ]


def check_network(settings: Settings, aws: Clients) -> list[Finding]:
    subnet_id, ec2 = settings.subnet_id, aws["ec2"]
    subnet, findings = read_subnet(subnet_id, ec2)
    if subnet is None:
        return findings
    tag = f"tag it {MANAGED_TAG[0]}={MANAGED_TAG[1]} (AmazonEMRServicePolicy_v2 needs it)"
    if not _tagged(subnet.get("Tags")):
        findings.append(
            Finding("subnet", f"{subnet_id} is not tagged {MANAGED_TAG[0]}={MANAGED_TAG[1]}", tag)
        )
    groups = [
        (var, sg)
        for var, sg in (
            ("PIPELINE_EMR_MASTER_SG", settings.master_security_group),
            ("PIPELINE_EMR_CORE_SG", settings.core_security_group),
            ("PIPELINE_EMR_SERVICE_SG", settings.service_security_group),
        )
        if sg
    ]
    for var, sg in groups:
        try:
            group = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
        except ClientError as exc:
            if is_missing(exc) or "NotFound" in error_code(exc):
                findings.append(Finding("security group", f"{var}={sg} does not exist", DEPLOY))
                continue
            findings.append(unreadable("security group", exc))
            continue
        if group.get("VpcId") != subnet.get("VpcId"):
            findings.append(
                Finding("security group", f"{var}={sg} is not in the subnet's VPC", "use groups of that VPC")
            )
        if not _tagged(group.get("Tags")):
            findings.append(Finding("security group", f"{var}={sg} is not tagged {MANAGED_TAG[0]}=true", tag))
    return findings


def check_bucket(settings: Settings, aws: Clients) -> list[Finding]:
    bucket, _ = bucket_key(settings.lake)
    missing = bucket_exists(aws, bucket, "lake bucket", None)
    if missing:
        return [missing]
    try:
        rules = aws["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            rules = []
        else:
            return [unreadable("lake bucket", exc)]
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if not defaults:
        return [Finding("lake bucket", f"{bucket} has no default encryption", DEPLOY)]
    if settings.s3_encryption == "SSE-KMS":
        key = settings.kms_key_arn
        if not any(
            d.get("SSEAlgorithm") == "aws:kms" and key and _key_matches(d.get("KMSMasterKeyID", ""), key)
            for d in defaults
        ):
            found = ", ".join(
                f"{d.get('SSEAlgorithm')} {d.get('KMSMasterKeyID', '')}".strip() for d in defaults
            )
            return [
                Finding(
                    "lake bucket",
                    f"{bucket} encrypts with {found} by default, not SSE-KMS with PIPELINE_EMR_KMS_KEY_ARN",
                    "set its default encryption to that key (the stack does)",
                )
            ]
    return []


def _key_matches(configured: str, key_arn: str) -> bool:
    """A bucket names its key by ARN or id; the setting is an ARN."""
    return configured == key_arn or key_arn.endswith(f"/{configured}")


def check_glue_databases(settings: Settings, aws: Clients) -> list[Finding]:
    findings = []
    for zone, database in settings.namespaces.items():
        try:
            aws["glue"].get_database(Name=database)
        except ClientError as exc:
            findings.append(missing_or_unreadable("Glue database", f"{database} ({zone} zone)", exc))
    return findings


def check_clickstream_stream(settings: Settings, aws: Clients) -> list[Finding]:
    """The Kinesis stream the clickstream is landed from (PIPELINE_CLICKSTREAM_KINESIS_STREAM):
    it exists and can be read (ACTIVE, or UPDATING while it reshards)."""
    name = settings.clickstream_stream
    if not name:
        return []
    piece = "clickstream stream"
    try:
        summary = aws["kinesis"].describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException" or is_missing(exc):
            return [
                Finding(
                    piece,
                    f"Kinesis stream {name!r} does not exist in {settings.region or 'the region'}",
                    "deploy the stack with ClickstreamFromKinesis=true (its output names the stream) "
                    "or set PIPELINE_CLICKSTREAM_KINESIS_STREAM to the stream the events are put to",
                )
            ]
        return [unreadable(piece, exc)]
    status = summary["StreamStatus"]
    if status not in ("ACTIVE", "UPDATING"):
        return [
            Finding(
                piece,
                f"Kinesis stream {name!r} is {status}",
                "wait until it is ACTIVE (being created) or point the setting at a live stream",
            )
        ]
    return []
