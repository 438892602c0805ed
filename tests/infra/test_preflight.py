"""Preflight against the deployed stack: everything there, no finding; each piece removed, it is named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from deployment import iam, preflight
from deployment.preflight.findings import Finding
from deployment.preflight.resources import MANAGED_TAG
from include.packaging import build_bundle, code_location
from include.settings import load_settings
from scripts.check_aws_preflight import main as check_aws_preflight_main

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")
ACCOUNT = "123456789012"


def _as_airflow(moto_account, region: str) -> dict[str, Any]:
    """Clients with the credentials of the stack's Airflow role, as the DAG's connection has them."""
    sts = moto_account.client("sts", region)
    role = f"arn:aws:iam::{ACCOUNT}:role/{iam.role_name('airflow', region)}"
    creds = sts.assume_role(RoleArn=role, RoleSessionName="preflight")["Credentials"]
    keys = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    return {name: boto3.client(name, region_name=region, **keys) for name in preflight.SERVICES}


def _run_checks(env: dict[str, str], aws: dict[str, Any]) -> list[Finding]:
    """Preflight as the EMR DAGs' task runs it: these settings, this run's code zip's location."""
    settings = load_settings(env)
    return preflight.run_checks(settings, aws, code_location(settings, build_bundle().version)["py_files"])


def _bucket(settings: dict[str, str]) -> str:
    return settings["PIPELINE_LAKE"].removeprefix("s3://").split("/")[0]


def test_everything_deployed_means_no_finding_at_all(moto_account):
    region, settings = moto_account.deploy()
    findings = _run_checks(settings, _as_airflow(moto_account, region))
    assert findings == []
    passed, text = preflight.report(findings)
    assert passed
    assert text == f"preflight: 0 missing or wrong, {len(preflight.CHECKS)} checks"


# ---- each piece removed --------------------------------------------------------------------
def _drop_role(c, region, s):
    name = iam.role_name("emr-service", region)
    for policy in c("iam").list_role_policies(RoleName=name)["PolicyNames"]:
        c("iam").delete_role_policy(RoleName=name, PolicyName=policy)
    for attached in c("iam").list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        c("iam").detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    c("iam").delete_role(RoleName=name)


def _drop_profile(c, region, s):
    name = s["PIPELINE_EMR_INSTANCE_PROFILE"]
    c("iam").remove_role_from_instance_profile(
        InstanceProfileName=name, RoleName=iam.role_name("emr-instance-profile", region)
    )
    c("iam").delete_instance_profile(InstanceProfileName=name)


def _route_to_internet(c, region, s):
    ec2 = c("ec2")
    subnet = ec2.describe_subnets(SubnetIds=[s["PIPELINE_EMR_SUBNET_ID"]])["Subnets"][0]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=subnet["VpcId"])
    own = [{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}]
    table = ec2.describe_route_tables(Filters=own)["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)


def _drop_bucket(c, region, s):
    s3, bucket = c("s3"), _bucket(s)
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=bucket)


def _untag(resource_var: str) -> Callable:
    def untag(c, region, s):
        c("ec2").delete_tags(Resources=[s[resource_var]], Tags=[{"Key": MANAGED_TAG[0]}])

    return untag


def _revoke_airflow_policy(c, region, s):
    name = iam.role_name("airflow", region)
    c("iam").delete_role_policy(RoleName=name, PolicyName="customer-market-analytics")


REMOVALS: dict[str, tuple[Callable, dict[str, str]]] = {
    # name: (remove it, {piece: what its finding says})
    "security configuration": (
        lambda c, r, s: c("emr").delete_security_configuration(Name=s["PIPELINE_EMR_SECURITY_CONFIGURATION"]),
        {"EMR security configuration": "does not exist"},
    ),
    "TLS certificates": (
        lambda c, r, s: c("s3").delete_object(
            Bucket=_bucket(s), Key=s["PIPELINE_EMR_TLS_CERTIFICATES_URI"].split("/", 3)[3]
        ),
        {"TLS certificates": "does not exist; make aws-certs"},
    ),
    "KMS key": (
        lambda c, r, s: c("kms").disable_key(KeyId=s["PIPELINE_EMR_KMS_KEY_ARN"].rsplit("/", 1)[1]),
        {"KMS key": "is Disabled"},
    ),
    "service role": (_drop_role, {"EMR service role": "does not exist"}),
    "instance profile": (_drop_profile, {"EMR instance profile": "does not exist"}),
    "subnet tag": (
        _untag("PIPELINE_EMR_SUBNET_ID"),
        {"subnet": "is not tagged for-use-with-amazon-emr-managed-policies=true"},
    ),
    "private subnet": (_route_to_internet, {"subnet": "routes 0.0.0.0/0 to internet gateway"}),
    "security group tag": (_untag("PIPELINE_EMR_CORE_SG"), {"security group": "PIPELINE_EMR_CORE_SG="}),
    "security group": (
        lambda c, r, s: c("ec2").delete_security_group(GroupId=s["PIPELINE_EMR_SERVICE_SG"]),
        {"security group": "PIPELINE_EMR_SERVICE_SG="},
    ),
    "bucket encryption": (
        lambda c, r, s: c("s3").delete_bucket_encryption(Bucket=_bucket(s)),
        {"lake bucket": "has no default encryption"},
    ),
    "bucket": (
        _drop_bucket,
        # the certificates and the code live in it too
        {
            "lake bucket": "does not exist",
            "TLS certificates": "does not exist",
            "code location": "does not exist",
        },
    ),
    "Glue database": (
        lambda c, r, s: c("glue").delete_database(Name=load_settings(s).namespaces["quarantine"]),
        {"Glue database": "_quarantine (quarantine zone) does not exist"},
    ),
    # no policy left: neither the upload nor its SSE-KMS data key is allowed, nor the metrics and alerts
    "Airflow role's policy": (
        _revoke_airflow_policy,
        {
            "code location": "may not s3:PutObject",
            "CloudWatch metrics": "may not cloudwatch:PutMetricData "
            "(cloudwatch:namespace=CustomerMarketAnalytics)",
            "alerts topic": "may not sns:Publish (arn:aws:sns:",
        },
    ),
}


@pytest.mark.parametrize("removed", sorted(REMOVALS))
def test_each_missing_piece_is_named_with_what_to_do(moto_account, removed):
    region, settings = moto_account.deploy()
    remove, expected = REMOVALS[removed]
    remove(lambda service: moto_account.client(service, region), region, settings)
    findings = _run_checks(settings, _as_airflow(moto_account, region))
    assert all(f.blocking for f in findings), findings
    assert {f.piece for f in findings} == set(expected), [f.line() for f in findings]
    for piece, says in expected.items():
        assert any(says in f.line() for f in findings if f.piece == piece), (piece, findings)
    assert all("; " in f.line() for f in findings)  # problem; what to do
    passed, text = preflight.report(findings)
    assert not passed
    assert len(text.splitlines()) == 1 + len(findings)


def test_a_code_location_outside_the_lake_is_not_writable_for_the_airflow_role(moto_account):
    region, settings = moto_account.deploy()
    elsewhere = {**settings, "PIPELINE_CODE_URI": f"s3://{_bucket(settings)}/elsewhere/_code"}
    findings = _run_checks(elsewhere, _as_airflow(moto_account, region))
    assert [f.piece for f in findings] == ["code location"]
    assert "may not s3:PutObject on arn:aws:s3:::" in findings[0].line()


def test_metrics_to_another_namespace_or_alerts_to_another_topic_are_not_allowed_to_the_airflow_role(
    moto_account,
):
    region, settings = moto_account.deploy()
    other = {
        **settings,
        "PIPELINE_CLOUDWATCH_NAMESPACE": "SomeoneElse/Pipeline",
        "PIPELINE_ALERT_SNS_TOPIC_ARN": f"arn:aws:sns:{region}:{ACCOUNT}:oncall",
    }
    findings = _run_checks(other, _as_airflow(moto_account, region))
    assert [f.line() for f in findings] == [
        f"CloudWatch metrics: role {iam.role_name('airflow', region)} may not cloudwatch:PutMetricData "
        "(cloudwatch:namespace=SomeoneElse/Pipeline); grant it PutMetricData on namespace "
        "SomeoneElse/Pipeline (deployment/iam/airflow-role-policy.json; the stack's Airflow role has it "
        "for the stack's MetricsNamespace), or set PIPELINE_CLOUDWATCH_NAMESPACE to that namespace",
        f"alerts topic: role {iam.role_name('airflow', region)} may not sns:Publish "
        f"(arn:aws:sns:{region}:{ACCOUNT}:oncall); grant it sns:Publish on the topic (the stack's "
        "Airflow role has it for the stack's topic)",
    ]
    # metrics switched off: nothing to publish, nothing to judge
    off = {**other, "PIPELINE_CLOUDWATCH_METRICS": "false", "PIPELINE_ALERT_SNS_TOPIC_ARN": ""}
    assert _run_checks(off, _as_airflow(moto_account, region)) == []


def test_the_command_judges_what_it_can_with_the_deployers_credentials(moto_account, capsys):
    region, settings = moto_account.deploy()
    capsys.readouterr()  # what deploying printed
    assert check_aws_preflight_main([], settings) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"preflight: 0 missing or wrong, {len(preflight.CHECKS)} checks"
    # the deployer is not the Airflow role: writability and the permissions to publish are noted
    # as not judged, not failed
    assert len(out) == 3
    assert out[1].startswith("NOTE code location: writability of s3://")
    assert out[2].startswith(
        "NOTE CloudWatch metrics: permission for CloudWatch metrics and alerts topic not judged: the caller"
    )
    moto_account.client("glue", region).delete_database(Name=load_settings(settings).namespaces["curated"])
    assert check_aws_preflight_main([], settings) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"preflight: 1 missing or wrong, {len(preflight.CHECKS)} checks"
    assert err[1].startswith("MISSING Glue database: ")
    assert check_aws_preflight_main([], {"PIPELINE_TARGET": "local"}) == 2


def test_the_clickstream_stream_the_stack_creates_passes_and_a_missing_one_is_named(moto_account):
    region, settings = moto_account.deploy(ClickstreamFromKinesis="true")
    stream = settings["PIPELINE_CLICKSTREAM_KINESIS_STREAM"]
    assert stream == iam.clickstream_stream_name()
    kinesis = moto_account.client("kinesis", region)
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == (
        "ACTIVE"
    )
    airflow = _as_airflow(moto_account, region)
    assert _run_checks(settings, airflow) == []
    kinesis.delete_stream(StreamName=stream)
    findings = _run_checks(settings, airflow)
    assert [f.line() for f in findings] == [
        f"clickstream stream: Kinesis stream {stream!r} does not exist in {region}; deploy the stack "
        "with ClickstreamFromKinesis=true (its output names the stream) or set "
        "PIPELINE_CLICKSTREAM_KINESIS_STREAM to the stream the events are put to"
    ]
    # without the setting the clickstream is files: nothing to check
    files = {k: v for k, v in settings.items() if k != "PIPELINE_CLICKSTREAM_KINESIS_STREAM"}
    assert _run_checks(files, airflow) == []
