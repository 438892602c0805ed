"""The IAM documents: the evaluator, their shape, and every AWS call the emr DAGs make is allowed — no more.

The calls are recorded, not listed by hand: the nightly and janitor DAGs run with dag.test()
against moto (tests/harness/aws_fakes.py), and each recorded request becomes the authorization
question AWS would ask (action, resource ARN, condition keys such as the cluster's tags).
"""

from __future__ import annotations

import json

import pytest

from deployment import iam
from deployment.iam.evaluate import Request, UnsupportedPolicy, granted_actions, is_allowed, too_broad
from include.run_local import load_dag, run_dag_test
from include.settings import PROJECT_ROOT, SettingsError, load_settings
from infra import documents
from plugins.emr_naming import PROJECT
from tests.harness.aws_fakes import REGION, EmrStepPlayer
from tests.harness.dag_runs import run_pipeline_dag
from tests.harness.iam_questions import (
    ACCOUNT,
    KINESIS_LANDING,
    NOT_EXERCISED,
    PREFLIGHT_ONLY,
    SERVERLESS_TARGET,
    authorization_questions,
)
from tests.harness.settings import EMR_ENV

KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SETTINGS = load_settings(
    {
        **EMR_ENV,
        "PIPELINE_AWS_REGION": REGION,
        "PIPELINE_EMR_KMS_KEY_ARN": KEY,
        "PIPELINE_EMR_TLS_CERTIFICATES_URI": "s3://security-bucket/emr/certs.zip",
    }
)
SERVERLESS_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{iam.role_name('serverless-execution', REGION)}"
SERVERLESS_SETTINGS = load_settings(
    {
        **EMR_ENV,
        "PIPELINE_TARGET": "emr-serverless",
        "PIPELINE_AWS_REGION": REGION,
        "PIPELINE_EMR_KMS_KEY_ARN": KEY,
        "PIPELINE_SERVERLESS_EXECUTION_ROLE": SERVERLESS_ROLE,
        "PIPELINE_SERVERLESS_SECURITY_GROUP": "sg-0123456789abcdef0",
    }
)
# every role: the emr target's, and the emr-serverless target's (its Airflow policy is the same)
ROLES = {
    **documents.rendered_roles(SERVERLESS_SETTINGS, ACCOUNT),
    **documents.rendered_roles(SETTINGS, ACCOUNT),
}
AIRFLOW = [ROLES["airflow"]["policy"]]
INSTANCE = [ROLES["emr-instance-profile"]["policy"]]
CLUSTER = f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/j-ABC"
OURS = {"aws:ResourceTag/project": PROJECT}


# ---- the evaluator -------------------------------------------------------------------------
def test_the_evaluator_follows_iams_allow_deny_wildcard_and_condition_rules():
    allow = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/p/*"},
            {
                "Effect": "Allow",
                "Action": ["elasticmapreduce:TerminateJobFlows"],
                "Resource": "arn:aws:elasticmapreduce:*:1:cluster/*",
                "Condition": {"StringEquals": {"aws:ResourceTag/project": "x"}},
            },
        ]
    }
    deny = {
        "Statement": [{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/secret*"}]
    }
    assert is_allowed([allow], Request("S3:GETOBJECT", "arn:aws:s3:::b/p/x/y"))  # actions: any case
    assert not is_allowed([allow], Request("s3:GetObject", "arn:aws:s3:::b/other"))
    assert not is_allowed([allow], Request("s3:GetObject", "arn:aws:s3:::B/p/x"))  # resources: exact case
    assert not is_allowed([allow], Request("s3:PutObject", "arn:aws:s3:::b/p/x"))
    assert is_allowed([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/p/x"))
    assert not is_allowed([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/p/secret.txt"))
    term = "elasticmapreduce:TerminateJobFlows"
    cluster = "arn:aws:elasticmapreduce:eu-west-1:1:cluster/j-1"
    assert is_allowed([allow], Request(term, cluster, {"aws:ResourceTag/project": "x"}))
    assert not is_allowed([allow], Request(term, cluster, {"aws:ResourceTag/project": "y"}))
    assert not is_allowed([allow], Request(term, cluster, {}))  # untagged cluster
    assert not is_allowed([allow], Request(term, "arn:aws:elasticmapreduce:eu-west-1:2:cluster/j-1", OURS))


def test_the_evaluator_refuses_documents_it_cannot_judge():
    for statement in (
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": {"IpAddress": {}}},
    ):
        with pytest.raises(UnsupportedPolicy):
            is_allowed([{"Statement": [statement]}], Request("s3:GetObject", "arn:aws:s3:::b/k"))


def test_too_broad_names_wildcard_actions_and_star_resources():
    policy = {
        "Statement": [
            {"Sid": "a", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "b", "Effect": "Allow", "Action": ["glue:GetTable"], "Resource": "*"},
            {"Sid": "c", "Effect": "Allow", "Action": ["elasticmapreduce:ListClusters"], "Resource": "*"},
        ]
    }
    problems = too_broad(policy, iam.RESOURCE_STAR_ACTIONS)
    assert problems == ["a: wildcard action 's3:*'", "b: ['glue:GetTable'] on Resource '*'"]


# ---- the documents -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in iam.HERE.glob("*.json")))
def test_every_document_uses_only_known_placeholders_and_renders_to_plain_json(name):
    doc = iam.document(name)
    assert iam.placeholders(doc) <= set(iam.PLACEHOLDERS)
    rendered = iam.render(doc, documents.values_from_settings(SETTINGS, ACCOUNT))
    assert "${" not in json.dumps(rendered)
    assert rendered["Version"] == "2012-10-17"


@pytest.mark.parametrize("role", sorted(iam.ROLES))
def test_no_policy_grants_wildcard_actions_or_star_resources_beyond_the_named_exceptions(role):
    assert too_broad(ROLES[role]["policy"], iam.RESOURCE_STAR_ACTIONS) == []


def test_rendering_needs_every_value_and_the_code_and_logs_inside_the_lake():
    with pytest.raises(KeyError, match="LakeBucket"):
        iam.render({"Resource": "arn:aws:s3:::${LakeBucket}"}, {})
    outside = load_settings({**EMR_ENV, "PIPELINE_CODE_URI": "s3://other-bucket/code"})
    with pytest.raises(SettingsError, match="PIPELINE_CODE_URI"):
        documents.values_from_settings(outside, ACCOUNT)
    with pytest.raises(SettingsError, match="account"):
        documents.values_from_settings(SETTINGS, "12345")


def test_the_service_role_is_assumable_by_emr_of_this_account_only():
    trust = ROLES["emr-service"]["trust"]["Statement"][0]
    assert trust["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert ROLES["emr-instance-profile"]["trust"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }


def test_the_airflow_role_touches_only_clusters_with_the_project_tag():
    for action in ("AddJobFlowSteps", "TerminateJobFlows", "CancelSteps", "DescribeStep", "ListSteps"):
        assert is_allowed(AIRFLOW, Request(f"elasticmapreduce:{action}", CLUSTER, OURS)), action
        other = {"aws:ResourceTag/project": "someone-else"}
        assert not is_allowed(AIRFLOW, Request(f"elasticmapreduce:{action}", CLUSTER, other)), action
        assert not is_allowed(AIRFLOW, Request(f"elasticmapreduce:{action}", CLUSTER, {})), action
    run = "elasticmapreduce:RunJobFlow"
    assert is_allowed(AIRFLOW, Request(run, "*", {"aws:RequestTag/project": PROJECT}))
    assert not is_allowed(AIRFLOW, Request(run, "*", {}))  # an untagged cluster cannot be created
    for tagging in ("elasticmapreduce:AddTags", "elasticmapreduce:RemoveTags"):  # nor retagged
        assert not is_allowed(AIRFLOW, Request(tagging, CLUSTER, OURS))


def test_the_airflow_role_writes_only_the_code_folder_and_passes_only_the_cluster_roles():
    lake = "arn:aws:s3:::lake-bucket/lake"
    assert is_allowed(AIRFLOW, Request("s3:PutObject", f"{lake}/_code/v1/spark_jobs.zip"))
    for key in ("curated/x/dt=2024-06-30/part-0", "landing/sales/dt=2024-06-30/a.csv", "_codex/a"):
        assert not is_allowed(AIRFLOW, Request("s3:PutObject", f"{lake}/{key}")), key
    assert not is_allowed(AIRFLOW, Request("s3:PutObject", "arn:aws:s3:::other-bucket/lake/_code/a"))
    assert not is_allowed(AIRFLOW, Request("s3:DeleteObject", f"{lake}/_code/v1/spark_jobs.zip"))
    admin = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    assert not is_allowed(
        AIRFLOW, Request("iam:PassRole", admin, {"iam:PassedToService": "ec2.amazonaws.com"})
    )
    instance_role = f"arn:aws:iam::{ACCOUNT}:role/EMR_EC2_DefaultRole"
    to_lambda = {"iam:PassedToService": "lambda.amazonaws.com"}
    assert not is_allowed(AIRFLOW, Request("iam:PassRole", instance_role, to_lambda))


def test_the_airflow_role_publishes_metrics_to_its_namespace_and_alerts_to_its_topic_only():
    put = "cloudwatch:PutMetricData"
    assert is_allowed(AIRFLOW, Request(put, "*", {"cloudwatch:namespace": SETTINGS.cloudwatch_namespace}))
    for other in ("AWS/EMR", "SomeoneElse", f"{SETTINGS.cloudwatch_namespace}/more"):
        assert not is_allowed(AIRFLOW, Request(put, "*", {"cloudwatch:namespace": other})), other
    assert not is_allowed(AIRFLOW, Request(put, "*", {}))
    # nothing else of CloudWatch: no alarms, dashboards or reads
    for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:GetMetricData"):
        assert not is_allowed(
            AIRFLOW, Request(action, "*", {"cloudwatch:namespace": "CustomerMarketAnalytics"})
        )
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{PROJECT}-alerts"  # the stack's, when none is configured
    assert is_allowed(AIRFLOW, Request("sns:Publish", topic))
    assert not is_allowed(AIRFLOW, Request("sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:other"))
    configured = load_settings(
        {
            **EMR_ENV,
            "PIPELINE_AWS_REGION": REGION,
            "PIPELINE_ALERT_SNS_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:oncall",
        }
    )
    policy = iam.render(
        iam.document("airflow-role-policy.json"), documents.values_from_settings(configured, ACCOUNT)
    )
    assert is_allowed([policy], Request("sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:oncall"))
    assert not is_allowed([policy], Request("sns:Publish", topic))


def test_the_airflow_role_reads_only_the_clickstream_stream_and_lands_only_clickstream_files():
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{PROJECT}-clickstream"  # the stack's, by default
    for action in sorted(KINESIS_LANDING):
        assert is_allowed(AIRFLOW, Request(action, stream)), action
        assert not is_allowed(AIRFLOW, Request(action, f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/other"))
    for action in ("kinesis:PutRecord", "kinesis:DeleteStream", "kinesis:SubscribeToShard"):
        assert not is_allowed(AIRFLOW, Request(action, stream)), action
    configured = load_settings(
        {**EMR_ENV, "PIPELINE_AWS_REGION": REGION, "PIPELINE_CLICKSTREAM_KINESIS_STREAM": "user-clickstream"}
    )
    policy = iam.render(
        iam.document("airflow-role-policy.json"), documents.values_from_settings(configured, ACCOUNT)
    )
    mine = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/user-clickstream"
    assert is_allowed([policy], Request("kinesis:GetRecords", mine))
    assert not is_allowed([policy], Request("kinesis:GetRecords", stream))
    lake = "arn:aws:s3:::lake-bucket/lake"
    landed = f"{lake}/landing/clickstream/dt=2024-06-28/kinesis-shardId-000000000000-1-2.json"
    assert is_allowed(AIRFLOW, Request("s3:PutObject", landed))
    assert not is_allowed(AIRFLOW, Request("s3:GetObject", landed))  # it only writes the landing
    checkpoint = f"{lake}/_checkpoints/clickstream_kinesis/user-clickstream/shardId-000000000000.json"
    for action in ("s3:GetObject", "s3:PutObject"):
        assert is_allowed(AIRFLOW, Request(action, checkpoint)), action
        # the Spark stream's checkpoints are the nodes' alone
        spark = f"{lake}/_checkpoints/clickstream_checkouts/dt=2024-06-28/offsets/0"
        assert not is_allowed(AIRFLOW, Request(action, spark)), action
    for other in ("landing/sales/dt=2024-06-28/a.csv", "landing/clickstreams/a.json"):
        assert not is_allowed(AIRFLOW, Request("s3:PutObject", f"{lake}/{other}")), other
    assert not is_allowed(AIRFLOW, Request("s3:DeleteObject", landed))


@pytest.mark.parametrize(
    ("zone", "writes"),
    [
        ("landing", False),
        ("_code", False),
        ("warehouse", True),  # the Iceberg tables: data and metadata files
        ("_checkpoints", True),
        ("_emr_logs", True),
    ],
)
def test_the_nodes_read_the_whole_lake_and_write_only_what_the_jobs_write(zone, writes):
    obj = f"arn:aws:s3:::lake-bucket/lake/{zone}/sales/data/dt=2024-06-30/part-0.parquet"
    assert is_allowed(INSTANCE, Request("s3:GetObject", obj))
    for action in ("s3:PutObject", "s3:DeleteObject"):  # a rename on S3 is copy + delete
        assert is_allowed(INSTANCE, Request(action, obj)) is writes
    assert not is_allowed(INSTANCE, Request("s3:GetObject", "arn:aws:s3:::other-bucket/lake/x"))
    runs = "arn:aws:s3:::lake-bucket/lake/_runs"
    assert is_allowed(INSTANCE, Request("s3:PutObject", f"{runs}/metrics/dt=2024-06-30/graph.json"))
    assert not is_allowed(
        INSTANCE, Request("s3:PutObject", f"{runs}/reports/dag_id=x/dt=2024-06-30/report.json")
    )
    assert is_allowed(INSTANCE, Request("s3:GetObject", "arn:aws:s3:::security-bucket/emr/certs.zip"))
    assert not is_allowed(INSTANCE, Request("s3:GetObject", "arn:aws:s3:::security-bucket/emr/other.zip"))


def test_the_nodes_keep_their_tables_in_the_zones_glue_databases_and_nowhere_else():
    base = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    prefix = EMR_ENV["PIPELINE_GLUE_DATABASE_PREFIX"]
    for zone in ("processed", "quarantine", "curated"):
        table = f"{base}:table/{prefix}_{zone}/sales"
        for action in ("glue:GetTable", "glue:CreateTable", "glue:UpdateTable"):
            assert is_allowed(INSTANCE, Request(action, table)), (action, zone)
        assert is_allowed(INSTANCE, Request("glue:GetDatabase", f"{base}:database/{prefix}_{zone}"))
    for action in ("glue:GetTable", "glue:UpdateTable"):
        assert not is_allowed(INSTANCE, Request(action, f"{base}:table/someone_elses_db/sales"))
    # a job never drops a table (the catalog is the registration: a lost table is data lost)
    assert not is_allowed(INSTANCE, Request("glue:DeleteTable", f"{base}:table/{prefix}_curated/sales"))


# ---- the emr-serverless target ----------------------------------------------------------------
APP = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/00fabc123"
JOB_RUN = f"{APP}/jobruns/00fjr456"
EXECUTION = [ROLES["serverless-execution"]["policy"]]


def test_the_evaluators_null_operator_asks_whether_a_key_is_there():
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": "a:B", "Resource": "*", "Condition": {"Null": {"k": "true"}}},
            {"Effect": "Allow", "Action": "a:C", "Resource": "*", "Condition": {"Null": {"k": "false"}}},
        ]
    }
    assert is_allowed([doc], Request("a:B", "x"))
    assert not is_allowed([doc], Request("a:B", "x", {"k": "v"}))
    assert is_allowed([doc], Request("a:C", "x", {"k": "v"}))
    assert not is_allowed([doc], Request("a:C", "x"))


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("emr-serverless:GetApplication", APP),
        ("emr-serverless:StartApplication", APP),
        ("emr-serverless:StopApplication", APP),
        ("emr-serverless:DeleteApplication", APP),
        ("emr-serverless:StartJobRun", APP),
        ("emr-serverless:ListJobRuns", APP),
        ("emr-serverless:GetJobRun", JOB_RUN),
        ("emr-serverless:CancelJobRun", JOB_RUN),
    ],
)
def test_the_serverless_calls_are_allowed_on_the_runs_application_and_refused_on_another_projects(
    action, resource
):
    assert is_allowed(AIRFLOW, Request(action, resource, OURS))
    assert not is_allowed(AIRFLOW, Request(action, resource, {"aws:ResourceTag/project": "another-team"}))
    assert not is_allowed(AIRFLOW, Request(action, resource, {}))  # untagged: not the project's
    elsewhere = resource.replace(f":{ACCOUNT}:", ":210987654321:")
    assert not is_allowed(AIRFLOW, Request(action, elsewhere, OURS))  # another account's


def test_applications_and_job_runs_are_created_and_tagged_only_with_the_project_tag():
    create, tag = "emr-serverless:CreateApplication", "emr-serverless:TagResource"
    apps = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/*"
    ours = {"aws:RequestTag/project": PROJECT}
    assert is_allowed(AIRFLOW, Request(create, apps, ours))
    assert not is_allowed(AIRFLOW, Request(create, apps, {}))
    assert not is_allowed(AIRFLOW, Request(create, apps, {"aws:RequestTag/project": "another-team"}))
    # tags given with CreateApplication and StartJobRun: the resource has none yet
    assert is_allowed(AIRFLOW, Request(tag, APP, ours))
    assert is_allowed(AIRFLOW, Request(tag, JOB_RUN, ours))
    assert not is_allowed(AIRFLOW, Request(tag, APP, {"aws:RequestTag/project": "another-team"}))
    # another project's application can never be retagged into this one's
    theirs = {**ours, "aws:ResourceTag/project": "another-team"}
    assert not is_allowed(AIRFLOW, Request(tag, APP, theirs))
    assert is_allowed(AIRFLOW, Request(tag, APP, {**ours, **OURS}))
    for never in ("emr-serverless:UntagResource", "emr-serverless:UpdateApplication"):
        assert not is_allowed(AIRFLOW, Request(never, APP, OURS)), never
    assert is_allowed(AIRFLOW, Request("emr-serverless:ListApplications", "*"))


def test_the_execution_role_is_passed_to_emr_serverless_only_and_no_other_role_is():
    to_serverless = {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    assert is_allowed(AIRFLOW, Request("iam:PassRole", SERVERLESS_ROLE, to_serverless))
    for service in ("ec2.amazonaws.com", "elasticmapreduce.amazonaws.com", "lambda.amazonaws.com"):
        assert not is_allowed(
            AIRFLOW, Request("iam:PassRole", SERVERLESS_ROLE, {"iam:PassedToService": service})
        )
    assert not is_allowed(AIRFLOW, Request("iam:PassRole", SERVERLESS_ROLE, {}))
    for other in ("Admin", iam.role_name("emr-instance-profile", REGION), iam.role_name("airflow", REGION)):
        role = f"arn:aws:iam::{ACCOUNT}:role/{other}"
        assert not is_allowed(AIRFLOW, Request("iam:PassRole", role, to_serverless)), other
    linked = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ops.emr-serverless.amazonaws.com/"
    service = {"iam:AWSServiceName": "ops.emr-serverless.amazonaws.com"}
    assert is_allowed(
        AIRFLOW,
        Request("iam:CreateServiceLinkedRole", linked + "AWSServiceRoleForAmazonEMRServerless", service),
    )
    assert not is_allowed(
        AIRFLOW,
        Request("iam:CreateServiceLinkedRole", linked + "Other", {"iam:AWSServiceName": "ec2.amazonaws.com"}),
    )


def test_the_execution_role_is_assumable_by_emr_serverless_of_this_account_only():
    trust = ROLES["serverless-execution"]["trust"]["Statement"]
    assert trust == [
        {
            "Sid": "EmrServerlessOfThisAccountOnly",
            "Effect": "Allow",
            "Principal": {"Service": "emr-serverless.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ]


@pytest.mark.parametrize(
    ("key", "writes"),
    [
        ("landing/sales/dt=2024-06-30/a.csv", False),
        ("_code/v1/spark_jobs.zip", False),
        ("_runs/reports/dag_id=x/dt=2024-06-30/report.json", False),  # the report is Airflow's
        ("warehouse/curated/sales/data/part-0.parquet", True),
        ("warehouse/curated/sales/metadata/v2.metadata.json", True),
        ("_checkpoints/clickstream_checkouts/offsets/0", True),
        ("_runs/metrics/dt=2024-06-30/graph.json", True),
        ("_runs/audits/dt=2024-06-30/b/checks.json", True),
        ("_lineage/spark/dt=2024-06-30/events.json", True),
    ],
)
def test_the_execution_role_reads_the_lake_and_writes_exactly_what_the_jobs_write(key, writes):
    obj = f"arn:aws:s3:::lake-bucket/lake/{key}"
    assert is_allowed(EXECUTION, Request("s3:GetObject", obj))
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert is_allowed(EXECUTION, Request(action, obj)) is writes, action
    assert not is_allowed(EXECUTION, Request("s3:GetObject", "arn:aws:s3:::other-bucket/lake/x"))
    assert not is_allowed(EXECUTION, Request("s3:PutObject", "arn:aws:s3:::other-bucket/lake/warehouse/x"))


def test_the_execution_role_writes_its_logs_under_the_log_uri_and_uses_only_the_stacks_key():
    logs = "arn:aws:s3:::lake-bucket/lake/_emr_logs/applications/00fabc123/jobs/00fjr456/stderr.gz"
    assert is_allowed(EXECUTION, Request("s3:PutObject", logs))
    assert not is_allowed(EXECUTION, Request("s3:DeleteObject", logs))  # logs are never removed by a job
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert is_allowed(EXECUTION, Request(action, KEY)), action
        other = KEY.replace("1234abcd", "9999abcd")
        assert not is_allowed(EXECUTION, Request(action, other)), action
    assert not is_allowed(EXECUTION, Request("kms:CreateGrant", KEY))


def test_the_execution_role_keeps_tables_in_the_zones_databases_and_can_do_nothing_else():
    base = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    prefix = EMR_ENV["PIPELINE_GLUE_DATABASE_PREFIX"]
    for zone in ("processed", "quarantine", "curated"):
        for action in ("glue:GetTable", "glue:CreateTable", "glue:UpdateTable"):
            assert is_allowed(EXECUTION, Request(action, f"{base}:table/{prefix}_{zone}/sales")), (
                action,
                zone,
            )
    assert not is_allowed(EXECUTION, Request("glue:GetTable", f"{base}:table/someone_elses_db/sales"))
    assert not is_allowed(EXECUTION, Request("glue:DeleteTable", f"{base}:table/{prefix}_curated/sales"))
    # nothing of EMR, IAM or the TLS certificates: the job runs need none of them
    granted = granted_actions(EXECUTION[0])
    assert {a.split(":")[0] for a in granted} == {"s3", "glue", "kms"}
    assert granted == granted_actions(INSTANCE[0])  # the cluster's nodes' actions, no more
    assert not is_allowed(EXECUTION, Request("s3:GetObject", "arn:aws:s3:::security-bucket/emr/certs.zip"))
    assert not is_allowed(EXECUTION, Request("iam:PassRole", SERVERLESS_ROLE))


def test_each_target_renders_the_roles_it_runs_with():
    assert set(documents.rendered_roles(SETTINGS, ACCOUNT)) == {
        "airflow",
        "emr-service",
        "emr-instance-profile",
    }
    serverless = documents.rendered_roles(SERVERLESS_SETTINGS, ACCOUNT)
    assert set(serverless) == {"airflow", "serverless-execution"}
    # one Airflow policy for both targets (its values follow each deployment's settings)
    sids = [[st["Sid"] for st in p["Statement"]] for p in (serverless["airflow"]["policy"], AIRFLOW[0])]
    assert sids[0] == sids[1]


# ---- what the DAGs really ask of AWS -------------------------------------------------------
JANITOR_DAG = PROJECT_ROOT / "dags" / "emr_janitor.py"


def _leaked_and_foreign_clusters(fake_aws) -> None:
    """A project cluster whose run is long gone (the janitor's work) and someone else's cluster."""
    emr = fake_aws.client("emr")
    for tags in (
        {"project": PROJECT, "dag_id": "customer_analytics_nightly", "run_id": "manual__gone"},
        {"project": "another-team"},
    ):
        emr.run_job_flow(
            Name="c",
            ReleaseLabel="emr-7.13.0",
            Instances={
                "MasterInstanceType": "m5.xlarge",
                "InstanceCount": 1,
                "KeepJobFlowAliveWhenNoSteps": True,
            },
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )


@pytest.fixture(scope="module")
def recorded(fake_aws) -> list[Request]:
    """Every authorization question of a nightly run (it creates the cluster, looks for the code
    and uploads it while a sensor defers to its trigger, then reads the step's metrics for the
    asset event), then of the janitor DAG. What the stand-in cluster itself writes (a job's
    metrics) goes into moto directly, so every recorded request is the DAG's.

    (A second run of the same date, which finds the code already there, asked exactly the same
    questions (HeadObject is s3:GetObject whether the object exists or not) and no other: it was
    one run more for nothing, and is not repeated.)"""
    slow = lambda name: 4.0 if "|stock_daily|" in name else 0.2  # noqa: E731
    fake_aws.forget_requests()  # the fixture's own bucket creation is not the DAG's
    with EmrStepPlayer(fake_aws, delay=slow):
        run = run_pipeline_dag("nightly", "2024-06-28", {"outputs": ["stock_daily"]})
    assert run.state == "success", run.task_states
    requests = fake_aws.requests()
    if JANITOR_DAG.exists():
        _leaked_and_foreign_clusters(fake_aws)
        fake_aws.forget_requests()
        janitor = run_dag_test(load_dag(JANITOR_DAG), None, {})
        assert str(janitor.state) == "success"
        requests += fake_aws.requests()
    clusters = fake_aws.emr_backend().clusters.items()
    tags = {cid: {t["Key"]: t["Value"] for t in c.tags} for cid, c in clusters}
    return [q for r in requests for q in authorization_questions(r, tags)]


@pytest.mark.slow
def test_every_aws_call_of_the_dags_is_allowed_by_the_airflow_role(recorded):
    actions = {q.action for q in recorded}
    # the run really exercised the paths the policy is about
    assert {
        "elasticmapreduce:RunJobFlow",
        "elasticmapreduce:AddJobFlowSteps",
        "elasticmapreduce:DescribeStep",
        "elasticmapreduce:TerminateJobFlows",
        "iam:PassRole",
        "s3:PutObject",
        "s3:GetObject",  # the step's metrics: the asset event's snapshot
        "cloudwatch:PutMetricData",  # the run report's metrics
    } <= actions
    # the jobs register their tables (Iceberg's Glue catalog): Airflow makes no Glue call at all
    assert not {a for a in actions if a.startswith("glue:")}
    denied = sorted({(q.action, q.resource) for q in recorded if not is_allowed(AIRFLOW, q)})
    assert denied == [], "\n".join(map(str, denied))


@pytest.mark.slow
@pytest.mark.skipif(not JANITOR_DAG.exists(), reason="no janitor DAG in this tree")
def test_the_janitor_lists_every_cluster_but_terminates_only_the_projects(recorded):
    actions = {q.action for q in recorded}
    assert {"elasticmapreduce:ListClusters", "elasticmapreduce:TerminateJobFlows"} <= actions
    terminations = [q for q in recorded if q.action == "elasticmapreduce:TerminateJobFlows"]
    assert all(q.context.get("aws:ResourceTag/project") == PROJECT for q in terminations)


@pytest.mark.slow
def test_the_airflow_role_grants_nothing_the_dags_do_not_use(recorded):
    used = {q.action for q in recorded}
    unexplained = (
        granted_actions(AIRFLOW[0])
        - used
        - set(NOT_EXERCISED)
        - PREFLIGHT_ONLY
        - KINESIS_LANDING
        - SERVERLESS_TARGET
    )
    assert unexplained == set(), sorted(used)


@pytest.mark.slow
def test_the_recorded_calls_would_be_denied_on_a_cluster_without_the_project_tag(recorded):
    on_clusters = [q for q in recorded if q.resource.startswith("arn:aws:elasticmapreduce:")]
    assert on_clusters
    for q in on_clusters:
        if q.action == "elasticmapreduce:DescribeCluster":
            continue  # read-only, any cluster of the account (the janitor reads tags with it)
        assert not is_allowed(AIRFLOW, Request(q.action, q.resource, {"aws:ResourceTag/project": "x"}))


def test_the_command_prints_each_roles_rendered_documents(monkeypatch, capsys):
    from scripts.render_iam_policies import main

    env = {
        **EMR_ENV,
        "PIPELINE_AWS_REGION": REGION,
        "PIPELINE_EMR_KMS_KEY_ARN": KEY,
        "PIPELINE_EMR_TLS_CERTIFICATES_URI": "s3://security-bucket/emr/certs.zip",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["--account", ACCOUNT]) == 0
    assert json.loads(capsys.readouterr().out) == documents.rendered_roles(SETTINGS, ACCOUNT)
    monkeypatch.delenv("PIPELINE_EMR_KMS_KEY_ARN")
    assert main(["--account", ACCOUNT]) == 2
    assert "PIPELINE_EMR_KMS_KEY_ARN" in capsys.readouterr().err
