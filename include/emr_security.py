"""The EMR security configuration every cluster of this project names: encryption and IMDSv2.

Defined here from the settings and created once per account and region (idempotently) with
`python -m scripts.create_emr_security_configuration`; `job_flow_overrides` only puts its name
in RunJobFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from include.settings import Settings, SettingsError


class SecurityConfigurationConflict(RuntimeError):
    """A configuration with this name exists with other content (EMR's are immutable)."""


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


def ensure_security_configuration(emr: Any, name: str, document: Mapping[str, Any]) -> str:
    """Create `name` with `document` unless it exists: 'created' or 'unchanged'.

    EMR security configurations cannot be changed in place, so an existing one with different
    content is a SecurityConfigurationConflict: pick a new name (and point the DAGs at it).
    """
    try:
        found = emr.describe_security_configuration(Name=name)
    except emr.exceptions.InvalidRequestException:
        found = None
    if found is None:
        emr.create_security_configuration(Name=name, SecurityConfiguration=json.dumps(document))
        return "created"
    if json.loads(found["SecurityConfiguration"]) != dict(document):
        raise SecurityConfigurationConflict(
            f"EMR security configuration {name!r} exists with different content; configurations are "
            "immutable: set PIPELINE_EMR_SECURITY_CONFIGURATION to a new name and run this again"
        )
    return "unchanged"


def network_problems(ec2: Any, subnet_id: str) -> list[str]:
    """Why `subnet_id` is not a private subnet ([] when it is): public IPs on launch, or a route to
    an internet gateway (in its own route table, or the VPC's main one when it has none)."""
    subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    problems = []
    if subnet.get("MapPublicIpOnLaunch"):
        problems.append(f"{subnet_id} gives instances public IPs (MapPublicIpOnLaunch)")
    own = [{"Name": "association.subnet-id", "Values": [subnet_id]}]
    tables = ec2.describe_route_tables(Filters=own)["RouteTables"]
    if not tables:
        main = [
            {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
            {"Name": "association.main", "Values": ["true"]},
        ]
        tables = ec2.describe_route_tables(Filters=main)["RouteTables"]
    for table in tables:
        for route in table.get("Routes", []):
            gateway = route.get("GatewayId", "")
            if gateway.startswith("igw-"):
                where = route.get("DestinationCidrBlock") or route.get("DestinationIpv6CidrBlock")
                problems.append(f"{subnet_id} routes {where} to internet gateway {gateway} (a public subnet)")
    return problems
