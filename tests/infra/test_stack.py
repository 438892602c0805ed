"""The stack of infra/: generated from the project's sources, valid for cfn-lint, and deployed into moto
it holds what the template declares, named by outputs that are exactly the DAGs' settings."""

from __future__ import annotations

import json
import subprocess
import zipfile
from io import BytesIO

import pytest
from cryptography import x509
from moto.cloudformation.parsing import get_model_map

from deployment import iam
from deployment.emr_security import network_problems
from deployment.iam.evaluate import Request, is_allowed
from include import pipeline as P
from include.run_report import metrics as M
from include.settings import ENV_VARS, PROJECT_ROOT, load_settings
from infra import cfn, documents, monitoring, tls_certs
from infra import deploy as infra_deploy
from infra import template as T
from tests.infra.stack import IGNORED_PROPERTIES, UNSUPPORTED_TYPES, apply_by_api

# moto names each resource type it skips; tests/infra/stack.py creates those by API calls
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")
TEMPLATE = T.build_template()


# ---- the template --------------------------------------------------------------------------
def test_the_committed_template_is_what_the_sources_generate():
    assert T.main(["--check"]) == 0
    assert json.loads(T.TEMPLATE_FILE.read_text()) == TEMPLATE


def test_cfn_lint_passes_the_template_and_fails_a_broken_one():
    from cfnlint.api import ManualArgs, lint

    config = ManualArgs(include_checks=["I"])  # informational rules too (e.g. hard-coded partitions)
    assert [str(m) for m in lint(T.TEMPLATE_FILE.read_text(), config=config)] == []
    broken = json.loads(T.TEMPLATE_FILE.read_text())
    broken["Resources"]["LakeKey"]["Properties"]["EnableKeyRotation"] = "sometimes"
    del broken["Resources"]["Vpc"]  # the subnet still refers to it
    rules = {m.rule.id for m in lint(json.dumps(broken), config=config)}
    assert {"E3012", "E1020"} <= rules  # a wrong type, a dangling reference


def test_policies_and_security_configuration_come_from_include_not_copies():
    # every deployment/iam statement is in the template, by Sid, under the role that has it
    roles = {
        "airflow": "AirflowRole",
        "emr-service": "EmrServiceRole",
        "emr-instance-profile": "EmrInstanceRole",
    }
    for role, logical in roles.items():
        doc = TEMPLATE["Resources"][logical]["Properties"]["Policies"][0]["PolicyDocument"][
            "Fn::ToJsonString"
        ]
        source = iam.document(iam.ROLES[role]["policy"])
        assert [s["Sid"] for s in doc["Statement"]] == [s["Sid"] for s in source["Statement"]]
    security = TEMPLATE["Resources"]["SecurityConfiguration"]["Properties"]["SecurityConfiguration"]
    assert set(security["Fn::ToJsonString"]) == {
        "EncryptionConfiguration",
        "InstanceMetadataServiceConfiguration",
    }


def test_sub_turns_placeholders_into_fn_sub_with_exactly_the_variables_used():
    assert cfn.sub("${Project}-x") == "customer-market-analytics-x"
    assert cfn.sub("arn:aws:s3:::${LakeBucket}/${LakePrefix}/*") == {
        "Fn::Sub": [
            "arn:${AWS::Partition}:s3:::${LakeBucket}/${LakePrefix}/*",
            {"LakeBucket": {"Ref": "LakeBucket"}, "LakePrefix": {"Ref": "LakePrefix"}},
        ]
    }
    # a name made of placeholders is expanded as text first
    assert cfn.sub("db/${GlueDatabase}") == {
        "Fn::Sub": ["db/${GlueDatabasePrefix}_curated", {"GlueDatabasePrefix": {"Ref": "GlueDatabasePrefix"}}]
    }
    with pytest.raises(KeyError, match="Nope"):
        cfn.sub("${Nope}")


def test_outputs_are_pipeline_settings_and_the_connection_nothing_else():
    keys = {T.output_key(var): var for var in (*ENV_VARS, T.CONNECTION_VAR)}
    assert len(keys) == len(ENV_VARS) + 1  # the naming is one to one
    assert set(TEMPLATE["Outputs"]) <= set(keys)
    for key, output in TEMPLATE["Outputs"].items():
        assert output["Description"] == keys[key]


def test_the_dashboard_and_alarms_watch_only_metrics_the_run_report_publishes_in_the_stacks_namespace():
    watched = T.watched_metrics(TEMPLATE)
    assert {ns for ns, _, _ in watched} == {json.dumps({"Ref": "MetricsNamespace"})}
    for _, name, dims in watched:
        by_name = dict(dims)
        assert by_name["DAG"] in (P.NIGHTLY_DAG_ID, P.BACKFILL_DAG_ID)
        # the name at the level of its dimensions, as include/run_report/metrics.py publishes it
        identity = M.metric(name, by_name["DAG"], by_name.get("Step"), by_name.get("Output"))
        assert identity["Dimensions"] == [{"Name": k, "Value": v} for k, v in dims], (name, dims)
    steps = {dict(d).get("Step") for _, _, d in watched} - {None}
    outputs = {dict(d).get("Output") for _, _, d in watched} - {None}
    assert steps == {s.name for s in P.PIPELINE} | {"audit", "publish"}
    assert outputs == {f"processed.{d}" for d in P.DATASETS} | {f"curated.{o}" for o in P.OUTPUTS}
    # (that a nightly on EMR publishes each of them: tests/dags/test_emr_spark.py, make test-ops)


def test_every_alarms_evaluation_range_is_within_what_put_metric_alarm_accepts():
    """PutMetricAlarm: period x evaluation periods at most 7 days, at most 1 day for periods under an
    hour; a metric-math alarm's period is its metrics'; M of N with M <= N."""
    alarms = [
        r["Properties"] for r in TEMPLATE["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarms) == 6
    for alarm in alarms:
        periods = (
            {alarm["Period"]}
            if "Period" in alarm
            else {q["MetricStat"]["Period"] for q in alarm["Metrics"] if "MetricStat" in q}
        )
        (period,) = periods
        assert period % 60 == 0
        span = period * alarm["EvaluationPeriods"]
        assert span <= (86400 if period < 3600 else 604800), alarm["AlarmName"]
        assert alarm.get("DatapointsToAlarm", 1) <= alarm["EvaluationPeriods"]


def test_the_dashboards_picture_is_what_the_template_draws_one_box_per_widget():
    from xml.etree import ElementTree

    from infra import dashboard_picture

    assert dashboard_picture.main(["--check"]) == 0
    drawn = ElementTree.fromstring(dashboard_picture.PICTURE_FILE.read_text())  # noqa: S314 (our own file)
    boxes = [e for e in drawn.iter("{http://www.w3.org/2000/svg}rect") if e.get("class") == "widget"]
    widgets = monitoring.dashboard_body()["widgets"]
    assert [(int(b.get("x")), int(b.get("y"))) for b in boxes] == [
        (
            dashboard_picture.MARGIN + w["x"] * dashboard_picture.COLUMN,
            dashboard_picture.MARGIN + w["y"] * dashboard_picture.ROW,
        )
        for w in widgets
    ]
    text = " ".join(e.text or "" for e in drawn.iter("{http://www.w3.org/2000/svg}text"))
    assert all(w["properties"]["title"] in text for w in widgets if w["type"] == "metric")


def test_moto_skips_exactly_the_types_created_by_api_calls_in_these_tests():
    types = {r["Type"] for r in TEMPLATE["Resources"].values()}
    assert types - set(get_model_map()) == UNSUPPORTED_TYPES


# ---- deployed into moto --------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(moto_account):
    region, settings = moto_account.deploy(AirflowPrincipalArn="arn:aws:iam::123456789012:role/workers")
    return moto_account, region, settings


def test_the_outputs_are_settings_the_dags_accept(stack):
    _, region, settings = stack
    outputs = TEMPLATE["Outputs"]
    # every output but the clickstream stream's (deployed with ClickstreamFromKinesis=true only,
    # tests/infra/test_preflight.py) and the Serverless target's (ServerlessTarget=true only,
    # tests/infra/test_serverless_preflight.py)
    optional = ("ClickstreamFromKinesis", "ServerlessTarget", "ServerlessNetwork")
    assert set(settings) == {T.CONNECTION_VAR} | {
        v
        for v in ENV_VARS
        if T.output_key(v) in outputs and outputs[T.output_key(v)].get("Condition") not in optional
    }
    loaded = load_settings(settings)
    assert loaded.is_emr
    assert loaded.region == region
    assert loaded.lake.endswith("/lake")
    assert loaded.s3_encryption == "SSE-KMS"
    conn = json.loads(settings[T.CONNECTION_VAR])
    assert conn["extra"] == {
        "region_name": region,
        "role_arn": f"arn:aws:iam::123456789012:role/{iam.role_name('airflow', region)}",
    }
    lines = infra_deploy.env_lines(settings)
    assert f"PIPELINE_LAKE={settings['PIPELINE_LAKE']}" in lines
    assert f"{T.CONNECTION_VAR}='{settings[T.CONNECTION_VAR]}'" in lines


def test_the_roles_have_exactly_include_iams_documents(stack):
    account, region, settings = stack
    client = account.client("iam", region)
    rendered = documents.rendered_roles(load_settings(settings), "123456789012")
    for role, spec in rendered.items():
        name = iam.role_name(role, region)
        deployed = client.get_role_policy(RoleName=name, PolicyName="customer-market-analytics")
        assert deployed["PolicyDocument"] == spec["policy"], role
        trust = client.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        if spec["trust"]:
            assert trust == spec["trust"], role
        else:  # Airflow's: the principal the deployer named
            assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:role/workers"}
        attached = client.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == spec["managed"], role
    profile = client.get_instance_profile(InstanceProfileName=settings["PIPELINE_EMR_INSTANCE_PROFILE"])
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [
        iam.role_name("emr-instance-profile", region)
    ]


def test_the_security_configuration_is_include_emr_securitys_with_the_stacks_key(stack):
    account, region, settings = stack
    emr = account.client("emr", region)
    stored = emr.describe_security_configuration(Name=settings["PIPELINE_EMR_SECURITY_CONFIGURATION"])
    assert json.loads(stored["SecurityConfiguration"]) == documents.security_configuration(
        load_settings(settings)
    )
    key = account.client("kms", region).describe_key(KeyId=settings["PIPELINE_EMR_KMS_KEY_ARN"])[
        "KeyMetadata"
    ]
    assert key["KeyState"] == "Enabled"


def test_the_bucket_is_encrypted_with_the_key_versioned_private_and_holds_the_certificates(stack):
    account, region, settings = stack
    s3 = account.client("s3", region)
    bucket = settings["PIPELINE_LAKE"].removeprefix("s3://").split("/")[0]
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": settings["PIPELINE_EMR_KMS_KEY_ARN"],
    }
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert set(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values()) == {True}
    certs_key = settings["PIPELINE_EMR_TLS_CERTIFICATES_URI"].removeprefix(f"s3://{bucket}/")
    assert certs_key == cfn.TLS_CERTIFICATES_KEY
    assert not certs_key.startswith("lake/")
    with zipfile.ZipFile(BytesIO(s3.get_object(Bucket=bucket, Key=certs_key)["Body"].read())) as zf:
        assert sorted(zf.namelist()) == sorted(tls_certs.ZIP_MEMBERS)
        cert = x509.load_pem_x509_certificate(zf.read("certificateChain.pem"))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [f"*.{region}.compute.internal"]


def test_the_bucket_policy_is_accepted_and_denies_everything_but_tls(stack):
    account, region, settings = stack
    applied = apply_by_api(
        account.client, "cma", region, {}, bucket_policy=True, types={"AWS::S3::BucketPolicy"}
    )
    bucket = settings["PIPELINE_LAKE"].removeprefix("s3://").split("/")[0]
    assert f"s3:PutBucketPolicy {bucket}" in applied
    s3 = account.client("s3", region)
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    s3.delete_bucket_policy(Bucket=bucket)  # moto cannot tell TLS requests apart (tests/infra/stack.py)
    everything = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    obj = f"arn:aws:s3:::{bucket}/lake/landing/x.csv"
    assert is_allowed([everything, policy], Request("s3:GetObject", obj, {"aws:SecureTransport": "true"}))
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not is_allowed([everything, policy], Request(action, obj, {"aws:SecureTransport": "false"}))


def test_the_alarms_go_to_the_stacks_topic_which_the_alerts_setting_names(stack):
    account, region, settings = stack
    cw = account.client("cloudwatch", region)
    topic, namespace = settings["PIPELINE_ALERT_SNS_TOPIC_ARN"], settings["PIPELINE_CLOUDWATCH_NAMESPACE"]
    assert namespace == "CustomerMarketAnalytics"
    assert topic in {t["TopicArn"] for t in account.client("sns", region).list_topics()["Topics"]}
    assert topic.endswith(f":{region}:123456789012:customer-market-analytics-alerts")
    alarms = {
        a["AlarmName"].removeprefix("customer-market-analytics-"): a
        for a in cw.describe_alarms()["MetricAlarms"]
    }
    assert set(alarms) == {
        "nightly-failed", "nightly-late", "nightly-missing", "audit-errors", "quarantine-share", "run-cost",
    }  # fmt: skip
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [topic]
        assert alarm.get("Namespace", namespace) == namespace
    nightly = [{"Name": "DAG", "Value": P.NIGHTLY_DAG_ID}, {"Name": "Target", "Value": "emr"}]
    failed = alarms["nightly-failed"]
    assert (failed["MetricName"], failed["Dimensions"], failed["Statistic"]) == ("RunFailed", nightly, "Sum")
    assert (failed["ComparisonOperator"], failed["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1.0)
    missing = alarms["nightly-missing"]
    assert (missing["MetricName"], missing["Statistic"], missing["TreatMissingData"]) == (
        "SecondsPastDeadline", "SampleCount", "breaching",
    )  # fmt: skip
    assert missing["Period"] * missing["EvaluationPeriods"] == 26 * 3600
    # the audit's warning band and the budget, as the parameters' defaults
    assert alarms["quarantine-share"]["Threshold"] == 0.01
    shares = [q for q in alarms["quarantine-share"]["Metrics"] if "MetricStat" in q]
    assert {q["MetricStat"]["Metric"]["Dimensions"][3]["Value"] for q in shares} == {
        f"processed.{d}" for d in P.DATASETS
    }
    assert alarms["run-cost"]["Threshold"] == 5.0
    dashboard = cw.get_dashboard(DashboardName=f"customer-market-analytics-{region}")
    body = json.loads(dashboard["DashboardBody"])
    rows = [row for w in body["widgets"] for row in w["properties"].get("metrics", [])]
    assert rows
    assert {row[0] for row in rows} == {namespace}
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {region}


def test_the_glue_databases_are_the_zones_namespaces(stack):
    account, region, settings = stack
    found = {d["Name"] for d in account.client("glue", region).get_databases()["DatabaseList"]}
    assert set(load_settings(settings).namespaces.values()) <= found


def test_the_network_is_private_tagged_and_reaches_s3_glue_and_kms_through_endpoints(stack):
    account, region, settings = stack
    ec2 = account.client("ec2", region)
    subnet_id = settings["PIPELINE_EMR_SUBNET_ID"]
    assert network_problems(ec2, subnet_id) == []
    subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    managed = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
    assert managed in subnet["Tags"]
    groups = [
        settings[v] for v in ("PIPELINE_EMR_MASTER_SG", "PIPELINE_EMR_CORE_SG", "PIPELINE_EMR_SERVICE_SG")
    ]
    for group in ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]:
        assert managed in group["Tags"]
        assert group["VpcId"] == subnet["VpcId"]
        assert group["IpPermissions"] == []  # EMR writes the rules of its managed groups
    own = [{"Name": "association.subnet-id", "Values": [subnet_id]}]
    table = ec2.describe_route_tables(Filters=own)["RouteTables"][0]
    assert next(r.get("GatewayId", "") for r in table["Routes"]) == "local"  # no internet gateway, no NAT
    assert all(
        not r.get("GatewayId", "").startswith("igw-") and "NatGatewayId" not in r for r in table["Routes"]
    )
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}])
    by_service = {e["ServiceName"].rsplit(".", 1)[-1]: e for e in endpoints["VpcEndpoints"]}
    assert set(by_service) == {"s3", "glue", "kms"}
    assert by_service["s3"]["VpcEndpointType"] == "Gateway"
    vpc = subnet["VpcId"]
    for attribute in ("enableDnsSupport", "enableDnsHostnames"):
        answer = ec2.describe_vpc_attribute(VpcId=vpc, Attribute=attribute)
        assert answer[attribute[0].upper() + attribute[1:]]["Value"] is True


def test_without_the_network_the_clusters_run_in_the_given_subnet(moto_account):
    region, settings = moto_account.deploy(CreateNetwork="false", ExistingSubnetId="subnet-0123456789abcdef0")
    assert settings["PIPELINE_EMR_SUBNET_ID"] == "subnet-0123456789abcdef0"
    assert not {"PIPELINE_EMR_MASTER_SG", "PIPELINE_EMR_SERVICE_SG"} & set(settings)
    ec2 = moto_account.client("ec2", region)
    assert not ec2.describe_vpc_endpoints()["VpcEndpoints"]


def test_deploying_again_changes_nothing_and_the_commands_refuse_a_missing_stack_or_region(stack, capsys):
    account, region, settings = stack
    cf = account.client("cloudformation", region)
    assert infra_deploy.deploy(cf, "cma") == settings
    for argv in (["deploy", "--region", region], ["destroy", "--stack", "cma"]):
        with pytest.raises(SystemExit) as exited:  # argparse: the option is required
            infra_deploy.main(argv, client=cf)
        assert exited.value.code == 2
    assert infra_deploy.main(["deploy", "--stack", "x y", "--region", region], client=cf) == 2
    assert infra_deploy.main(["deploy", "--stack", "cma", "--region", "europe"], client=cf) == 2
    capsys.readouterr()
    assert infra_deploy.main(["outputs", "--stack", "cma", "--region", region], client=cf) == 0
    assert (
        f"PIPELINE_EMR_SUBNET_ID={settings['PIPELINE_EMR_SUBNET_ID']}" in capsys.readouterr().out.splitlines()
    )


def test_ignored_properties_are_really_ignored_by_moto(moto_account):
    """Each workaround of tests/infra/stack.py is still needed: without it moto leaves it undone."""
    region = "us-west-2" if "us-west-2" not in moto_account.used else "eu-south-2"
    moto_account.used.add(region)
    settings = infra_deploy.deploy(
        moto_account.client("cloudformation", region), "cma", {"ServerlessTarget": "true"}
    )
    s3, ec2, iam_client = (moto_account.client(s, region) for s in ("s3", "ec2", "iam"))
    group = ec2.describe_security_groups(GroupIds=[settings["PIPELINE_SERVERLESS_SECURITY_GROUP"]])
    assert [p["IpProtocol"] for p in group["SecurityGroups"][0]["IpPermissionsEgress"]] == ["-1"]
    bucket = settings["PIPELINE_LAKE"].removeprefix("s3://").split("/")[0]
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule.get("BucketKeyEnabled") is not True
    assert not iam_client.list_attached_role_policies(RoleName=iam.role_name("emr-service", region))[
        "AttachedPolicies"
    ]
    subnet = ec2.describe_subnets(SubnetIds=[settings["PIPELINE_EMR_SUBNET_ID"]])["Subnets"][0]
    vpc = subnet["VpcId"]
    assert (
        ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
        is False
    )
    assert {p for _, p in IGNORED_PROPERTIES} >= {
        "VersioningConfiguration",
        "ManagedPolicyArns",
        "EnableDnsHostnames",
        "SecurityGroupEgress",
    }


def test_make_refuses_without_a_stack_and_region_and_deploys_then_uploads_the_certificates():
    make = ["make", "--no-print-directory", "-C", str(PROJECT_ROOT)]
    for target in ("aws-deploy", "aws-certs", "aws-destroy"):
        refused = subprocess.run(
            [*make, target, "REGION=eu-west-1"], capture_output=True, text=True, check=False
        )
        assert refused.returncode != 0
        assert f"usage: make {target} STACK=<stack name> REGION=<aws region>" in refused.stderr
    planned = subprocess.run(
        [*make, "-n", "aws-deploy", "STACK=cma", "REGION=eu-west-1", "AWS_PARAMETERS=CreateNetwork=false"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deploy = planned.index(
        "-m infra.deploy deploy --stack cma --region eu-west-1 --parameter CreateNetwork=false"
    )
    assert planned.index("-m infra.tls_certs --stack cma --region eu-west-1 --if-missing") > deploy
