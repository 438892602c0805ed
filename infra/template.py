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

Here: the parameters, conditions and outputs (the settings) around the resources of
infra/resources.py and infra/monitoring.py; infra/cfn.py turns the placeholders into CloudFormation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from include.checks import AuditSettings
from include.settings import CLOUDWATCH_NAMESPACE, ENV_VARS
from infra.cfn import sub
from infra.monitoring import RUN_COST_BUDGET, monitoring
from infra.resources import clickstream, emr_security, glue, network, roles, serverless_network, storage
from plugins.emr_naming import PROJECT

TEMPLATE_FILE = Path(__file__).with_name("customer-analytics.template.json")


def output_key(var: str) -> str:
    """The stack output holding setting `var`: PIPELINE_EMR_SUBNET_ID -> PipelineEmrSubnetId."""
    return "".join(part.capitalize() for part in var.lower().split("_"))


# The outputs that are not PIPELINE_* settings, by the variable they are pasted as.
CONNECTION_VAR = "AIRFLOW_CONN_AWS_DEFAULT"


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
        **storage(),
        **emr_security(),
        **roles(),
        **glue(),
        **network(),
        **monitoring(),
        **clickstream(),
        **serverless_network(),
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
