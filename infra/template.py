"""The CloudFormation stack of the emr target, generated from the project's own definitions.

One stack holds everything a run needs: the lake bucket, its KMS key, the EMR security
configuration, the three roles (EMR service, the nodes' instance profile, Airflow's), the zones'
Glue databases, optionally a private subnet with S3/Glue/KMS endpoints and the EMR-managed
security groups, optionally the clickstream's Kinesis data stream, and the monitoring: a
CloudWatch dashboard of the metrics the run report publishes, alarms on them and the SNS topic
they (and Airflow's alerts) go to.
Its outputs are the `PIPELINE_*` settings (and the Airflow connection) to paste
into `.env`.

Nothing here is written twice: the policies are `deployment/iam/*.json` and the security
configuration is `infra.documents.security_configuration`, their `${Placeholders}` turned
into `Fn::Sub` (the same syntax); Glue database and role names come from the same functions the
DAGs and `python -m scripts.render_iam_policies` use. `python -m infra.template` writes the
template file; `--check` fails when the committed file is not what the sources generate (make test runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deployment import iam
from include import pipeline as P
from include.checks import AuditSettings
from include.run_report import metrics as M
from include.settings import CLOUDWATCH_NAMESPACE, ENV_VARS, Settings
from infra.documents import security_configuration
from plugins.emr_naming import PROJECT
from spark_jobs.catalog import namespaces

TEMPLATE_FILE = Path(__file__).with_name("customer-analytics.template.json")
# Outside the lake prefix: the nodes read the whole lake, and nobody else needs the private key.
TLS_CERTIFICATES_KEY = "_security/emr-tls-certificates.zip"
# AmazonEMRServicePolicy_v2 lets EMR create network interfaces and instances only in subnets and
# security groups carrying this tag.
EMR_MANAGED_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
PROJECT_TAG = {"Key": "project", "Value": PROJECT}
# Interface endpoints the nodes need in a subnet without a NAT: the Glue Data Catalog (Iceberg's
# catalog) and KMS (local disk and SSE-KMS keys). S3 gets a gateway endpoint (free).
INTERFACE_ENDPOINTS = ("glue", "kms")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")
_OUTPUT_KEY = re.compile(r"^[A-Za-z0-9]{1,255}$")


# ---- deployment/iam's placeholders as CloudFormation values --------------------------------------
def _text_placeholders() -> dict[str, str]:
    """Placeholders that stand for a name made of other placeholders: expanded as text first."""
    curated = namespaces("s3://bucket/prefix", "${GlueDatabasePrefix}")["curated"]
    return {
        "GlueDatabase": curated,
        "AirflowRoleName": iam.ROLE_NAMES["airflow"],
        "EmrServiceRoleName": iam.ROLE_NAMES["emr-service"],
        "EmrInstanceRoleName": iam.ROLE_NAMES["emr-instance-profile"],
        "ServerlessExecutionRoleName": iam.ROLE_NAMES["serverless-execution"],
        "ClickstreamStreamName": iam.CLICKSTREAM_STREAM_NAME,
    }


def _values() -> dict[str, Any]:
    """The remaining placeholders: a literal, or what Fn::Sub looks up for them."""
    return {
        "Account": {"Ref": "AWS::AccountId"},
        "Region": {"Ref": "AWS::Region"},
        "Project": PROJECT,
        "LakeBucket": {"Ref": "LakeBucket"},
        "LakePrefix": {"Ref": "LakePrefix"},
        "GlueDatabasePrefix": {"Ref": "GlueDatabasePrefix"},
        "KmsKeyArn": {"Fn::GetAtt": ["LakeKey", "Arn"]},
        "TlsCertificatesBucket": {"Ref": "LakeBucket"},
        "TlsCertificatesKey": TLS_CERTIFICATES_KEY,
        "MetricsNamespace": {"Ref": "MetricsNamespace"},
        "AlertsTopicArn": {"Ref": "AlertsTopic"},
    }


def sub(text: str) -> Any:
    """`text` with deployment/iam's placeholders as CloudFormation: a plain string when every one is
    a literal, else `Fn::Sub` with a variable map of exactly the placeholders it uses."""
    for name, expansion in _text_placeholders().items():
        text = text.replace("${" + name + "}", expansion)
    values = _values()
    unknown = set(_PLACEHOLDER.findall(text)) - set(values)
    if unknown:
        raise KeyError(f"no CloudFormation value for {sorted(unknown)} in {text!r}")
    variables: dict[str, Any] = {}
    for name in dict.fromkeys(_PLACEHOLDER.findall(text)):
        if isinstance(values[name], str):
            text = text.replace("${" + name + "}", values[name])
        else:
            variables[name] = values[name]
    # deployment/iam writes ARNs of the commercial partition; the stack deploys to any
    partitioned = text.replace("arn:aws:", "arn:${AWS::Partition}:")
    if variables:
        return {"Fn::Sub": [partitioned, variables]}
    return {"Fn::Sub": partitioned} if partitioned != text else text


def cfn(doc: Any) -> Any:
    """A JSON document of deployment/ with every string that holds a placeholder made CloudFormation."""
    if isinstance(doc, dict):
        return {k: cfn(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [cfn(v) for v in doc]
    if isinstance(doc, str) and ("${" in doc or doc.startswith("arn:aws:")):
        return sub(doc)
    return doc


def as_json(doc: Any) -> dict[str, Any]:
    """`doc` passed on as the JSON text the service stores and returns (what EMR and IAM get from
    their own APIs), still written as a structure here: Fn::ToJsonString (AWS::LanguageExtensions)."""
    return {"Fn::ToJsonString": doc}


def output_key(var: str) -> str:
    """The stack output holding setting `var`: PIPELINE_EMR_SUBNET_ID -> PipelineEmrSubnetId."""
    return "".join(part.capitalize() for part in var.lower().split("_"))


# The outputs that are not PIPELINE_* settings, by the variable they are pasted as.
CONNECTION_VAR = "AIRFLOW_CONN_AWS_DEFAULT"


# ---- the template --------------------------------------------------------------------------
def _parameters() -> dict[str, Any]:
    return {
        "LakePrefix": {
            "Type": "String",
            "Default": "lake",
            "AllowedPattern": "^[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*$",
            "Description": "Prefix of the lake in the bucket (PIPELINE_LAKE is s3://<bucket>/<prefix>)",
        },
        "GlueDatabasePrefix": {
            "Type": "String",
            "Default": "customer_analytics",
            "AllowedPattern": "^[a-z0-9_]{1,200}$",
            "Description": "One Glue database per table zone: <prefix>_processed, _quarantine, _curated",
        },
        "AirflowPrincipalArn": {
            "Type": "String",
            "Default": "",
            "Description": "Who may assume the Airflow role (e.g. the workers' own role); empty: principals "
            "of this account whose own policies allow it",
        },
        "CreateNetwork": {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "true: a VPC with a private subnet, S3/Glue/KMS endpoints and EMR-managed "
            "security groups; false: clusters run in ExistingSubnetId",
        },
        "VpcCidr": {"Type": "String", "Default": "10.80.0.0/16", "Description": "CIDR of the new VPC"},
        "SubnetCidr": {
            "Type": "String",
            "Default": "10.80.0.0/20",
            "Description": "CIDR of the private subnet",
        },
        "ExistingSubnetId": {
            "Type": "String",
            "Default": "",
            "Description": "With CreateNetwork=false: a private subnet tagged "
            "for-use-with-amazon-emr-managed-policies=true",
        },
        "MetricsNamespace": {
            "Type": "String",
            "Default": CLOUDWATCH_NAMESPACE,
            "AllowedPattern": "^(?!AWS/)[A-Za-z0-9._/#-]{1,255}$",
            "Description": "The CloudWatch namespace the runs publish to (PIPELINE_CLOUDWATCH_NAMESPACE)",
        },
        "QuarantineShareAlarmThreshold": {
            "Type": "Number",
            "Default": str(AuditSettings().quarantine_warn),
            "MinValue": 0,
            "MaxValue": 1,
            "Description": "Alarm when a dataset's quarantined share of a nightly run is above this: "
            "the audit's warning band (PIPELINE_AUDIT_QUARANTINE_WARN)",
        },
        "ClickstreamFromKinesis": {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["true", "false"],
            "Description": "true: a Kinesis data stream the clickstream's producers put events to; the "
            "nightly lands it (PIPELINE_CLICKSTREAM_KINESIS_STREAM); false: upstream delivers files",
        },
        "ServerlessTarget": {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["true", "false"],
            "Description": "true: the emr-serverless target's job runtime role (and, with CreateNetwork, "
            "its application's security group); the outputs then say PIPELINE_TARGET=emr-serverless",
        },
        "RunCostBudget": {
            "Type": "Number",
            "Default": str(RUN_COST_BUDGET),
            "MinValue": 0,
            "Description": "Alarm when a nightly run's estimated cluster cost (USD) is above this",
        },
    }


def _conditions() -> dict[str, Any]:
    return {
        "CreateNetwork": {"Fn::Equals": [{"Ref": "CreateNetwork"}, "true"]},
        "HasAirflowPrincipal": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AirflowPrincipalArn"}, ""]}]},
        "ClickstreamFromKinesis": {"Fn::Equals": [{"Ref": "ClickstreamFromKinesis"}, "true"]},
        "ServerlessTarget": {"Fn::Equals": [{"Ref": "ServerlessTarget"}, "true"]},
        "ServerlessNetwork": {"Fn::And": [{"Condition": "ServerlessTarget"}, {"Condition": "CreateNetwork"}]},
    }


def _retained(resource: dict[str, Any]) -> dict[str, Any]:
    """Data and the key that encrypts it outlive the stack: `make aws-destroy` keeps both."""
    return {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", **resource}


def _storage() -> dict[str, Any]:
    lake_objects = sub("arn:aws:s3:::${LakeBucket}/*")
    return {
        "LakeKey": _retained(
            {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "Description": f"{PROJECT}: the lake (SSE-KMS) and the EMR nodes' disks",
                    "EnableKeyRotation": True,
                    # IAM policies of this account decide who uses the key (deployment/iam grants it).
                    "KeyPolicy": as_json(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "IamPoliciesOfThisAccountDecide",
                                    "Effect": "Allow",
                                    "Principal": {"AWS": sub("arn:aws:iam::${Account}:root")},
                                    "Action": "kms:*",
                                    "Resource": "*",
                                }
                            ],
                        }
                    ),
                    # tagged `project` by the stack's own tags (make aws-deploy sets them)
                },
            }
        ),
        "LakeBucket": _retained(
            {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {
                                "ServerSideEncryptionByDefault": {
                                    "SSEAlgorithm": "aws:kms",
                                    "KMSMasterKeyID": {"Fn::GetAtt": ["LakeKey", "Arn"]},
                                },
                                "BucketKeyEnabled": True,  # one KMS call per object batch, not per object
                            }
                        ]
                    },
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                    # Versioning keeps overwritten and deleted objects: they go after 30 days.
                    "LifecycleConfiguration": {
                        "Rules": [
                            {
                                "Id": "ExpireOldVersionsAndAbandonedUploads",
                                "Status": "Enabled",
                                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                            }
                        ]
                    },
                    "Tags": [PROJECT_TAG],
                },
            }
        ),
        "LakeBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "LakeBucket"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [sub("arn:aws:s3:::${LakeBucket}"), lake_objects],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def _emr_security() -> dict[str, Any]:
    # The document infra/documents.py defines, with the stack's key and certificates.
    placeholders = Settings(
        target="emr",
        kms_key_arn="${KmsKeyArn}",
        s3_encryption="SSE-KMS",
        tls_certificates_uri="s3://${TlsCertificatesBucket}/${TlsCertificatesKey}",
    )
    return {
        # No Name: CloudFormation names it, so a changed document (EMR's are immutable) is a
        # replacement under a new name, which the output then carries.
        "SecurityConfiguration": {
            "Type": "AWS::EMR::SecurityConfiguration",
            "Properties": {"SecurityConfiguration": as_json(cfn(security_configuration(placeholders)))},
        }
    }


def _roles() -> dict[str, Any]:
    resources: dict[str, Any] = {}
    logical = {
        "airflow": "AirflowRole",
        "emr-service": "EmrServiceRole",
        "emr-instance-profile": "EmrInstanceRole",
        "serverless-execution": "ServerlessExecutionRole",
    }
    for role, spec in iam.ROLES.items():
        if spec["trust"]:
            trust = cfn(iam.document(spec["trust"]))
        else:  # Airflow's role: assumed by the principal the deployer names, or this account's
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TheAirflowWorkers",
                        "Effect": "Allow",
                        "Principal": {
                            "AWS": {
                                "Fn::If": [
                                    "HasAirflowPrincipal",
                                    {"Ref": "AirflowPrincipalArn"},
                                    sub("arn:aws:iam::${Account}:root"),
                                ]
                            }
                        },
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        properties: dict[str, Any] = {
            "RoleName": sub(iam.ROLE_NAMES[role]),
            "Description": f"{PROJECT}: {role} (least privilege, deployment/iam/{spec['policy']})",
            "AssumeRolePolicyDocument": trust,
            "Policies": [
                {"PolicyName": PROJECT, "PolicyDocument": as_json(cfn(iam.document(spec["policy"])))}
            ],
            "Tags": [PROJECT_TAG],
        }
        if spec["managed"]:
            properties["ManagedPolicyArns"] = [sub(arn) for arn in spec["managed"]]
        resources[logical[role]] = {"Type": "AWS::IAM::Role", "Properties": properties}
        if role == "serverless-execution":
            resources[logical[role]]["Condition"] = "ServerlessTarget"
    resources["EmrInstanceProfile"] = {
        "Type": "AWS::IAM::InstanceProfile",
        "Properties": {
            # named like its role: deployment/iam (PassRole) and EMR's defaults assume so
            "InstanceProfileName": sub(iam.ROLE_NAMES["emr-instance-profile"]),
            "Roles": [{"Ref": "EmrInstanceRole"}],
        },
    }
    return resources


def _glue() -> dict[str, Any]:
    resources = {}
    for zone, database in namespaces("s3://bucket/prefix", "${GlueDatabasePrefix}").items():
        resources[f"Glue{zone.capitalize()}Database"] = {
            "Type": "AWS::Glue::Database",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseInput": {
                    "Name": sub(database),
                    "Description": f"{PROJECT}: the lake's {zone} zone (Iceberg tables)",
                },
            },
        }
    return resources


def _network() -> dict[str, Any]:
    def tagged(name: str) -> list[dict[str, str]]:
        return [EMR_MANAGED_TAG, PROJECT_TAG, {"Key": "Name", "Value": f"{PROJECT}-{name}"}]

    vpc = {"Ref": "Vpc"}
    resources: dict[str, Any] = {
        "Vpc": {
            "Type": "AWS::EC2::VPC",
            "Properties": {
                "CidrBlock": {"Ref": "VpcCidr"},
                # EMR needs DNS hostnames; interface endpoints need both for their private DNS
                "EnableDnsSupport": True,
                "EnableDnsHostnames": True,
                "Tags": tagged("vpc"),
            },
        },
        "PrivateSubnet": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {
                "VpcId": vpc,
                "CidrBlock": {"Ref": "SubnetCidr"},
                "AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": False,
                "Tags": tagged("private"),
            },
        },
        # no internet gateway and no NAT: the subnet reaches AWS through the endpoints only
        "PrivateRouteTable": {
            "Type": "AWS::EC2::RouteTable",
            "Properties": {"VpcId": vpc, "Tags": tagged("private")},
        },
        "PrivateSubnetRouteTable": {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {
                "SubnetId": {"Ref": "PrivateSubnet"},
                "RouteTableId": {"Ref": "PrivateRouteTable"},
            },
        },
        "S3Endpoint": {
            "Type": "AWS::EC2::VPCEndpoint",
            "Properties": {
                "VpcId": vpc,
                "VpcEndpointType": "Gateway",
                "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"},
                "RouteTableIds": [{"Ref": "PrivateRouteTable"}],
            },
        },
        "EndpointSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "HTTPS from the VPC to the interface endpoints",
                "VpcId": vpc,
                "SecurityGroupIngress": [
                    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": {"Ref": "VpcCidr"}}
                ],
                "Tags": tagged("endpoints"),
            },
        },
    }
    for service in INTERFACE_ENDPOINTS:
        resources[f"{service.capitalize()}Endpoint"] = {
            "Type": "AWS::EC2::VPCEndpoint",
            "Properties": {
                "VpcId": vpc,
                "VpcEndpointType": "Interface",
                "ServiceName": {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"},
                "SubnetIds": [{"Ref": "PrivateSubnet"}],
                "SecurityGroupIds": [{"Ref": "EndpointSecurityGroup"}],
                "PrivateDnsEnabled": True,
            },
        }
    # EMR-managed security groups: created empty, EMR writes their rules (and keeps them minimal).
    for logical, what in (
        ("EmrMasterSecurityGroup", "primary node"),
        ("EmrCoreSecurityGroup", "core and task nodes"),
        ("EmrServiceAccessSecurityGroup", "EMR service access (private subnet)"),
    ):
        resources[logical] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": f"EMR-managed: {what}",
                "VpcId": vpc,
                "Tags": tagged(logical.removeprefix("Emr").removesuffix("SecurityGroup").lower()),
            },
        }
    return {name: {"Condition": "CreateNetwork", **resource} for name, resource in resources.items()}


# ---- monitoring: the run report's metrics (include/run_report/metrics.py) -------------------
NIGHTLY, BACKFILL = P.NIGHTLY_DAG_ID, P.BACKFILL_DAG_ID
RUN_COST_BUDGET = 5.0  # USD: a dev nightly costs well under $1 (README), prod's a few dollars
HOUR, DAY = 3600, 86400
# A scheduled nightly finishes at most once a day: this many hours without one is a missed night.
MISSING_AFTER_HOURS = 26


def _row(
    name: str, dag_id: str = NIGHTLY, step: str | None = None, output: str | None = None, **options: Any
) -> list:
    """A dashboard metric row: namespace, name, the dimensions' names and values, options."""
    identity = M.metric(name, dag_id, step, output)
    dims = [part for d in identity["Dimensions"] for part in (d["Name"], d["Value"])]
    return [{"Ref": "MetricsNamespace"}, name, *dims, *([options] if options else [])]


def _widget(
    title: str, x: int, y: int, w: int, h: int, rows: list, stat: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": w,
        "height": h,
        "properties": {
            "title": title,
            "region": {"Ref": "AWS::Region"},
            "view": "timeSeries",
            "stacked": False,
            "period": DAY,
            "stat": stat,
            "metrics": rows,
            **extra,
        },
    }


def dashboard_body() -> dict[str, Any]:
    """The pipeline's dashboard (CloudWatch's dashboard body), one point a day, on a 24-column grid."""
    ingest = [s.name for s in P.PIPELINE if s.job == "ingest"]
    steps = [s.name for s in P.PIPELINE] + [P.AUDIT.name, P.PUBLISH.name]
    text = (
        f"# {PROJECT}: the nightly pipeline on EMR\n"
        f"One point per day from the run report of `{NIGHTLY}` (and `{BACKFILL}` where shown). "
        "Alarms: failed, late or missing nightly, audit errors, quarantine share, cost "
        "(README: Running it on AWS)."
    )
    return {
        "widgets": [
            {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": text}},
            _widget(
                "Runs: succeeded and failed",
                0, 2, 8, 6,
                [
                    _row("RunSucceeded", label="nightly succeeded"),
                    _row("RunFailed", label="nightly failed"),
                    _row("RunSucceeded", BACKFILL, label="backfill succeeded"),
                    _row("RunFailed", BACKFILL, label="backfill failed"),
                ],
                "Sum",
            ),
            _widget(
                "Nightly: duration, past its deadline (s)",
                8, 2, 8, 6,
                [
                    _row("RunDurationSeconds", label="run duration"),
                    _row("SecondsPastDeadline", label="past the deadline (negative: early)"),
                ],
                "Maximum",
            ),
            _widget(
                "Estimated cost per run (USD)",
                16, 2, 8, 6,
                [_row("EstimatedCost", label="nightly"), _row("EstimatedCost", BACKFILL, label="backfill")],
                "Maximum",
            ),
            _widget(
                "Step duration, nightly (s)",
                0, 8, 12, 6,
                [_row("StepDurationSeconds", step=step, label=step) for step in steps],
                "Maximum",
            ),
            _widget(
                "Audit: failed checks, nightly",
                12, 8, 12, 6,
                [_row("AuditErrors", label="errors"), _row("AuditWarnings", label="warnings")],
                "Maximum",
            ),
            _widget(
                "Rows written per output, nightly",
                0, 14, 12, 7,
                [_row("RowsOut", step=step, output=out, label=out) for step, out in M.pipeline_outputs()],
                "Sum",
            ),
            _widget(
                "Quarantined share per dataset, nightly",
                12, 14, 12, 7,
                [
                    _row("QuarantineShare", step=step, output=out, label=out)
                    for step, out in M.pipeline_outputs()
                    if step in ingest
                ],
                "Maximum",
                annotations={
                    "horizontal": [
                        {"label": "audit: warn", "value": AuditSettings().quarantine_warn},
                        {"label": "audit: error", "value": AuditSettings().quarantine_error},
                    ]
                },
            ),
            _widget(
                "Rows read, written and quarantined per step, nightly",
                0, 21, 24, 7,
                [
                    _row(name, step=step, label=f"{step} {name.removeprefix('Rows').lower()}")
                    for step in [s.name for s in P.PIPELINE]
                    for name in ("RowsIn", "RowsOut", "RowsQuarantined")
                ],
                "Sum",
            ),
        ]
    }  # fmt: skip


def _stat(name: str, stat: str, **dims: Any) -> dict[str, Any]:
    """An alarm's single metric (properties of AWS::CloudWatch::Alarm)."""
    identity = M.metric(name, dims.pop("dag_id", NIGHTLY), **dims)
    return {"Namespace": {"Ref": "MetricsNamespace"}, **identity, "Statistic": stat, "Period": HOUR}


def _alarm(name: str, description: str, **properties: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"{PROJECT}-{name}",
            "AlarmDescription": description,
            "ActionsEnabled": True,
            "AlarmActions": [{"Ref": "AlertsTopic"}],
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **properties,
        },
    }


def alarms() -> dict[str, Any]:
    """The alarms on the run report's metrics, each to the alerts' topic (README says what to do)."""
    shares = [
        {
            "Id": f"q{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": {"Ref": "MetricsNamespace"},
                    **M.metric("QuarantineShare", NIGHTLY, step, out),
                },
                "Period": HOUR,
                "Stat": "Maximum",
            },
            "ReturnData": False,
        }
        for i, (step, out) in enumerate((s, o) for s, o in M.pipeline_outputs() if s.startswith("ingest_"))
    ]
    return {
        "NightlyFailedAlarm": _alarm(
            "nightly-failed",
            f"A run of {NIGHTLY} failed (a step, the audit or publish): its run report names the step.",
            **_stat("RunFailed", "Sum"),
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            Threshold=1,
        ),
        "NightlyLateAlarm": _alarm(
            "nightly-late",
            f"A scheduled run of {NIGHTLY} finished after PIPELINE_ALERT_DEADLINE_UTC.",
            **_stat("SecondsPastDeadline", "Maximum"),
            ComparisonOperator="GreaterThanThreshold",
            Threshold=0,
        ),
        "NightlyMissingAlarm": _alarm(
            "nightly-missing",
            f"No scheduled run of {NIGHTLY} finished (or published its metrics) for "
            f"{MISSING_AFTER_HOURS} hours: paused, stuck, or the report could not publish.",
            **_stat("SecondsPastDeadline", "SampleCount"),
            ComparisonOperator="LessThanThreshold",
            Threshold=1,
            EvaluationPeriods=MISSING_AFTER_HOURS,
            DatapointsToAlarm=MISSING_AFTER_HOURS,
            TreatMissingData="breaching",
        ),
        "AuditErrorsAlarm": _alarm(
            "audit-errors",
            f"The audit of a {NIGHTLY} run failed an error check: nothing was published for its date.",
            **_stat("AuditErrors", "Maximum"),
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            Threshold=1,
        ),
        "QuarantineShareAlarm": _alarm(
            "quarantine-share",
            f"A dataset of a {NIGHTLY} run had more of its rows quarantined than "
            "QuarantineShareAlarmThreshold.",
            Metrics=[
                *shares,
                {
                    "Id": "highest",
                    "Expression": f"MAX([{', '.join(q['Id'] for q in shares)}])",
                    "Label": "highest quarantined share of the datasets",
                    "ReturnData": True,
                },
            ],
            ComparisonOperator="GreaterThanThreshold",
            Threshold={"Ref": "QuarantineShareAlarmThreshold"},
        ),
        "RunCostAlarm": _alarm(
            "run-cost",
            f"A {NIGHTLY} run's estimated cluster cost was above RunCostBudget (USD).",
            **_stat("EstimatedCost", "Maximum"),
            ComparisonOperator="GreaterThanThreshold",
            Threshold={"Ref": "RunCostBudget"},
        ),
    }


def watched_metrics(
    template: dict[str, Any] | None = None,
) -> set[tuple[Any, str, tuple[tuple[str, str], ...]]]:
    """Every metric the template's dashboard and alarms name: (namespace, name, ((dimension, value), ...))."""
    resources = (template or build_template())["Resources"]
    found = set()
    for widget in resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::ToJsonString"]["widgets"]:
        for row in widget["properties"].get("metrics", []):
            parts = [p for p in row[2:] if not isinstance(p, dict)]
            found.add((json.dumps(row[0]), row[1], tuple(zip(parts[::2], parts[1::2], strict=True))))
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        stats = [props, *(q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q)]
        for stat in (s for s in stats if "MetricName" in s):
            dims = tuple((d["Name"], d["Value"]) for d in stat["Dimensions"])
            found.add((json.dumps(stat["Namespace"]), stat["MetricName"], dims))
    return found


def _monitoring() -> dict[str, Any]:
    return {
        # Where the alarms and Airflow's alerts (PIPELINE_ALERT_SNS_TOPIC_ARN) go: subscribe e-mail,
        # chat or paging to it. Not encrypted: CloudWatch alarms cannot publish to a topic encrypted
        # with AWS's managed key, and the messages hold no data of the lake.
        "AlertsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": iam.alerts_topic_name(),
                "DisplayName": f"{PROJECT} alerts",
                "Tags": [PROJECT_TAG],
            },
        },
        "Dashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": {"Fn::Sub": f"{PROJECT}-${{AWS::Region}}"},
                "DashboardBody": as_json(dashboard_body()),
            },
        },
        **alarms(),
    }


def _clickstream() -> dict[str, Any]:
    """The stream the clickstream's producers put to (the nightly's land_clickstream task reads it,
    include/clickstream_kinesis.py). On demand: no shards to size; a week of retention, so a
    nightly that could not run for days still finds its records; encrypted with Kinesis' AWS
    managed key, which its readers use through Kinesis without a grant of their own."""
    stream = {
        "Type": "AWS::Kinesis::Stream",
        "Condition": "ClickstreamFromKinesis",
        "Properties": {
            "Name": iam.clickstream_stream_name(),
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
            "RetentionPeriodHours": 168,
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
            "Tags": [PROJECT_TAG],
        },
    }
    return {"ClickstreamStream": _retained(stream)}


def _serverless_network() -> dict[str, Any]:
    """The security group of the emr-serverless application's network interfaces in the private
    subnet: no inbound rule; outbound HTTPS only (the subnet reaches its S3, Glue and KMS endpoints
    and nothing else)."""
    group = {
        "Type": "AWS::EC2::SecurityGroup",
        "Condition": "ServerlessNetwork",
        "Properties": {
            "GroupDescription": "EMR Serverless application: HTTPS out to the endpoints of the subnet",
            "VpcId": {"Ref": "Vpc"},
            "SecurityGroupEgress": [
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"}
            ],
            "Tags": [PROJECT_TAG, {"Key": "Name", "Value": f"{PROJECT}-serverless"}],
        },
    }
    return {"ServerlessSecurityGroup": group}


def _outputs() -> dict[str, Any]:
    lake = {"Fn::Sub": "s3://${LakeBucket}/${LakePrefix}"}
    settings: dict[str, tuple[Any, str | None]] = {
        "PIPELINE_TARGET": ({"Fn::If": ["ServerlessTarget", "emr-serverless", "emr"]}, None),
        "PIPELINE_LAKE": (lake, None),
        "PIPELINE_AWS_REGION": ({"Ref": "AWS::Region"}, None),
        "PIPELINE_GLUE_DATABASE_PREFIX": ({"Ref": "GlueDatabasePrefix"}, None),
        "PIPELINE_EMR_SUBNET_ID": (
            {"Fn::If": ["CreateNetwork", {"Ref": "PrivateSubnet"}, {"Ref": "ExistingSubnetId"}]},
            None,
        ),
        "PIPELINE_EMR_MASTER_SG": ({"Ref": "EmrMasterSecurityGroup"}, "CreateNetwork"),
        "PIPELINE_EMR_CORE_SG": ({"Ref": "EmrCoreSecurityGroup"}, "CreateNetwork"),
        "PIPELINE_EMR_SERVICE_SG": ({"Ref": "EmrServiceAccessSecurityGroup"}, "CreateNetwork"),
        "PIPELINE_EMR_SERVICE_ROLE": ({"Ref": "EmrServiceRole"}, None),
        "PIPELINE_EMR_INSTANCE_PROFILE": ({"Ref": "EmrInstanceProfile"}, None),
        "PIPELINE_EMR_SECURITY_CONFIGURATION": ({"Ref": "SecurityConfiguration"}, None),
        "PIPELINE_EMR_S3_ENCRYPTION": ("SSE-KMS", None),
        "PIPELINE_EMR_KMS_KEY_ARN": ({"Fn::GetAtt": ["LakeKey", "Arn"]}, None),
        "PIPELINE_EMR_TLS_CERTIFICATES_URI": (
            sub("s3://${TlsCertificatesBucket}/${TlsCertificatesKey}"),
            None,
        ),
        "PIPELINE_CLOUDWATCH_NAMESPACE": ({"Ref": "MetricsNamespace"}, None),
        "PIPELINE_ALERT_SNS_TOPIC_ARN": ({"Ref": "AlertsTopic"}, None),
        "PIPELINE_CLICKSTREAM_KINESIS_STREAM": ({"Ref": "ClickstreamStream"}, "ClickstreamFromKinesis"),
        "PIPELINE_SERVERLESS_EXECUTION_ROLE": (
            {"Fn::GetAtt": ["ServerlessExecutionRole", "Arn"]},
            "ServerlessTarget",
        ),
        "PIPELINE_SERVERLESS_SECURITY_GROUP": ({"Ref": "ServerlessSecurityGroup"}, "ServerlessNetwork"),
        # The connection the DAGs reach AWS with: Airflow's role, assumed by the workers.
        CONNECTION_VAR: (
            {
                "Fn::Sub": '{"conn_type": "aws", "extra": {"region_name": "${AWS::Region}", '
                '"role_arn": "${AirflowRole.Arn}"}}'
            },
            None,
        ),
    }
    outputs = {}
    for var, (value, condition) in settings.items():
        output: dict[str, Any] = {"Description": var, "Value": value}
        if condition:
            output["Condition"] = condition
        outputs[output_key(var)] = output
    return outputs


def build_template() -> dict[str, Any]:
    """The whole template as a dict (JSON-able)."""
    resources = {
        **_storage(),
        **_emr_security(),
        **_roles(),
        **_glue(),
        **_network(),
        **_monitoring(),
        **_clickstream(),
        **_serverless_network(),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::LanguageExtensions",  # Fn::ToJsonString
        "Description": f"{PROJECT}: what a run of the emr target needs "
        "(generated by python -m infra.template)",
        "Parameters": _parameters(),
        "Conditions": _conditions(),
        "Resources": resources,
        "Outputs": _outputs(),
    }


def settings_of_outputs(outputs: Sequence[dict[str, str]]) -> dict[str, str]:
    """DescribeStacks `Outputs` -> {variable: value}: the PIPELINE_* settings and the connection."""
    by_key = {output_key(var): var for var in (*ENV_VARS, CONNECTION_VAR)}
    return {by_key[o["OutputKey"]]: o["OutputValue"] for o in outputs if o["OutputKey"] in by_key}


def render() -> str:
    return json.dumps(build_template(), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.template", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the template file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not TEMPLATE_FILE.exists() or TEMPLATE_FILE.read_text() != text:
            print(f"{TEMPLATE_FILE.name} is out of date: run python -m infra.template", file=sys.stderr)
            return 1
        return 0
    TEMPLATE_FILE.write_text(text)
    print(f"wrote {TEMPLATE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
