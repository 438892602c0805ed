"""The cluster's security: what RunJobFlow asks for, the security configuration it names, and its creation."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from deployment.emr_security import SecurityConfigurationConflict, ensure_security_configuration
from include.cluster_profiles import PROFILES, job_flow_overrides
from include.settings import SettingsError, load_settings
from infra.documents import security_configuration as security_document
from scripts.create_emr_security_configuration import main

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CERTS = "s3://security-bucket/emr/certs.zip"
ENV = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://lake-bucket/lake",
    "PIPELINE_AWS_REGION": "eu-west-1",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
    "PIPELINE_EMR_MASTER_SG": "sg-0123456789abcdef0",
    "PIPELINE_EMR_CORE_SG": "sg-0fedcba9876543210",
    "PIPELINE_EMR_SERVICE_SG": "sg-0aaaaaaaaaaaaaaaa",
    "PIPELINE_EMR_SECURITY_CONFIGURATION": "cma-security-v2",
    "PIPELINE_EMR_KMS_KEY_ARN": KEY,
    "PIPELINE_EMR_TLS_CERTIFICATES_URI": CERTS,
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_cluster_names_the_security_configuration_runs_in_the_subnet_and_has_no_ssh_key(profile):
    settings = load_settings(ENV)
    req = job_flow_overrides(profile, settings, name="n", tags={"project": "p"})
    assert req["SecurityConfiguration"] == "cma-security-v2"
    inst = req["Instances"]
    assert inst["Ec2SubnetId"] == "subnet-0123456789abcdef0"
    assert "Ec2SubnetIds" not in inst  # one known (private) subnet, not a choice among public ones
    assert "Ec2KeyName" not in inst  # no SSH key pair: nobody logs in to the nodes
    assert inst["EmrManagedMasterSecurityGroup"] == "sg-0123456789abcdef0"
    assert inst["EmrManagedSlaveSecurityGroup"] == "sg-0fedcba9876543210"
    assert inst["ServiceAccessSecurityGroup"] == "sg-0aaaaaaaaaaaaaaaa"
    # only EMR-managed groups: no extra groups with rules EMR does not control
    assert "AdditionalMasterSecurityGroups" not in inst
    assert "AdditionalSlaveSecurityGroups" not in inst
    nodes = inst.get("InstanceGroups", []) + inst.get("InstanceFleets", [])
    assert nodes
    assert all("AdditionalSecurityGroups" not in g for g in nodes)


def test_the_security_configuration_defaults_to_the_projects_name():
    settings = load_settings({k: v for k, v in ENV.items() if k != "PIPELINE_EMR_SECURITY_CONFIGURATION"})
    req = job_flow_overrides("dev", settings, name="n", tags={})
    assert req["SecurityConfiguration"] == "customer-market-analytics"


def test_the_document_encrypts_s3_and_local_disks_with_kms_uses_tls_and_requires_imdsv2():
    doc = security_document(load_settings(ENV))
    enc = doc["EncryptionConfiguration"]
    assert enc["EnableAtRestEncryption"] is True
    assert enc["EnableInTransitEncryption"] is True
    at_rest = enc["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-KMS", "AwsKmsKey": KEY}
    assert at_rest["LocalDiskEncryptionConfiguration"] == {
        "EncryptionKeyProviderType": "AwsKms",
        "AwsKmsKey": KEY,
        "EnableEbsEncryption": True,
    }
    assert enc["InTransitEncryptionConfiguration"] == {
        "TLSCertificateConfiguration": {"CertificateProviderType": "PEM", "S3Object": CERTS}
    }
    assert doc["InstanceMetadataServiceConfiguration"] == {
        "MinimumInstanceMetadataServiceVersion": 2,
        "HttpPutResponseHopLimit": 1,
    }


def test_sse_s3_needs_no_key_for_s3_but_local_disks_still_use_kms():
    doc = security_document(load_settings({**ENV, "PIPELINE_EMR_S3_ENCRYPTION": "SSE-S3"}))
    at_rest = doc["EncryptionConfiguration"]["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-S3"}
    assert at_rest["LocalDiskEncryptionConfiguration"]["AwsKmsKey"] == KEY


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("PIPELINE_EMR_KMS_KEY_ARN", "alias/aws/s3", "PIPELINE_EMR_KMS_KEY_ARN"),
        ("PIPELINE_EMR_KMS_KEY_ARN", "*", "PIPELINE_EMR_KMS_KEY_ARN"),
        ("PIPELINE_EMR_S3_ENCRYPTION", "CSE-KMS", "PIPELINE_EMR_S3_ENCRYPTION"),
        ("PIPELINE_EMR_S3_ENCRYPTION", "none", "PIPELINE_EMR_S3_ENCRYPTION"),
        ("PIPELINE_EMR_TLS_CERTIFICATES_URI", "https://example.com/certs.zip", "TLS_CERTIFICATES"),
        ("PIPELINE_EMR_TLS_CERTIFICATES_URI", "s3://bucket/certs.pem", "TLS_CERTIFICATES"),
        ("PIPELINE_EMR_SECURITY_CONFIGURATION", "a b; rm -rf /", "SECURITY_CONFIGURATION"),
    ],
)
def test_bad_security_settings_fail_the_import_naming_the_variable(var, value, named):
    with pytest.raises(SettingsError, match=named):
        load_settings({**ENV, var: value})


@pytest.mark.parametrize("var", ["PIPELINE_EMR_KMS_KEY_ARN", "PIPELINE_EMR_TLS_CERTIFICATES_URI"])
def test_the_document_cannot_be_built_without_a_key_or_certificates(var):
    settings = load_settings({k: v for k, v in ENV.items() if k != var})
    with pytest.raises(SettingsError, match=var):
        security_document(settings)


@mock_aws
def test_creating_the_configuration_is_idempotent_and_refuses_to_silently_keep_a_different_one():
    emr = boto3.client("emr", region_name="eu-west-1")
    doc = security_document(load_settings(ENV))
    assert ensure_security_configuration(emr, "cma", doc) == "created"
    assert ensure_security_configuration(emr, "cma", doc) == "unchanged"
    stored = emr.describe_security_configuration(Name="cma")["SecurityConfiguration"]
    assert json.loads(stored) == doc

    weaker = json.loads(json.dumps(doc))
    weaker["InstanceMetadataServiceConfiguration"]["MinimumInstanceMetadataServiceVersion"] = 1
    with pytest.raises(SecurityConfigurationConflict, match="new name"):
        ensure_security_configuration(emr, "cma", weaker)
    assert json.loads(emr.describe_security_configuration(Name="cma")["SecurityConfiguration"]) == doc


@mock_aws
def test_the_command_creates_the_configuration_named_in_the_settings(monkeypatch, capsys):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    assert main([], ENV) == 0
    assert main([], ENV) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "EMR security configuration 'cma-security-v2': created",
        "EMR security configuration 'cma-security-v2': unchanged",
    ]
    emr = boto3.client("emr", region_name="eu-west-1")
    stored = emr.describe_security_configuration(Name="cma-security-v2")["SecurityConfiguration"]
    assert json.loads(stored) == security_document(load_settings(ENV))


def test_the_command_prints_the_document_without_aws_and_refuses_incomplete_settings(capsys):
    assert main(["--print"], ENV) == 0
    assert json.loads(capsys.readouterr().out) == security_document(load_settings(ENV))
    assert main(["--print"], {k: v for k, v in ENV.items() if k != "PIPELINE_EMR_KMS_KEY_ARN"}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "PIPELINE_EMR_KMS_KEY_ARN" in err


def _vpc(ec2, *, public_ips: bool, igw_route: bool, own_table: bool = True) -> str:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    if public_ips:
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    if own_table:
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    else:
        main = [{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
        table = ec2.describe_route_tables(Filters=main)["RouteTables"][0]["RouteTableId"]
    if igw_route:
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    return subnet


@mock_aws
def test_the_network_check_accepts_a_private_subnet_and_names_what_makes_one_public():
    from deployment.emr_security import network_problems

    ec2 = boto3.client("ec2", region_name="eu-west-1")
    assert network_problems(ec2, _vpc(ec2, public_ips=False, igw_route=False)) == []
    public_ips = network_problems(ec2, _vpc(ec2, public_ips=True, igw_route=False))
    assert len(public_ips) == 1
    assert "MapPublicIpOnLaunch" in public_ips[0]
    routed = network_problems(ec2, _vpc(ec2, public_ips=False, igw_route=True))
    assert len(routed) == 1
    assert "0.0.0.0/0 to internet gateway igw-" in routed[0]
    # no route table of its own: the VPC's main table decides
    via_main = network_problems(ec2, _vpc(ec2, public_ips=False, igw_route=True, own_table=False))
    assert len(via_main) == 1
    assert "internet gateway" in via_main[0]


@mock_aws
def test_the_command_fails_when_the_configured_subnet_is_public(monkeypatch, capsys):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    private, public = _vpc(ec2, public_ips=False, igw_route=False), _vpc(ec2, public_ips=True, igw_route=True)

    assert main(["--check-network"], {**ENV, "PIPELINE_EMR_SUBNET_ID": private}) == 0
    assert f"subnet {private}: private" in capsys.readouterr().out
    assert main(["--check-network"], {**ENV, "PIPELINE_EMR_SUBNET_ID": public}) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2  # public IPs and the internet gateway route, one line each
