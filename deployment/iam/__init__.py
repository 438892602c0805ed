"""Least-privilege IAM for the roles the pipeline needs, as templated JSON documents: Airflow's, the
EMR service role and the nodes' instance profile (emr target), the job runtime role of EMR
Serverless (emr-serverless target).

`*-policy.json` are identity policies, `*-trust.json` who may assume the role. Placeholders
(`${LakeBucket}`, ...) are filled by `render` (infra/documents.py: from the settings; infra/template.py:
as CloudFormation values); `python -m scripts.render_iam_policies --account ID` prints them ready for
`aws iam put-role-policy` or infrastructure code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

from plugins.emr_naming import PROJECT

HERE = Path(__file__).resolve().parent

# role -> its documents. The EMR service role also gets AWS's own least-privilege service policy
# (it needs EC2 calls whose set AWS maintains); that policy only acts on resources tagged
# `for-use-with-amazon-emr-managed-policies=true` (the subnet and the security groups).
ROLES: dict[str, dict[str, Any]] = {
    "airflow": {"policy": "airflow-role-policy.json", "trust": None, "managed": []},
    "emr-service": {
        "policy": "emr-service-role-policy.json",
        "trust": "emr-service-role-trust.json",
        "managed": ["arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"],
    },
    "emr-instance-profile": {
        "policy": "emr-instance-profile-policy.json",
        "trust": "emr-instance-profile-trust.json",
        "managed": [],
    },
    # the job runtime role every EMR Serverless job run assumes (the stack's ServerlessTarget=true)
    "serverless-execution": {
        "policy": "serverless-execution-role-policy.json",
        "trust": "serverless-execution-role-trust.json",
        "managed": [],
    },
}
# the roles each target's runs need (Airflow's holds both targets' calls)
TARGET_ROLES = {
    "emr": ("airflow", "emr-service", "emr-instance-profile"),
    "emr-serverless": ("airflow", "serverless-execution"),
}

# The only actions granted on "Resource": "*", each because it has no resource to scope to.
RESOURCE_STAR_ACTIONS = {
    # creates a cluster that has no ARN yet; scoped instead by the tag it must carry
    # (aws:RequestTag/project), so every cluster the role can touch later is the project's
    "elasticmapreduce:RunJobFlow",
    # lists clusters of the account (the janitor); EMR has no resource-level permission for it
    "elasticmapreduce:ListClusters",
    # preflight: reading a security configuration, subnets, route tables and security groups has
    # no resource-level permission in EMR and EC2 (every Describe* is account-wide)
    "elasticmapreduce:DescribeSecurityConfiguration",
    "ec2:DescribeSubnets",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    # the run report's metrics: PutMetricData has no resource; the statement's condition
    # (cloudwatch:namespace) scopes it to the project's namespace
    "cloudwatch:PutMetricData",
    # finds the run's application by name (a retried create); EMR Serverless has no
    # resource-level permission for listing applications
    "emr-serverless:ListApplications",
}

# The names infra/ gives the roles (the instance profile is named like its role, as EMR's
# own EMR_EC2_DefaultRole is): one stack per account and region, so the region keeps them apart.
ROLE_NAMES = {
    "airflow": "${Project}-airflow-${Region}",
    "emr-service": "${Project}-emr-service-${Region}",
    "emr-instance-profile": "${Project}-emr-nodes-${Region}",
    "serverless-execution": "${Project}-serverless-jobs-${Region}",
}

PLACEHOLDERS = (
    "Account",
    "Region",
    "Project",
    "LakeBucket",
    "LakePrefix",
    "GlueDatabasePrefix",
    "AirflowRoleName",
    "EmrServiceRoleName",
    "EmrInstanceRoleName",
    "ServerlessExecutionRoleName",
    "KmsKeyArn",
    "TlsCertificatesBucket",
    "TlsCertificatesKey",
    "MetricsNamespace",
    "AlertsTopicArn",
    "ClickstreamStreamName",
)
ALERTS_TOPIC_NAME = "${Project}-alerts"  # the stack's topic (infra/), the default the policy grants
# the stack's clickstream stream (infra/, with ClickstreamFromKinesis=true), the default the policy grants
CLICKSTREAM_STREAM_NAME = "${Project}-clickstream"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


def document(name: str) -> dict[str, Any]:
    """One JSON document of this folder, placeholders still in."""
    return json.loads((HERE / name).read_text())


def placeholders(doc: Any) -> set[str]:
    return set(_PLACEHOLDER.findall(json.dumps(doc)))


def render(doc: Any, values: Mapping[str, str]) -> Any:
    """`doc` with every ${Name} replaced; KeyError when a value is missing (nothing half-filled)."""
    missing = placeholders(doc) - set(values)
    if missing:
        raise KeyError(f"no value for {sorted(missing)}")
    # Values are substituted into JSON strings: escape them as JSON string content.
    escaped = {k: json.dumps(str(v))[1:-1] for k, v in values.items()}
    return json.loads(Template(json.dumps(doc)).substitute(escaped))


def role_name(role: str, region: str) -> str:
    """The name infra/ gives `role` (a key of ROLES) in `region`."""
    return Template(ROLE_NAMES[role]).substitute(Project=PROJECT, Region=region)


def alerts_topic_name() -> str:
    """The name infra/ gives the alerts' SNS topic (one per account and region)."""
    return Template(ALERTS_TOPIC_NAME).substitute(Project=PROJECT)


def clickstream_stream_name() -> str:
    """The name infra/ gives the clickstream's Kinesis stream (one per account and region)."""
    return Template(CLICKSTREAM_STREAM_NAME).substitute(Project=PROJECT)
