"""Preflight of the emr-serverless target against the stack deployed with ServerlessTarget=true:
everything there, no finding; each piece removed or wrong, it is named in one line."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from deployment import iam, preflight
from deployment.preflight import serverless as SP
from include.emr_release import RELEASES
from include.packaging import build_bundle, code_location
from include.settings import load_settings
from infra import documents
from scripts.check_aws_preflight import main as check_aws_preflight_main
from tests.infra.test_preflight import _as_airflow, _bucket

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")


def _checks(moto_account, region: str, settings: dict[str, str]) -> list[preflight.Finding]:
    loaded = load_settings(settings)
    code_files = code_location(loaded, build_bundle().version)["py_files"]
    return preflight.run_checks(loaded, _as_airflow(moto_account, region), code_files, RELEASES)


def _deploy(moto_account) -> tuple[str, dict[str, str]]:
    region, settings = moto_account.deploy(ServerlessTarget="true")
    assert settings["PIPELINE_TARGET"] == "emr-serverless"
    return region, settings


def test_the_serverless_stack_passes_the_serverless_preflight(moto_account, capsys):
    region, settings = _deploy(moto_account)
    findings = _checks(moto_account, region, settings)
    assert [f.line() for f in findings] == []
    passed, text = preflight.report(findings, load_settings(settings))
    assert passed
    assert text == f"preflight: 0 missing or wrong, {len(SP.SERVERLESS_CHECKS)} checks"
    # the EMR cluster's pieces are not asked for: no security configuration, no EMR-tagged groups
    assert preflight.checks_for(load_settings(settings)) == SP.SERVERLESS_CHECKS
    assert preflight.check_security_configuration not in SP.SERVERLESS_CHECKS
    # without the project's release labels (a caller that has none) the release is not judged
    loaded = load_settings({**settings, "PIPELINE_EMR_RELEASE": "emr-7.14.0"})
    code_files = code_location(loaded, build_bundle().version)["py_files"]
    assert preflight.run_checks(loaded, _as_airflow(moto_account, region), code_files) == []


def test_the_serverless_stack_holds_the_execution_role_and_the_applications_security_group(moto_account):
    region, settings = _deploy(moto_account)
    loaded = load_settings(settings)
    client = moto_account.client("iam", region)
    rendered = documents.rendered_roles(loaded, "123456789012")
    assert set(rendered) == {"airflow", "serverless-execution"}
    for role, spec in rendered.items():
        name = iam.role_name(role, region)
        deployed = client.get_role_policy(RoleName=name, PolicyName="customer-market-analytics")
        assert deployed["PolicyDocument"] == spec["policy"], role
    execution = client.get_role(RoleName=iam.role_name("serverless-execution", region))["Role"]
    assert execution["Arn"] == settings["PIPELINE_SERVERLESS_EXECUTION_ROLE"]
    assert execution["AssumeRolePolicyDocument"] == rendered["serverless-execution"]["trust"]
    ec2 = moto_account.client("ec2", region)
    group = ec2.describe_security_groups(GroupIds=[settings["PIPELINE_SERVERLESS_SECURITY_GROUP"]])
    group = group["SecurityGroups"][0]
    subnet = ec2.describe_subnets(SubnetIds=[settings["PIPELINE_EMR_SUBNET_ID"]])["Subnets"][0]
    assert group["VpcId"] == subnet["VpcId"]
    assert group["IpPermissions"] == []  # nothing comes in
    assert [(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")) for p in group["IpPermissionsEgress"]] == [
        ("tcp", 443, 443)
    ]


def _drop_execution_role(c, region, s):
    name = s["PIPELINE_SERVERLESS_EXECUTION_ROLE"].rsplit("/", 1)[1]
    for policy in c("iam").list_role_policies(RoleName=name)["PolicyNames"]:
        c("iam").delete_role_policy(RoleName=name, PolicyName=policy)
    c("iam").delete_role(RoleName=name)


def _trust_ec2_instead(c, region, s):
    name = s["PIPELINE_SERVERLESS_EXECUTION_ROLE"].rsplit("/", 1)[1]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    c("iam").update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))


def _group_of_another_vpc(c, region, s):
    ec2 = c("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_security_group(GroupName="elsewhere", Description="x", VpcId=vpc)["GroupId"]
    s["PIPELINE_SERVERLESS_SECURITY_GROUP"] = other


def _drop_bucket(c, region, s):
    s3, bucket = c("s3"), _bucket(s)
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=bucket)


def _release(label: str) -> Callable:
    def use(c, region, s):
        s["PIPELINE_EMR_RELEASE"] = label

    return use


REMOVALS: dict[str, tuple[Callable, dict[str, str]]] = {
    # name: (remove or change it, {piece: what its finding says})
    "execution role": (_drop_execution_role, {"Serverless execution role": "does not exist"}),
    "execution role's trust": (
        _trust_ec2_instead,
        {"Serverless execution role": "does not trust emr-serverless.amazonaws.com"},
    ),
    "subnet": (
        lambda c, r, s: s.update(PIPELINE_EMR_SUBNET_ID="subnet-0123456789abcdef0"),
        {"subnet": "subnet-0123456789abcdef0 does not exist"},
    ),
    "security group": (
        lambda c, r, s: c("ec2").delete_security_group(GroupId=s["PIPELINE_SERVERLESS_SECURITY_GROUP"]),
        {"Serverless security group": "does not exist"},
    ),
    "security group's VPC": (_group_of_another_vpc, {"Serverless security group": "is not in the VPC"}),
    "release": (_release("emr-7.12.0"), {}),  # in the table: no finding
    "unknown release": (_release("emr-7.14.0"), {"release label": "emr-7.14.0 is not in the project's"}),
    "KMS key": (
        lambda c, r, s: c("kms").disable_key(KeyId=s["PIPELINE_EMR_KMS_KEY_ARN"].rsplit("/", 1)[1]),
        {"KMS key": "is Disabled"},
    ),
    "log bucket": (
        lambda c, r, s: s.update(
            PIPELINE_EMR_LOG_URI=s["PIPELINE_LAKE"].replace("s3://", "s3://gone-") + "/x/"
        ),
        {"log bucket": "does not exist"},
    ),
    "bucket": (
        _drop_bucket,
        {"code bucket": "does not exist", "lake bucket": "does not exist", "code location": "does not exist"},
    ),
}


@pytest.mark.parametrize("removed", sorted(REMOVALS))
def test_each_missing_serverless_piece_is_named_in_one_line(moto_account, removed):
    region, settings = _deploy(moto_account)
    remove, expected = REMOVALS[removed]
    remove(lambda service: moto_account.client(service, region), region, settings)
    findings = _checks(moto_account, region, settings)
    assert {f.piece for f in findings} == set(expected), [f.line() for f in findings]
    for piece, says in expected.items():
        assert any(says in f.line() for f in findings if f.piece == piece), (piece, findings)
    assert all("; " in f.line() and "\n" not in f.line() for f in findings)  # problem; what to do


def test_the_command_checks_the_target_the_settings_name(moto_account, capsys):
    region, settings = _deploy(moto_account)
    capsys.readouterr()  # what deploying printed
    assert check_aws_preflight_main([], settings) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"preflight: 0 missing or wrong, {len(SP.SERVERLESS_CHECKS)} checks"
    )
    _drop_execution_role(lambda service: moto_account.client(service, region), region, settings)
    assert check_aws_preflight_main([], settings) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"preflight: 1 missing or wrong, {len(SP.SERVERLESS_CHECKS)} checks"
    role = iam.role_name("serverless-execution", region)
    assert err[1] == f"MISSING Serverless execution role: {role!r} does not exist; {SP.DEPLOY_SERVERLESS}"
