"""The EMR security configuration every cluster of this project names: encryption and IMDSv2.

Defined here from the settings and created once per account and region (idempotently) with
`python -m include.emr_security`; `job_flow_overrides` only puts its name in RunJobFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from include.settings import Settings, SettingsError, load_settings


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


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.emr_security",
        description="Create the EMR security configuration named by PIPELINE_EMR_SECURITY_CONFIGURATION "
        "(idempotent), from the PIPELINE_* settings of the emr target.",
    )
    parser.add_argument("--print", action="store_true", help="print the JSON document and exit (no AWS call)")
    parser.add_argument(
        "--check-network",
        action="store_true",
        help="also check that PIPELINE_EMR_SUBNET_ID is private (no public IPs, no internet gateway route)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(environ)
        if not settings.is_emr:
            raise SettingsError(
                "set PIPELINE_TARGET=emr (and its settings) to define the EMR security configuration"
            )
        document = security_configuration(settings)
    except SettingsError as exc:
        print(f"emr_security: {exc}", file=sys.stderr)
        return 2
    if args.print:
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    import boto3

    # Credentials come from the environment's standard chain (profile, SSO, instance role): none here.
    emr = boto3.client("emr", region_name=settings.region)
    try:
        outcome = ensure_security_configuration(emr, settings.security_configuration, document)
    except SecurityConfigurationConflict as exc:
        print(f"emr_security: {exc}", file=sys.stderr)
        return 1
    print(f"EMR security configuration {settings.security_configuration!r}: {outcome}")
    if args.check_network:
        problems = network_problems(boto3.client("ec2", region_name=settings.region), settings.subnet_id)
        for problem in problems:
            print(f"emr_security: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"subnet {settings.subnet_id}: private (no public IPs, no internet gateway route)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
