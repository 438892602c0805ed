"""The emr-serverless target end to end: dag.test() against moto's emr-serverless backend, asserting
on what the DAG asked of AWS. A JobRunPlayer (tests/harness/serverless_fakes.py) ends each job run
as the service would, SUCCESS or FAILED, and leaves the metrics record a job that committed nothing
leaves (the job runs really run with local Spark in test_serverless_spark.py, make test-ops).
The nightly, a failed step of a subset and bad params run in make test; the 3-date backfill in
make test-ops (the repair: tests/reliability/test_serverless_repair.py, make test-ops).
"""

from __future__ import annotations

import itertools
import shlex

import networkx as nx
import pytest

from include import pipeline as P
from include.emr_release import OPENLINEAGE_SPARK_JAR
from include.packaging import build_bundle
from include.serverless_profiles import ICEBERG_RUNTIME, PROFILES
from plugins.emr_naming import PROJECT, emr_step_name, parse_emr_step_name, safe_name
from spark_jobs.catalog import catalog_conf
from tests.harness.dag_runs import run_pipeline_dag
from tests.harness.serverless_runs import ServerlessRun, run_serverless
from tests.harness.settings import SERVERLESS_ENV

pytestmark = pytest.mark.slow

LAKE = SERVERLESS_ENV["PIPELINE_LAKE"]
DS = "2024-07-01"
NIGHTLY = "customer_analytics_nightly"
KMS = SERVERLESS_ENV["PIPELINE_EMR_KMS_KEY_ARN"]


@pytest.fixture(scope="module")
def aws(fake_aws, module_monkeypatch):
    for key, value in SERVERLESS_ENV.items():
        module_monkeypatch.setenv(key, value)
    return fake_aws


@pytest.fixture(scope="module")
def nightly(aws) -> ServerlessRun:
    # segments keeps running until its trigger polled it: that task certainly deferred
    return run_serverless(aws, "nightly", DS, {"cluster_profile": "dev"}, hold=lambda n: "|segments|" in n)


def _spec_graph() -> nx.DiGraph:
    """The spec's dependencies (include/pipeline.py), the audit after every step, publish after it."""
    graph = nx.DiGraph()
    for step in P.PIPELINE:
        graph.add_node(step.name)
        graph.add_edges_from((dep, step.name) for dep in step.depends_on)
        graph.add_edge(step.name, P.AUDIT.name)
    graph.add_edge(P.AUDIT.name, P.PUBLISH.name)
    return graph


def _submit(request: dict) -> tuple[dict[str, str], dict[str, str]]:
    """sparkSubmitParameters taken apart: (options, --conf properties)."""
    params = shlex.split(request["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])
    pairs = list(zip(params[::2], params[1::2], strict=True))
    return {k: v for k, v in pairs if k != "--conf"}, dict(v.split("=", 1) for k, v in pairs if k == "--conf")


def test_the_nightly_succeeds_on_one_application_created_for_it_and_deleted_after(nightly):
    assert nightly.run.state == "success", nightly.run.task_states
    assert len(nightly.create_application) == 1
    assert list(nightly.applications.values()) == ["TERMINATED"]
    states = nightly.run.task_states
    assert (states["create_application"], states["delete_application"]) == ("success", "success")
    # the teardown cancelled nothing, stopped the application, then deleted it
    ends = [a for a in nightly.actions if a in ("CancelJobRun", "StopApplication", "DeleteApplication")]
    assert ends == ["StopApplication", "DeleteApplication"]
    assert sorted(nightly.run.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)


def test_the_application_is_the_dev_profiles_in_the_subnet_tagged_with_the_run(nightly):
    (req,) = nightly.create_application
    assert (req["releaseLabel"], req["type"], req["architecture"]) == ("emr-spark-8.1.0", "SPARK", "X86_64")
    assert req["networkConfiguration"] == {
        "subnetIds": [SERVERLESS_ENV["PIPELINE_EMR_SUBNET_ID"]],
        "securityGroupIds": [SERVERLESS_ENV["PIPELINE_SERVERLESS_SECURITY_GROUP"]],
    }
    assert req["initialCapacity"] == PROFILES["dev"]["initialCapacity"]
    assert req["initialCapacity"]["EXECUTOR"] == {
        "workerCount": 2,
        "workerConfiguration": {"cpu": "4 vCPU", "memory": "16 GB"},
    }
    assert req["maximumCapacity"] == {"cpu": "16 vCPU", "memory": "64 GB", "disk": "200 GB"}
    assert req["autoStopConfiguration"] == {"enabled": True, "idleTimeoutMinutes": 15}
    assert req["tags"] == {
        "project": PROJECT,
        "dag_id": NIGHTLY,
        "run_id": safe_name(nightly.run.run_id),
        "ds": DS,
        "cluster_profile": "dev",
    }
    assert len(req["name"]) <= 64


def test_one_job_run_per_step_each_started_once_its_dependencies_succeeded(nightly):
    names = [body["name"] for _, body in nightly.start_job_run]
    order = [parse_emr_step_name(n)["step"] for n in names]
    assert sorted(order) == sorted([*P.STEPS, "audit", "publish"])  # exactly one each
    assert len(set(names)) == len(names)
    assert {app for app, _ in nightly.start_job_run} == set(nightly.applications)
    graph = _spec_graph()
    assert set(graph) == set(order)
    for dep, step in graph.edges:
        assert order.index(dep) < order.index(step), (dep, step, order)
        full = {parse_emr_step_name(n)["step"]: n for n in names}
        # started only after its dependency's job run had ended
        assert nightly.seen_round[full[step]] > nightly.ended_round[full[dep]], (dep, step)
    assert {state for _, state in nightly.finished} == {"SUCCESS"}
    assert nightly.async_polled, "no step task deferred to its trigger"


def test_each_job_run_gets_what_the_clusters_steps_get(nightly):
    bundle = build_bundle()
    code = f"{LAKE}/_code/{bundle.version}"
    run_id = nightly.run.run_id
    tail = ["--run-id", safe_name(run_id), "--branch", P.audit_branch(run_id)]
    catalog = catalog_conf(LAKE, glue_prefix=SERVERLESS_ENV["PIPELINE_GLUE_DATABASE_PREFIX"])
    for _, req in nightly.start_job_run:
        step = parse_emr_step_name(req["name"])["step"]
        assert req["name"] == emr_step_name(NIGHTLY, run_id, DS, step)
        assert req["executionRoleArn"] == SERVERLESS_ENV["PIPELINE_SERVERLESS_EXECUTION_ROLE"]
        submit = req["jobDriver"]["sparkSubmit"]
        assert submit["entryPoint"] == f"{code}/spark_jobs_main.py"
        args = submit["entryPointArguments"]
        assert args[: args.index("--lake") + 2][-2:] == ["--lake", LAKE]
        assert args[-4:] == tail or args[-6:-2] == tail  # the audit's --checks-uri comes last
        options, conf = _submit(req)
        assert options["--py-files"] == f"{code}/{bundle.zip_name}"
        assert options["--jars"] == f"{ICEBERG_RUNTIME},{LAKE}/_code/jars/{OPENLINEAGE_SPARK_JAR}"
        assert {k: conf[k] for k in catalog} == catalog  # Iceberg on the Glue catalog, as on EMR
        assert conf["spark.sql.catalog.lake.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
        assert conf["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == "/usr/bin/python3.11"
        assert conf["spark.executorEnv.PYSPARK_PYTHON"] == "/usr/bin/python3.11"
        assert (conf["spark.executor.cores"], conf["spark.executor.memory"]) == ("4", "14g")
        assert conf["spark.sql.ansi.enabled"] == "true"
        assert conf["spark.openlineage.namespace"] == "customer_market_analytics"
        assert (conf["spark.sql.catalog.lake.s3.sse.type"], conf["spark.sql.catalog.lake.s3.sse.key"]) == (
            "kms",
            KMS,
        )
        overrides = req["configurationOverrides"]
        assert overrides["monitoringConfiguration"]["s3MonitoringConfiguration"] == {
            "logUri": f"{LAKE}/_emr_logs/",
            "encryptionKeyArn": KMS,
        }
        # the provider's OpenLineage injection: this step's task is the Spark job's parent run
        (defaults,) = [
            c for c in overrides["applicationConfiguration"] if c["classification"] == "spark-defaults"
        ]
        assert defaults["properties"]["spark.openlineage.parentJobName"] == f"{NIGHTLY}.run_{step}"
        assert defaults["properties"]["spark.openlineage.rootParentJobName"] == NIGHTLY
        assert req["tags"] == {
            "project": PROJECT,
            "dag_id": NIGHTLY,
            "run_id": safe_name(run_id),
            "ds": DS,
            "cluster_profile": "dev",
            "step": step,
        }
        assert req["executionTimeoutMinutes"] == 360


def test_a_failed_step_of_a_subset_fails_the_run_publishes_nothing_and_deletes_the_application(aws, capfd):
    """Only what the requested outputs need runs; stock_daily's job run fails: its task fails with
    the job run's stateDetails and the driver's stderr from the S3 log URI, nothing is published,
    the application is stopped and deleted. (That a failed job run cancels the run's others still
    running: tests/reliability/test_serverless_job_runs.py, where two run at once.)"""
    outputs = ["stock_daily"]
    failed = run_serverless(aws, "nightly", DS, {"outputs": outputs}, fail=lambda n: "|stock_daily|" in n)
    log = capfd.readouterr().out
    assert failed.run.state == "failed"
    steps = [(parse_emr_step_name(name)["step"], state) for _, name, state in failed.job_runs]
    assert steps == [("ingest_stock_ticks", "SUCCESS"), ("stock_daily", "FAILED")]
    assert {s.name for s in P.steps_for(outputs)} == {"ingest_stock_ticks", "stock_daily"}
    states = failed.run.task_states
    assert states["run_stock_daily"] == "failed"
    assert (states["run_graph"], states["run_ingest_sales"]) == ("skipped", "skipped")
    assert (states["run_audit"], states["run_publish"]) == ("upstream_failed", "upstream_failed")
    assert states["register_stock_daily"] == "upstream_failed"
    assert states["delete_application"] == "success"
    assert list(failed.applications.values()) == ["TERMINATED"]
    assert failed.run.asset_events == []
    (app,) = failed.applications
    name = next(n for _, n, _ in failed.job_runs if "|stock_daily|" in n)
    assert f"EMR Serverless job run {name} (" in log
    assert f") on {app} ended FAILED" in log
    assert (
        "reason: Job failed, please check complete logs in configured logging destination. ExitCode: 1."
        in log
    )
    assert f"driver stderr: {LAKE}/_emr_logs/applications/{app}/jobs/" in log
    assert f"ValueError: the player failed {name}" in log


@pytest.mark.ops  # some 15 batches, each a deferral of dag.test(): 80 s on 2 cores, make test-ops
def test_a_three_date_backfill_runs_its_batches_in_order_on_one_application(aws):
    from include.run_plan import RunPlan

    start, end = "2024-06-29", "2024-07-01"
    backfill = run_serverless(aws, "backfill", None, {"start_ds": start, "end_ds": end})
    assert backfill.run.state == "success", backfill.run.task_states
    assert len(backfill.create_application) == 1
    assert list(backfill.applications.values()) == ["TERMINATED"]
    plan = RunPlan.from_xcom(backfill.run.xcoms["plan"]["run_plan"])
    started = [body["name"] for _, body in backfill.start_job_run]
    # exactly the planned job runs, each started once, batch after batch
    assert sorted(started) == sorted(p.emr_step_name for p in plan.steps)
    batch_of = {p.emr_step_name: p.batch for p in plan.steps}
    assert [batch_of[n] for n in started] == sorted(batch_of[n] for n in started)
    for earlier, later in itertools.pairwise(started):
        if batch_of[later] > batch_of[earlier]:  # the next batch only once the previous one ended
            assert backfill.seen_round[later] > backfill.ended_round[earlier], (earlier, later)
    parsed = [parse_emr_step_name(n) for n in started]
    ranged = {s.name for s in P.PIPELINE if s.ranged}
    assert {(p["step"], p["ds"]) for p in parsed if p["step"] in ranged} == {
        (s, f"{start}..{end}") for s in ranged
    }
    daily = [p["ds"] for p in parsed if p["step"] not in ranged and p["step"] not in ("audit", "publish")]
    assert daily == sorted(daily)  # dates in order
    assert set(daily) == {"2024-06-29", "2024-06-30", "2024-07-01"}
    assert [p["step"] for p in parsed[-2:]] == ["audit", "publish"]
    assert backfill.run.task_states["run_steps"] == "success"
    assert sorted(backfill.run.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)


def test_bad_params_fail_the_plan_and_never_reach_aws(aws):
    from tests.harness.serverless_fakes import JobRunPlayer

    aws.reset()
    with JobRunPlayer(aws):
        run = run_pipeline_dag("backfill", None, {"start_ds": "2024-07-01", "end_ds": "2024-06-30"})
    assert run.state == "failed"
    assert run.task_states["plan"] == "failed"
    assert run.task_states["create_application"] in ("upstream_failed", "skipped")
    assert [r.action or f"{r.service} {r.method}" for r in aws.requests()] == []


def test_the_run_report_lists_the_job_runs_as_it_lists_steps(nightly):
    from include.lake_files import report_uri

    report = nightly.reports[report_uri(LAKE, NIGHTLY, DS).removeprefix("s3://lake-bucket/")]
    assert (report["target"], report["state"]) == ("emr-serverless", "success")
    ((app, state),) = nightly.applications.items()
    (listed,) = report["emr_serverless"]["applications"]
    assert (listed["attempt"], listed["application_id"], listed["state"]) == (1, app, state)
    started = {body["name"] for _, body in nightly.start_job_run}
    assert [r["name"] for r in listed["job_runs"]] == [n for _, n, _ in nightly.job_runs]
    assert {r["name"] for r in listed["job_runs"]} == started
    for row in listed["job_runs"]:
        assert (row["state"], row["application_id"], row["attempt"]) == ("SUCCESS", app, 1)
        assert row["step"] == parse_emr_step_name(row["name"])["step"]
        assert (
            row["driver_stderr"]
            == f"{LAKE}/_emr_logs/applications/{app}/jobs/{row['id']}/SPARK_DRIVER/stderr.gz"
        )
        assert set(row["billed_resource_utilization"]) == {"vCPUHour", "memoryGBHour", "storageGBHour"}
    by_step = {r["step"]: r for r in listed["job_runs"]}
    for row in report["steps"]:  # each step's row carries its job run
        assert row["emr_step"]["id"] == by_step[row["step"]]["id"], row["step"]
        assert row["emr_step"]["state"] == "SUCCESS"
