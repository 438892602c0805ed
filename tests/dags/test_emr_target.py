"""The emr target's orchestration end to end: dag.test() against moto, asserting on what the DAG asked
of AWS.

moto runs as a server in this process so the deferrable sensors' triggers (aiobotocore) reach
it too. The EmrStepPlayer plays the cluster: each step the DAG added completes (leaving what a
job that committed nothing leaves), so what is asserted here is the cluster request, the steps'
order and arguments, the code upload, the lineage settings and the run's metrics published. The
same nightly with every step run for real (local Spark against moto's S3 and Glue: the tables in
Glue, pyiceberg reading the local run's rows, lineage on S3, assets, the steps' durations and row
counts in CloudWatch, the dashboard and alarms, a failed audit on that lake) is
tests/dags/test_emr_spark.py (ops: `make test-ops`). A failed step and a backfill:
tests/dags/test_emr_runs.py.
"""

from __future__ import annotations

import json

import pytest

from include import pipeline as P
from include.emr_release import OPENLINEAGE_SPARK_JAR
from include.packaging import build_bundle
from include.settings import PROJECT_ROOT
from plugins.emr_naming import PROJECT, parse_emr_step_name, safe_name
from spark_jobs.paths import audit_uri
from tests.harness.airflow_home import OPENLINEAGE_EVENTS
from tests.harness.aws_fakes import spark_submit
from tests.harness.emr_runs import EmrRun, published_metrics, report_of, run_emr, step_job_args
from tests.harness.nightly import NIGHTLY_DS as DS
from tests.harness.nightly import NIGHTLY_HISTORY_START as HISTORY_START
from tests.harness.settings import EMR_ENV

pytestmark = pytest.mark.slow

LAKE = EMR_ENV["PIPELINE_LAKE"]


@pytest.fixture(scope="module")
def nightly(fake_aws) -> EmrRun:
    # segments keeps running until its sensor's trigger polled it: that sensor certainly deferred
    return run_emr(
        fake_aws,
        "nightly",
        DS,
        {"cluster_profile": "dev", "ingest_start_ds": HISTORY_START},
        hold=lambda name: "|segments|" in name,
    )


def _airflow_events(run_id: str) -> list[dict]:
    """Airflow's OpenLineage provider's events of one DAG run's tasks (the session's file)."""
    events = [json.loads(line) for line in OPENLINEAGE_EVENTS.read_text().splitlines()]
    return [
        e for e in events
        if (e["run"].get("facets") or {}).get("airflow", {}).get("dagRun", {}).get("run_id") == run_id
    ]  # fmt: skip


def test_nightly_run_succeeds_and_terminates_its_cluster(nightly):
    assert nightly.run.state == "success", nightly.run.task_states
    assert len(nightly.run_job_flow) == 1
    assert list(nightly.clusters.values()) == ["TERMINATED"]
    assert nightly.run.task_states["terminate_cluster"] == "success"


def test_nightly_asks_for_the_dev_cluster_with_tags_concurrency_and_idle_timeout(nightly):
    req = nightly.run_job_flow[0]
    # the default release, Spark 4.1 on Scala 2.13; PySpark on the nodes' Python 3.11
    assert req["ReleaseLabel"] == "emr-spark-8.1.0"
    assert req["Applications"] == [{"Name": "Spark"}]
    by_class = {c["Classification"]: c for c in req["Configurations"]}
    assert by_class["iceberg-defaults"]["Properties"] == {"iceberg.enabled": "true"}
    assert by_class["spark-env"]["Configurations"][0]["Properties"] == {
        "PYSPARK_PYTHON": "/usr/bin/python3.11"
    }
    spark = by_class["spark-defaults"]["Properties"]
    assert spark["spark.executorEnv.PYSPARK_PYTHON"] == "/usr/bin/python3.11"
    assert spark["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == "/usr/bin/python3.11"
    assert spark["spark.sql.ansi.enabled"] == "true"
    assert req["LogUri"] == f"{LAKE}/_emr_logs/"
    assert req["StepConcurrencyLevel"] > 1
    assert req["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    inst = req["Instances"]
    assert inst["Ec2SubnetId"] == EMR_ENV["PIPELINE_EMR_SUBNET_ID"]
    assert inst["EmrManagedMasterSecurityGroup"] == EMR_ENV["PIPELINE_EMR_MASTER_SG"]
    assert inst["EmrManagedSlaveSecurityGroup"] == EMR_ENV["PIPELINE_EMR_CORE_SG"]
    assert inst["KeepJobFlowAliveWhenNoSteps"] is True
    groups = {(g["InstanceRole"], g["InstanceType"], g["InstanceCount"]) for g in inst["InstanceGroups"]}
    assert groups == {("MASTER", "m5.xlarge", 1), ("CORE", "m5.xlarge", 2)}
    tags = {t["Key"]: t["Value"] for t in req["Tags"]}
    assert tags["dag_id"] == "customer_analytics_nightly"
    assert tags["run_id"] == safe_name(nightly.run.run_id)
    assert tags["ds"] == DS
    assert tags["project"] == PROJECT


def test_nightly_adds_each_step_once_its_dependencies_completed(nightly):
    names = [parse_emr_step_name(s["Name"]) for s in nightly.added_steps]
    order = [n["step"] for n in names]
    # every step, then the audit of what they wrote to the run's branch, then its publish
    assert sorted(order[:-2]) == sorted(s.name for s in P.PIPELINE)
    assert order[-2:] == ["audit", "publish"]
    for step in P.PIPELINE:
        for dep in step.depends_on:
            assert order.index(dep) < order.index(step.name), (dep, step.name, order)
    # added one at a time, each only after what it needs had COMPLETED on the cluster
    assert all(len(call) == 1 for call in nightly.step_calls)
    assert {state for _, state in nightly.finished_steps} == {"COMPLETED"}
    full_name = {parse_emr_step_name(s["Name"])["step"]: s["Name"] for s in nightly.added_steps}
    for step in [*P.PIPELINE, P.AUDIT, P.PUBLISH]:
        depends_on = {P.AUDIT: [s.name for s in P.PIPELINE], P.PUBLISH: ["audit"]}.get(step, step.depends_on)
        for dep in depends_on:
            # on the cluster only after its dependency had ended there
            assert nightly.seen_round[full_name[step.name]] > nightly.ended_round[full_name[dep]], (
                dep,
                step.name,
            )
    assert {(n["dag_id"], n["ds"], n["run_id"]) for n in names} == {
        ("customer_analytics_nightly", DS, safe_name(nightly.run.run_id))
    }
    # the deferrable sensors polled EMR from their triggers (aiobotocore), not from a worker
    assert nightly.async_polls, "no sensor deferred to its trigger"


def test_nightly_step_arguments_come_from_the_logical_date(nightly):
    run = ["--run-id", nightly.run.run_id, "--branch", P.audit_branch(nightly.run.run_id)]
    by_name = {parse_emr_step_name(s["Name"])["step"]: s for s in nightly.added_steps}
    for step in nightly.added_steps:
        assert step["ActionOnFailure"] == "CONTINUE"
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    for spec in P.PIPELINE:  # each step writes the run's branch
        dates = ["--start-ds", HISTORY_START, "--end-ds", DS] if spec.ranged else ["--ds", DS]
        assert step_job_args(by_name[spec.name]) == [spec.job, *spec.options, *dates, "--lake", LAKE, *run]
    branch = P.audit_branch(nightly.run.run_id)
    checks = audit_uri(LAKE, DS, branch, "checks")  # written by the plan task (below)
    assert checks.startswith(f"{LAKE}/_runs/audits/dt={DS}/audit_")
    assert checks.endswith(".checks.json")
    assert checks.removeprefix("s3://lake-bucket/") in nightly.s3_objects
    audit = ["audit", "--ds", DS, "--lake", LAKE, *run, "--checks-uri", checks]
    assert step_job_args(by_name["audit"]) == audit
    assert step_job_args(by_name["publish"]) == ["publish", "--ds", DS, "--lake", LAKE, *run]


def test_nightly_uploads_the_versioned_code_the_steps_run(nightly):
    bundle = build_bundle()
    zip_key = f"lake/_code/{bundle.version}/{bundle.zip_name}"
    entry_key = f"lake/_code/{bundle.version}/spark_jobs_main.py"
    assert nightly.s3_objects[zip_key] == bundle.zip_bytes
    assert nightly.s3_objects[entry_key] == bundle.entrypoint_bytes
    assert OPENLINEAGE_SPARK_JAR == "openlineage-spark_2.13-1.53.0.jar"  # Spark 4's Scala
    jar_key = f"lake/_code/jars/{OPENLINEAGE_SPARK_JAR}"
    assert (
        nightly.s3_objects[jar_key] == (PROJECT_ROOT / ".cache" / "jars" / OPENLINEAGE_SPARK_JAR).read_bytes()
    )
    for step in nightly.added_steps:
        submit = spark_submit(step["HadoopJarStep"]["Args"])
        assert submit.py_files == f"s3://lake-bucket/{zip_key}"
        assert submit.entrypoint == f"s3://lake-bucket/{entry_key}"
        assert submit.jars == f"s3://lake-bucket/{jar_key}"  # the OpenLineage listener


def test_every_step_carries_the_lineage_settings_and_its_step_task_as_parent(nightly):
    """The provider's injection: the step's task (it adds the step) is the Spark job's parent run, the
    DAG run its root (the same ids Airflow's provider gives those runs in its own events)."""
    tasks = {e["job"]["name"]: e for e in _airflow_events(nightly.run.run_id)}
    for step in nightly.added_steps:
        conf = spark_submit(step["HadoopJarStep"]["Args"]).conf
        name = parse_emr_step_name(step["Name"])["step"]
        assert conf["spark.openlineage.transport.type"] == "file"
        assert conf["spark.openlineage.namespace"] == "customer_market_analytics"
        assert conf["spark.openlineage.parentJobNamespace"] == "customer_market_analytics"
        assert conf["spark.openlineage.parentJobName"] == f"customer_analytics_nightly.run_{name}"
        task = tasks[f"customer_analytics_nightly.run_{name}"]
        assert conf["spark.openlineage.parentRunId"] == task["run"]["runId"]
        assert conf["spark.openlineage.rootParentJobName"] == "customer_analytics_nightly"
        assert conf["spark.openlineage.rootParentRunId"] == task["run"]["facets"]["parent"]["run"]["runId"]


def test_the_nightly_publishes_its_run_and_step_metrics_to_cloudwatch(nightly, fake_aws):
    """Read back from moto's CloudWatch with ListMetrics and GetMetricData. (The steps' durations and
    row counts, which played steps do not leave, against the landing files and the tables in Glue,
    and the stack's dashboard and alarms watching them: tests/dags/test_emr_spark.py.)"""
    report = report_of(nightly, "customer_analytics_nightly", DS)
    assert report["cloudwatch"]["published"] is True, report["cloudwatch"]
    got = published_metrics(fake_aws, "CustomerMarketAnalytics", report)
    assert got[("RunSucceeded", None, None)] == [1.0]
    assert got[("RunFailed", None, None)] == [0.0]
    assert got[("RunDurationSeconds", None, None)] == [report["run"]["duration_seconds"]]
    assert report["run"]["duration_seconds"] > 0
    assert ("SecondsPastDeadline", None, None) not in got  # a manual run has no deadline
    assert got[("EstimatedCost", None, None)] == [report["emr_cluster"]["estimated_cost"]]
    for step in [*(s.name for s in P.PIPELINE), "audit", "publish"]:
        assert got[("StepFailed", step, None)] == [0.0], step
    # exactly what the report says it published
    assert len(got) == len(report["cloudwatch"]["metric_data"])
