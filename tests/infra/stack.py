"""The stack of infra/ deployed into moto: what moto's CloudFormation creates, and the rest by API calls.

moto 5.2.5's CloudFormation has no model for two of the template's resource types and skips
some properties of the types it has. Those are created here with the API call CloudFormation
itself would make, from the template's own properties (intrinsic functions resolved against the
deployed stack), so the account ends up holding exactly what the template declares and nothing
made by hand. The tests name both lists and check that moto still needs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from infra import deploy as infra_deploy
from infra import tls_certs
from infra.template import build_template

# Resource types moto's CloudFormation skips (it logs "No Moto CloudFormation support").
UNSUPPORTED_TYPES = {"AWS::Glue::Database", "AWS::S3::BucketPolicy", "AWS::CloudWatch::Alarm"}
# moto evaluates a bucket policy's conditions without the request's context: the TLS-only Deny
# (aws:SecureTransport false) denies every request, also boto3's (all over TLS in AWS). The
# policy is put and read back by its own test, and judged there with deployment/iam/evaluate.py;
# accounts that run DAGs go without it.
# Properties moto's models of supported types ignore: (type, property) -> made by this API call.
IGNORED_PROPERTIES = {
    ("AWS::S3::Bucket", "BucketEncryption.BucketKeyEnabled"): "s3:PutBucketEncryption",
    ("AWS::S3::Bucket", "VersioningConfiguration"): "s3:PutBucketVersioning",
    ("AWS::S3::Bucket", "PublicAccessBlockConfiguration"): "s3:PutPublicAccessBlock",
    ("AWS::S3::Bucket", "OwnershipControls"): "s3:PutBucketOwnershipControls",
    ("AWS::S3::Bucket", "LifecycleConfiguration"): "s3:PutBucketLifecycleConfiguration",
    ("AWS::IAM::Role", "ManagedPolicyArns"): "iam:AttachRolePolicy",
    ("AWS::EC2::VPC", "EnableDnsSupport"): "ec2:ModifyVpcAttribute",
    ("AWS::EC2::VPC", "EnableDnsHostnames"): "ec2:ModifyVpcAttribute",
    ("AWS::EC2::Subnet", "MapPublicIpOnLaunch"): "ec2:ModifySubnetAttribute",
    ("AWS::EC2::RouteTable", "Tags"): "ec2:CreateTags",
    # moto keeps a new group's default allow-all egress: the template's rules replace it in AWS
    ("AWS::EC2::SecurityGroup", "SecurityGroupEgress"): "ec2:AuthorizeSecurityGroupEgress",
}

# Types moto models but whose resource has no effect: its association is not visible to
# DescribeRouteTables, so the subnet would fall back to the VPC's main table.
INERT_TYPES = {"AWS::EC2::SubnetRouteTableAssociation": "ec2:AssociateRouteTable"}

ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client


def holds(conditions: Mapping[str, Any], name: str, refs: Mapping[str, str]) -> bool:
    """Whether the template's condition `name` holds for the parameters in `refs` (the functions
    its conditions use: Fn::Equals of a Ref and a literal, Fn::Not, Fn::And of conditions)."""

    def value(expr: Any) -> Any:
        if isinstance(expr, dict) and "Ref" in expr:
            return refs[expr["Ref"]]
        if isinstance(expr, dict) and "Condition" in expr:
            return holds(conditions, expr["Condition"], refs)
        if isinstance(expr, dict) and "Fn::Equals" in expr:
            left, right = expr["Fn::Equals"]
            return value(left) == value(right)
        if isinstance(expr, dict) and "Fn::Not" in expr:
            return not value(expr["Fn::Not"][0])
        if isinstance(expr, dict) and "Fn::And" in expr:
            return all(value(e) for e in expr["Fn::And"])
        if isinstance(expr, str):
            return expr
        raise ValueError(f"condition {name}: {expr!r} is not understood here")

    return bool(value(conditions[name]))


class Resolver:
    """Ref, Fn::Sub, Fn::GetAtt and Fn::ToJsonString against a deployed stack."""

    def __init__(self, client: ClientFactory, stack: str, region: str, parameters: Mapping[str, str]) -> None:
        cf = client("cloudformation", region)
        template = build_template()
        self.refs: dict[str, str] = {k: v.get("Default", "") for k, v in template["Parameters"].items()}
        self.refs.update(parameters)
        self.refs.update(
            {
                "AWS::AccountId": client("sts", region).get_caller_identity()["Account"],
                "AWS::Region": region,
                "AWS::Partition": "aws",
                "AWS::StackName": stack,
            }
        )
        for res in cf.list_stack_resources(StackName=stack)["StackResourceSummaries"]:
            if res.get("LogicalResourceId"):
                self.refs[res["LogicalResourceId"]] = res["PhysicalResourceId"]
        self._client, self._region = client, region

    def get_att(self, logical: str, attribute: str) -> str:
        if (logical, attribute) == ("LakeKey", "Arn"):
            return self._client("kms", self._region).describe_key(KeyId=self.refs[logical])["KeyMetadata"][
                "Arn"
            ]
        raise KeyError(f"Fn::GetAtt {logical}.{attribute}")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self.refs[value["Ref"]]
        if "Fn::GetAtt" in value:
            return self.get_att(*value["Fn::GetAtt"])
        if "Fn::ToJsonString" in value:
            return json.dumps(self(value["Fn::ToJsonString"]))
        if "Fn::Sub" in value:
            text, variables = (
                (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
            )
            bound = {k: self(v) for k, v in variables.items()}

            def one(match: re.Match) -> str:
                name = match.group(1)
                if name in bound:
                    return str(bound[name])
                if "." in name:
                    return self.get_att(*name.split(".", 1))
                return self.refs[name]

            return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", one, text)
        return {k: self(v) for k, v in value.items()}


def apply_by_api(
    client: ClientFactory,
    stack: str,
    region: str,
    parameters: Mapping[str, str],
    *,
    bucket_policy: bool = False,
    types: set[str] | None = None,
) -> list[str]:
    """Create what moto's CloudFormation skipped (of `types`, default all); returns the API calls
    made, for the tests to show."""
    resolve = Resolver(client, stack, region, parameters)
    s3, glue, iam = client("s3", region), client("glue", region), client("iam", region)
    ec2 = client("ec2", region)
    made = []
    template = build_template()
    for logical, resource in template["Resources"].items():
        if "Condition" in resource and not holds(template["Conditions"], resource["Condition"], resolve.refs):
            continue  # not deployed with these parameters (the network, the Serverless pieces)
        if types is not None and resource["Type"] not in types:
            continue
        kind, props = resource["Type"], resolve(resource.get("Properties", {}))
        physical = resolve.refs.get(logical, "")
        if kind == "AWS::Glue::Database":
            glue.create_database(CatalogId=props["CatalogId"], DatabaseInput=props["DatabaseInput"])
            made.append(f"glue:CreateDatabase {props['DatabaseInput']['Name']}")
        elif kind == "AWS::CloudWatch::Alarm":
            client("cloudwatch", region).put_metric_alarm(**_alarm(props))
            made.append(f"cloudwatch:PutMetricAlarm {props['AlarmName']}")
        elif kind == "AWS::S3::BucketPolicy" and bucket_policy:
            s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
            made.append(f"s3:PutBucketPolicy {props['Bucket']}")
        elif kind == "AWS::S3::Bucket":
            bucket = physical
            s3.put_bucket_encryption(
                Bucket=bucket, ServerSideEncryptionConfiguration=_encryption(props["BucketEncryption"])
            )
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"])
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
            s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration=_lifecycle(props["LifecycleConfiguration"])
            )
            made += [f"{call} {bucket}" for (k, _), call in IGNORED_PROPERTIES.items() if k == kind]
        elif kind == "AWS::IAM::Role":
            for arn in props.get("ManagedPolicyArns", []):
                iam.attach_role_policy(RoleName=props["RoleName"], PolicyArn=arn)
                made.append(f"iam:AttachRolePolicy {props['RoleName']} {arn}")
        elif kind == "AWS::EC2::VPC":
            for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
                ec2.modify_vpc_attribute(VpcId=physical, **{attribute: {"Value": props[attribute]}})
                made.append(f"ec2:ModifyVpcAttribute {physical} {attribute}")
        elif kind == "AWS::EC2::Subnet":
            ec2.modify_subnet_attribute(
                SubnetId=physical, MapPublicIpOnLaunch={"Value": props["MapPublicIpOnLaunch"]}
            )
            made.append(f"ec2:ModifySubnetAttribute {physical} MapPublicIpOnLaunch")
        elif kind == "AWS::EC2::SubnetRouteTableAssociation":
            ec2.associate_route_table(RouteTableId=props["RouteTableId"], SubnetId=props["SubnetId"])
            made.append(f"ec2:AssociateRouteTable {props['RouteTableId']} {props['SubnetId']}")
        elif kind == "AWS::EC2::SecurityGroup" and "SecurityGroupEgress" in props:
            everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
            ec2.revoke_security_group_egress(GroupId=physical, IpPermissions=everything)
            rules = [
                {
                    **{k: r[k] for k in ("IpProtocol", "FromPort", "ToPort")},
                    "IpRanges": [{"CidrIp": r["CidrIp"]}],
                }
                for r in props["SecurityGroupEgress"]
            ]
            ec2.authorize_security_group_egress(GroupId=physical, IpPermissions=rules)
            made.append(f"ec2:AuthorizeSecurityGroupEgress {physical}")
        elif kind == "AWS::EC2::RouteTable":
            ec2.create_tags(Resources=[physical], Tags=props["Tags"])
            made.append(f"ec2:CreateTags {physical}")
    return made


def _encryption(cfn: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's BucketEncryption in the S3 API's shape."""
    return {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                "BucketKeyEnabled": rule.get("BucketKeyEnabled", False),
            }
            for rule in cfn["ServerSideEncryptionConfiguration"]
        ]
    }


def _alarm(cfn: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's alarm in PutMetricAlarm's shape: the same names; numbers that are
    parameters (a Ref resolves to the parameter's text) as numbers."""
    api = dict(cfn)
    api["Threshold"] = float(api["Threshold"])
    for key in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
        if key in api:
            api[key] = int(api[key])
    return api


def _lifecycle(cfn: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's LifecycleConfiguration in the S3 API's shape (the same rules, other names)."""
    rules = []
    for rule in cfn["Rules"]:
        api: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": ""}}
        if "NoncurrentVersionExpiration" in rule:
            api["NoncurrentVersionExpiration"] = rule["NoncurrentVersionExpiration"]
        if "AbortIncompleteMultipartUpload" in rule:
            api["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
        rules.append(api)
    return {"Rules": rules}


def deploy_stack(
    client: ClientFactory, stack: str, region: str, parameters: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Deploy as `make aws-deploy` does (stack, then TLS certificates), completing what moto skips.

    Returns the stack's settings: its outputs as `{PIPELINE_...: value}`.
    """
    parameters = dict(parameters or {})
    settings = infra_deploy.deploy(client("cloudformation", region), stack, parameters)
    apply_by_api(client, stack, region, parameters)
    clients = {name: client(name, region) for name in ("cloudformation", "s3")}
    assert tls_certs.main(["--stack", stack, "--region", region, "--if-missing"], clients=clients) == 0
    return settings
