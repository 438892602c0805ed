"""The deployment's documents for one set of settings: each role's IAM documents with their
placeholders filled (deployment/iam) and the EMR security configuration (encryption and IMDSv2).

The stack (infra/template.py) builds them with CloudFormation values in the settings' place;
`python -m scripts.render_iam_policies` and `python -m scripts.create_emr_security_configuration`
with a deployment's own settings.
"""

from __future__ import annotations

import re
from typing import Any

from deployment import iam
from deployment.iam import alerts_topic_name, clickstream_stream_name, role_name
from include.settings import Settings, SettingsError
from plugins.emr_naming import PROJECT


def _bucket_and_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.rstrip("/")


def values_from_settings(settings: Settings, account: str) -> dict[str, str]:
    """Placeholder values for a deployment; the code and log locations must lie in the lake."""
    if not re.fullmatch(r"\d{12}", account):
        raise SettingsError(f"account {account!r} is not a 12-digit AWS account id")
    if not settings.on_aws:
        raise SettingsError("the IAM documents are for PIPELINE_TARGET=emr or emr-serverless")
    for var, uri in (("PIPELINE_CODE_URI", settings.code_uri), ("PIPELINE_EMR_LOG_URI", settings.log_uri)):
        if not uri.rstrip("/").startswith(settings.lake + "/"):
            raise SettingsError(f"{var}={uri!r} is outside the lake: the policies only grant the lake prefix")
    lake_bucket, lake_prefix = _bucket_and_key(settings.lake)
    if not lake_prefix:
        raise SettingsError(
            "PIPELINE_LAKE needs a prefix (s3://bucket/prefix): the policies are scoped to it"
        )
    certs_bucket, certs_key = _bucket_and_key(settings.tls_certificates_uri)
    return {
        "Account": account,
        "Region": settings.region or "",
        "Project": PROJECT,
        "LakeBucket": lake_bucket,
        "LakePrefix": lake_prefix,
        "GlueDatabasePrefix": settings.glue_database_prefix,
        # the role preflight reads its own policies of: the one infra/ creates for Airflow
        "AirflowRoleName": role_name("airflow", settings.region or ""),
        "EmrServiceRoleName": settings.service_role.rsplit("/", 1)[-1],
        "EmrInstanceRoleName": settings.instance_profile.rsplit("/", 1)[-1],
        # the job runtime role: the one configured, else the stack's (its name is fixed per region)
        "ServerlessExecutionRoleName": settings.serverless_execution_role.rsplit("/", 1)[-1]
        or role_name("serverless-execution", settings.region or ""),
        "KmsKeyArn": settings.kms_key_arn,
        "TlsCertificatesBucket": certs_bucket,
        "TlsCertificatesKey": certs_key,
        "MetricsNamespace": settings.cloudwatch_namespace,
        # the alerts' topic: the one configured, else the stack's (its name is fixed per region)
        "AlertsTopicArn": settings.alerts.sns_topic_arn
        or f"arn:aws:sns:{settings.region or ''}:{account}:{alerts_topic_name()}",
        # the clickstream's stream: the one configured, else the stack's
        "ClickstreamStreamName": settings.clickstream_stream or clickstream_stream_name(),
    }


def rendered_roles(settings: Settings, account: str) -> dict[str, dict[str, Any]]:
    """The documents of every role the settings' target runs with (iam.TARGET_ROLES): {role:
    {policy, trust, managed}}."""
    values = values_from_settings(settings, account)
    needed = ("Region", "KmsKeyArn", "TlsCertificatesBucket") if settings.is_emr else ("Region", "KmsKeyArn")
    empty = [k for k in needed if not values[k]]
    if empty:
        raise SettingsError(
            "set PIPELINE_AWS_REGION, PIPELINE_EMR_KMS_KEY_ARN"
            + (" and PIPELINE_EMR_TLS_CERTIFICATES_URI" if settings.is_emr else "")
            + f" (missing: {empty})"
        )
    return {
        role: {
            "policy": iam.render(iam.document(spec["policy"]), values),
            "trust": iam.render(iam.document(spec["trust"]), values) if spec["trust"] else None,
            "managed": list(spec["managed"]),
        }
        for role, spec in iam.ROLES.items()
        if role in iam.TARGET_ROLES[settings.target]
    }


def security_configuration(settings: Settings) -> dict[str, Any]:
    """The security configuration document for `settings` (the JSON EMR expects, as a dict).

    - S3 (EMRFS) at rest: SSE-KMS with the project key, or SSE-S3;
    - local disks (HDFS, shuffle, spill) and EBS root/data volumes: encrypted with the KMS key;
    - in transit: TLS between the nodes (Spark RPC, shuffle, HDFS, web UIs) with the PEM
      certificates zipped at PIPELINE_EMR_TLS_CERTIFICATES_URI;
    - instance metadata: IMDSv2 only, hop limit 1 (a container on a node cannot reach it).
    """
    missing = [
        var
        for var, value in (
            ("PIPELINE_EMR_KMS_KEY_ARN", settings.kms_key_arn),
            ("PIPELINE_EMR_TLS_CERTIFICATES_URI", settings.tls_certificates_uri),
        )
        if not value
    ]
    if missing:
        raise SettingsError(f"the EMR security configuration needs {' and '.join(missing)}")
    s3: dict[str, Any] = {"EncryptionMode": settings.s3_encryption}
    if settings.s3_encryption == "SSE-KMS":
        s3["AwsKmsKey"] = settings.kms_key_arn
    return {
        "EncryptionConfiguration": {
            "EnableAtRestEncryption": True,
            "EnableInTransitEncryption": True,
            "AtRestEncryptionConfiguration": {
                "S3EncryptionConfiguration": s3,
                "LocalDiskEncryptionConfiguration": {
                    "EncryptionKeyProviderType": "AwsKms",
                    "AwsKmsKey": settings.kms_key_arn,
                    "EnableEbsEncryption": True,
                },
            },
            "InTransitEncryptionConfiguration": {
                "TLSCertificateConfiguration": {
                    "CertificateProviderType": "PEM",
                    "S3Object": settings.tls_certificates_uri,
                }
            },
        },
        "InstanceMetadataServiceConfiguration": {
            "MinimumInstanceMetadataServiceVersion": 2,
            "HttpPutResponseHopLimit": 1,
        },
    }
