"""The checks of the AWS targets' settings (`emr`, `emr-serverless`), for `include.settings`:
each wrong or missing `PIPELINE_*` value appends one line naming the variable to `problems`.
Pure: no AWS call.
"""

from __future__ import annotations

import re

from include.emr_release import DEFAULT_RELEASE, ReleaseError, check_release

_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/=+-]*)?$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SG = re.compile(r"^sg-[0-9a-f]{8,17}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_GLUE_DB = re.compile(r"^[a-z0-9_]{1,200}$")  # + "_quarantine" stays within Glue's 255
_ROLE = re.compile(r"^[A-Za-z0-9+=,.@_/:-]{1,512}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_SECURITY_CONFIG = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z]{2}(-[a-z]+)+-\d:\d{12}:key/[A-Za-z0-9-]{1,128}$")
_CERTS_ZIP_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9._/=+-]+\.zip$")
S3_ENCRYPTION_MODES = ("SSE-KMS", "SSE-S3")
IDLE_TIMEOUT_SECONDS = 3600  # Settings' defaults, checked when a value is absent
POLL_SECONDS = 30


def check_aws(values: dict[str, object], problems: list[str], target: str = "emr") -> None:
    """The settings both AWS targets share (lake, code, logs, subnet, release, region, KMS)."""
    lake = str(values.get("lake", "")).rstrip("/")
    if not lake or "lake" not in values:
        problems.append(f"PIPELINE_LAKE is required when PIPELINE_TARGET={target} (e.g. s3://my-bucket/lake)")
    elif not _S3_URI.match(lake):
        problems.append(f"PIPELINE_LAKE={lake!r} must be an s3://bucket/prefix URI for the {target} target")
    values["lake"] = lake
    # Code and cluster logs default to folders next to the lake's zones (ignored by readers: '_').
    values["code_uri"] = str(values.get("code_uri") or f"{lake}/_code").rstrip("/")
    values["log_uri"] = str(values.get("log_uri") or f"{lake}/_emr_logs").rstrip("/") + "/"
    for var, attr in (("PIPELINE_CODE_URI", "code_uri"), ("PIPELINE_EMR_LOG_URI", "log_uri")):
        if lake and not _S3_URI.match(str(values[attr]).rstrip("/")):
            problems.append(f"{var}={values[attr]!r} must be an s3:// URI")
    subnet = values.get("subnet_id")
    if not subnet:
        problems.append(
            f"PIPELINE_EMR_SUBNET_ID is required when PIPELINE_TARGET={target} "
            "(e.g. subnet-0123456789abcdef0)"
        )
    elif not _SUBNET.match(str(subnet)):
        problems.append(f"PIPELINE_EMR_SUBNET_ID={subnet!r} is not a subnet id (subnet-...)")
    for var, attr in (
        ("PIPELINE_EMR_MASTER_SG", "master_security_group"),
        ("PIPELINE_EMR_CORE_SG", "core_security_group"),
        ("PIPELINE_EMR_SERVICE_SG", "service_security_group"),
    ):
        if values.get(attr) and not _SG.match(str(values[attr])):
            problems.append(f"{var}={values[attr]!r} is not a security group id (sg-...)")
    if bool(values.get("master_security_group")) != bool(values.get("core_security_group")):
        problems.append("PIPELINE_EMR_MASTER_SG and PIPELINE_EMR_CORE_SG go together")
    release = values.get("release_label", DEFAULT_RELEASE)
    try:
        check_release(str(release))
    except ReleaseError as error:
        problems.append(f"PIPELINE_EMR_RELEASE: {error}")
    for var, attr in (
        ("PIPELINE_EMR_SERVICE_ROLE", "service_role"),
        ("PIPELINE_EMR_INSTANCE_PROFILE", "instance_profile"),
    ):
        if attr in values and not _ROLE.match(str(values[attr])):
            problems.append(f"{var}={values[attr]!r} is not a role name or ARN")
    idle = values.get("idle_timeout_seconds", IDLE_TIMEOUT_SECONDS)
    if isinstance(idle, int) and not 60 <= idle <= 7 * 24 * 3600:
        problems.append("PIPELINE_EMR_IDLE_TIMEOUT_SECONDS must be between 60 and 604800 (EMR's limits)")
    poll = values.get("poll_seconds", POLL_SECONDS)
    if isinstance(poll, int) and poll < 1:
        problems.append("PIPELINE_EMR_POLL_SECONDS must be >= 1")
    if "region" in values and not _REGION.match(str(values["region"])):
        problems.append(f"PIPELINE_AWS_REGION={values['region']!r} is not a region name (e.g. eu-west-1)")
    if "aws_conn_id" in values and not _CONN_ID.match(str(values["aws_conn_id"])):
        problems.append(f"PIPELINE_AWS_CONN_ID={values['aws_conn_id']!r} is not a connection id")
    if "glue_database_prefix" in values and not _GLUE_DB.match(str(values["glue_database_prefix"])):
        problems.append(
            "PIPELINE_GLUE_DATABASE_PREFIX: lower-case letters, digits and _ only (Athena's rule), "
            "at most 200 characters"
        )
    _check_security(values, problems)


def _check_security(values: dict[str, object], problems: list[str]) -> None:
    name = values.get("security_configuration")
    if name is not None and not _SECURITY_CONFIG.match(str(name)):
        problems.append(
            f"PIPELINE_EMR_SECURITY_CONFIGURATION={name!r}: letters, digits and . _ - only (at most 128)"
        )
    key = values.get("kms_key_arn")
    if key and not _KMS_KEY_ARN.match(str(key)):
        problems.append(
            f"PIPELINE_EMR_KMS_KEY_ARN={key!r} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        )
    mode = values.get("s3_encryption")
    if mode is not None and mode not in S3_ENCRYPTION_MODES:
        problems.append(
            f"PIPELINE_EMR_S3_ENCRYPTION={mode!r}: choose one of {', '.join(S3_ENCRYPTION_MODES)}"
        )
    certs = values.get("tls_certificates_uri")
    if certs and not _CERTS_ZIP_URI.match(str(certs)):
        problems.append(f"PIPELINE_EMR_TLS_CERTIFICATES_URI={certs!r} must be an s3://bucket/key.zip URI")


def check_serverless(values: dict[str, object], problems: list[str]) -> None:
    """EMR Serverless: the job runtime role (an ARN: StartJobRun takes nothing else) and the
    application's security group in the subnet (an application in a VPC names both)."""
    role = values.get("serverless_execution_role")
    if not role:
        problems.append(
            "PIPELINE_SERVERLESS_EXECUTION_ROLE is required when PIPELINE_TARGET=emr-serverless "
            "(the job runtime role's ARN, arn:aws:iam::ACCOUNT:role/NAME)"
        )
    elif not _ROLE_ARN.match(str(role)):
        problems.append(
            f"PIPELINE_SERVERLESS_EXECUTION_ROLE={role!r} is not an IAM role ARN "
            "(arn:aws:iam::ACCOUNT:role/NAME)"
        )
    group = values.get("serverless_security_group")
    if not group:
        problems.append(
            "PIPELINE_SERVERLESS_SECURITY_GROUP is required when PIPELINE_TARGET=emr-serverless "
            "(the application's security group in PIPELINE_EMR_SUBNET_ID, sg-...)"
        )
    elif not _SG.match(str(group)):
        problems.append(f"PIPELINE_SERVERLESS_SECURITY_GROUP={group!r} is not a security group id (sg-...)")
