"""The emr target on the stack of infra/: deployed into moto, its outputs are the DAG's only settings.

An account holding exactly what the template declares (tests/infra/stack.py: moto's CloudFormation
plus, by API call, what it skips) and nothing made by hand; the nightly DAG's settings are the
stack's outputs, its connection the stack's Airflow role (assumed through moto's STS). The run
passes preflight and creates its cluster with the stack's security configuration, roles and
network; every AWS call it made is judged against the Airflow role's policy as deployed.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from deployment import iam
from deployment.iam.evaluate import granted_actions, is_allowed
from include.cluster_profiles import cluster_python
from include.packaging import build_bundle
from include.settings import load_settings
from infra import documents
from infra.template import CONNECTION_VAR
from tests.harness.aws_fakes import REGION, EmrStepPlayer, FakeAws
from tests.harness.dag_runs import run_pipeline_dag
from tests.harness.iam_questions import (
    KINESIS_LANDING,
    NOT_EXERCISED,
    PREFLIGHT_ONLY,
    SERVERLESS_TARGET,
    authorization_questions,
)
from tests.infra.stack import deploy_stack

# the EMR DAG against the whole CloudFormation stack under moto: make test-ops
pytestmark = [pytest.mark.ops, pytest.mark.filterwarnings("ignore:Tried to parse AWS")]
DS = "2024-06-28"


@pytest.fixture(scope="module")
def on_stack(moto_url, module_monkeypatch, airflow_db) -> dict[str, Any]:
    aws = FakeAws(moto_url)
    module_monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # AmazonEMRServicePolicy_v2
    aws.install(module_monkeypatch)
    aws.reset()
    settings = deploy_stack(
        lambda service, region: boto3.client(service, region_name=region, endpoint_url=moto_url),
        "cma",
        REGION,
    )
    for var, value in settings.items():
        module_monkeypatch.setenv(var, value)
    # the stack's connection, pointed at moto: the DAG assumes the stack's Airflow role
    connection = json.loads(settings[CONNECTION_VAR])
    connection["extra"]["endpoint_url"] = moto_url
    module_monkeypatch.setenv(CONNECTION_VAR, json.dumps(connection))
    module_monkeypatch.setenv("PIPELINE_EMR_POLL_SECONDS", "1")
    module_monkeypatch.setenv("PIPELINE_EMR_STEP_LOG_WAIT_SECONDS", "0")  # the stand-in writes no step logs
    module_monkeypatch.setenv("PIPELINE_RETRIES", "0")  # a retry delay would stall dag.test()
    aws.forget_requests()  # deploying was the deployer's doing, not the DAG's
    with EmrStepPlayer(aws):
        run = run_pipeline_dag("nightly", DS, {"outputs": ["stock_daily"]}, xcom_tasks=("preflight",))
    clusters = aws.emr_backend().clusters.items()
    tags = {cid: {t["Key"]: t["Value"] for t in c.tags} for cid, c in clusters}
    # every recorded request is Airflow's: the stand-in cluster writes its jobs' metrics into moto
    # directly (tests/harness/aws_fakes.py), as the nodes' own requests would not be Airflow's
    requests = aws.requests()
    airflow_role = iam.role_name("airflow", REGION)
    policy = aws.client("iam").get_role_policy(RoleName=airflow_role, PolicyName="customer-market-analytics")
    return {
        "settings": settings,
        "run": run,
        "requests": requests,
        "questions": [q for r in requests for q in authorization_questions(r, tags)],
        "policy": policy["PolicyDocument"],
        "objects": {o["Key"] for o in aws.s3.list_objects_v2(Bucket=_bucket(settings)).get("Contents", [])},
    }


def _bucket(settings: dict[str, str]) -> str:
    return settings["PIPELINE_LAKE"].removeprefix("s3://").split("/")[0]


def test_the_nightly_run_passes_preflight_and_succeeds_on_the_stack(on_stack):
    run = on_stack["run"]
    assert run.state == "success", run.task_states
    assert run.task_states["preflight"] == "success"
    assert run.xcoms["preflight"] == []  # not a single finding, not even a note


def test_the_cluster_is_the_stacks(on_stack):
    settings = on_stack["settings"]
    [request] = [r.body for r in on_stack["requests"] if r.action == "ElasticMapReduce.RunJobFlow"]
    assert request["SecurityConfiguration"] == settings["PIPELINE_EMR_SECURITY_CONFIGURATION"]
    assert request["ServiceRole"] == settings["PIPELINE_EMR_SERVICE_ROLE"]
    assert request["JobFlowRole"] == settings["PIPELINE_EMR_INSTANCE_PROFILE"]
    assert request["LogUri"].startswith(settings["PIPELINE_LAKE"] + "/")
    instances = request["Instances"]
    assert instances["Ec2SubnetId"] == settings["PIPELINE_EMR_SUBNET_ID"]
    assert instances["EmrManagedMasterSecurityGroup"] == settings["PIPELINE_EMR_MASTER_SG"]
    assert instances["EmrManagedSlaveSecurityGroup"] == settings["PIPELINE_EMR_CORE_SG"]
    assert instances["ServiceAccessSecurityGroup"] == settings["PIPELINE_EMR_SERVICE_SG"]
    spark_env = next(c for c in request["Configurations"] if c["Classification"] == "spark-env")
    assert spark_env["Configurations"][0]["Properties"]["PYSPARK_PYTHON"] == cluster_python(
        request["ReleaseLabel"]
    )
    bundle = build_bundle()
    lake_prefix = settings["PIPELINE_LAKE"].removeprefix(f"s3://{_bucket(settings)}/")
    assert f"{lake_prefix}/_code/{bundle.version}/{bundle.zip_name}" in on_stack["objects"]


def test_the_dag_acted_as_the_stacks_airflow_role(on_stack):
    assumed = [
        r.body
        for r in on_stack["requests"]
        if r.service == "sts" and b"Action=AssumeRole" in (r.body if isinstance(r.body, bytes) else b"")
    ]
    role_arn = json.loads(on_stack["settings"][CONNECTION_VAR])["extra"]["role_arn"]
    assert assumed
    assert all(role_arn.replace(":", "%3A").replace("/", "%2F").encode() in body for body in assumed)


def test_every_call_of_the_run_is_allowed_by_the_deployed_airflow_policy_and_nothing_unused_is_granted(
    on_stack,
):
    questions, policy = on_stack["questions"], on_stack["policy"]
    used = {q.action for q in questions}
    assert used >= PREFLIGHT_ONLY  # preflight really read every piece
    assert {"elasticmapreduce:RunJobFlow", "iam:PassRole", "s3:PutObject"} <= used
    denied = sorted({(q.action, q.resource) for q in questions if not is_allowed([policy], q)})
    assert denied == [], "\n".join(map(str, denied))
    # (the clickstream's Kinesis grants: used by tests/dags/test_kinesis_clickstream.py's runs)
    assert granted_actions(policy) - used - set(NOT_EXERCISED) - KINESIS_LANDING - SERVERLESS_TARGET == set()
    # the deployed policy is deployment/iam's, rendered for the stack's settings
    rendered = documents.rendered_roles(load_settings(on_stack["settings"]), "123456789012")
    assert policy == rendered["airflow"]["policy"]
