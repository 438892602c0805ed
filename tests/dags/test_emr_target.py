"""The emr target end to end: dag.test() against moto, asserting on what the DAG asked of AWS.

moto runs as a server in this process so the deferrable sensors' triggers (aiobotocore) reach
it too; EmrStepPlayer completes or fails the steps. Then the step commands the DAG sent are run
for real with local Spark on a lake directory: what the cluster would run must work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from include import pipeline as P
from include.packaging import build_bundle
from tests.dags.aws_fakes import EmrStepPlayer, FakeAws
from tests.dags.conftest import EMR_ENV
from tests.dags.dag_runs import DagRunRecord, rows_written, run_pipeline_dag

pytestmark = pytest.mark.slow

LAKE = EMR_ENV["PIPELINE_LAKE"]
DS = "2024-06-28"  # a Friday: the market was open, so stock_daily has rows too
HISTORY_START = "2024-06-26"


@dataclass
class EmrRun:
    """A finished dag.test() run and a snapshot of what AWS holds and was asked afterwards."""

    run: DagRunRecord
    run_job_flow: list[dict]
    added_steps: list[dict]  # every step of every AddJobFlowSteps call, in submission order
    step_calls: list[list[dict]]  # the AddJobFlowSteps calls themselves
    clusters: dict[str, str]  # cluster id -> state
    s3_objects: dict[str, bytes]
    glue: dict[str, dict[str, Any]]  # table -> {"table": ..., "partitions": [...]}
    async_polls: list[str]  # user agents of the DescribeStep/ListSteps calls made by aiobotocore
    finished_steps: list[tuple[str, str]]
    seen_round: dict[str, int]  # step name -> player round it was first seen on the cluster
    ended_round: dict[str, int]  # step name -> player round it ended


def snapshot(aws: FakeAws, run: DagRunRecord, player: EmrStepPlayer) -> EmrRun:
    s3 = aws.s3
    objects = {}
    for obj in s3.list_objects_v2(Bucket="lake-bucket").get("Contents", []):
        objects[obj["Key"]] = s3.get_object(Bucket="lake-bucket", Key=obj["Key"])["Body"].read()
    glue, db = aws.client("glue"), EMR_ENV["PIPELINE_GLUE_DATABASE_PREFIX"] + "_curated"
    tables = {}
    if any(d["Name"] == db for d in glue.get_databases()["DatabaseList"]):
        for table in glue.get_tables(DatabaseName=db)["TableList"]:
            parts = glue.get_partitions(DatabaseName=db, TableName=table["Name"])["Partitions"]
            tables[table["Name"]] = {"table": table, "partitions": parts}
    emr = aws.client("emr")
    clusters = {c["Id"]: c["Status"]["State"] for c in emr.list_clusters()["Clusters"]}
    step_calls = [body["Steps"] for body in aws.calls("ElasticMapReduce.AddJobFlowSteps")]
    async_polls = [
        r
        for r in aws.requests()
        if r.action in ("ElasticMapReduce.DescribeStep", "ElasticMapReduce.ListSteps")
    ]
    return EmrRun(
        run=run,
        run_job_flow=aws.calls("ElasticMapReduce.RunJobFlow"),
        added_steps=[step for call in step_calls for step in call],
        step_calls=step_calls,
        clusters=clusters,
        s3_objects=objects,
        glue=tables,
        async_polls=[r.user_agent for r in async_polls if "aiobotocore" in r.user_agent],
        finished_steps=list(player.finished),
        seen_round=dict(player.seen_round),
        ended_round=dict(player.ended_round),
    )


def run_emr(aws: FakeAws, which: str, ds: str | None, conf: dict, **player: Any) -> EmrRun:
    aws.reset()
    aws.s3.create_bucket(Bucket="lake-bucket")
    with EmrStepPlayer(aws, **player) as emr:
        run = run_pipeline_dag(which, ds, conf)
    return snapshot(aws, run, emr)


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


def _job_args(step: dict) -> list[str]:
    """What follows the entrypoint in a command-runner spark-submit step: the job's command line."""
    args = step["HadoopJarStep"]["Args"]
    assert args[:5] == ["spark-submit", "--deploy-mode", "cluster", "--py-files", args[4]]
    return args[6:]


def test_nightly_run_succeeds_and_terminates_its_cluster(nightly):
    assert nightly.run.state == "success", nightly.run.task_states
    assert len(nightly.run_job_flow) == 1
    assert list(nightly.clusters.values()) == ["TERMINATED"]
    assert nightly.run.task_states["terminate_cluster"] == "success"


def test_nightly_asks_for_the_dev_cluster_with_tags_concurrency_and_idle_timeout(nightly):
    req = nightly.run_job_flow[0]
    assert req["ReleaseLabel"].startswith("emr-7.")
    assert {"Name": "Spark"} in req["Applications"]
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
    assert tags["run_id"] == P.safe_name(nightly.run.run_id)
    assert tags["ds"] == DS
    assert tags["project"] == P.PROJECT


def test_nightly_adds_each_step_once_its_dependencies_completed(nightly):
    names = [P.parse_emr_step_name(s["Name"]) for s in nightly.added_steps]
    order = [n["step"] for n in names]
    assert sorted(order) == sorted(s.name for s in P.PIPELINE)
    for step in P.PIPELINE:
        for dep in step.depends_on:
            assert order.index(dep) < order.index(step.name), (dep, step.name, order)
    # added one at a time, each only after what it needs had COMPLETED on the cluster
    assert all(len(call) == 1 for call in nightly.step_calls)
    assert {state for _, state in nightly.finished_steps} == {"COMPLETED"}
    full_name = {P.parse_emr_step_name(s["Name"])["step"]: s["Name"] for s in nightly.added_steps}
    for step in P.PIPELINE:
        for dep in step.depends_on:
            # on the cluster only after its dependency had ended there
            assert nightly.seen_round[full_name[step.name]] > nightly.ended_round[full_name[dep]], (
                dep,
                step.name,
            )
    assert {(n["dag_id"], n["ds"], n["run_id"]) for n in names} == {
        ("customer_analytics_nightly", DS, P.safe_name(nightly.run.run_id))
    }
    # the deferrable sensors polled EMR from their triggers (aiobotocore), not from a worker
    assert nightly.async_polls, "no sensor deferred to its trigger"


def test_nightly_step_arguments_come_from_the_logical_date(nightly):
    for step in nightly.added_steps:
        name = P.parse_emr_step_name(step["Name"])["step"]
        args = _job_args(step)
        spec = P.STEPS[name]
        dates = ["--start-ds", HISTORY_START, "--end-ds", DS] if spec.ranged else ["--ds", DS]
        assert args == [spec.job, *spec.options, *dates, "--lake", LAKE]
        assert step["ActionOnFailure"] == "CONTINUE"
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"


def test_nightly_uploads_the_versioned_code_the_steps_run(nightly):
    bundle = build_bundle()
    zip_key = f"lake/_code/{bundle.version}/{bundle.zip_name}"
    entry_key = f"lake/_code/{bundle.version}/spark_jobs_main.py"
    assert nightly.s3_objects[zip_key] == bundle.zip_bytes
    assert nightly.s3_objects[entry_key] == bundle.entrypoint_bytes
    for step in nightly.added_steps:
        args = step["HadoopJarStep"]["Args"]
        assert args[4] == f"s3://lake-bucket/{zip_key}"
        assert args[5] == f"s3://lake-bucket/{entry_key}"


def test_nightly_registers_every_curated_output_in_glue_with_its_partition(nightly):
    assert set(nightly.glue) == set(P.OUTPUTS)
    for output, found in nightly.glue.items():
        table = found["table"]
        assert table["StorageDescriptor"]["Location"] == f"{LAKE}/curated/{output}"
        assert table["PartitionKeys"][0] == {"Name": "dt", "Type": "string"}
        locations = sorted(p["StorageDescriptor"]["Location"] for p in found["partitions"])
        if output == "customer_segments":
            assert locations == [f"{LAKE}/curated/{output}/dt={DS}/segment={k}" for k in range(3)]
        else:
            assert locations == [f"{LAKE}/curated/{output}/dt={DS}"]
    features = {
        c["Name"]: c["Type"]
        for c in nightly.glue["customer_features"]["table"]["StorageDescriptor"]["Columns"]
    }
    assert features["features"] == "array<double>"
    assert features["lifetime_value"] == "decimal(22,2)"
    assert features["last_purchase_date"] == "date"
    segments = nightly.glue["customer_segments"]["table"]
    assert "segment" not in {c["Name"] for c in segments["StorageDescriptor"]["Columns"]}
    assert segments["PartitionKeys"][1] == {"Name": "segment", "Type": "int"}


def test_nightly_marks_every_curated_output_asset(nightly):
    assert nightly.run.asset_events == sorted(f"{LAKE}/curated/{out}" for out in P.OUTPUTS)


def test_a_failed_step_fails_the_run_and_the_cluster_is_still_terminated(fake_aws):
    failed = run_emr(
        fake_aws,
        "nightly",
        "2024-07-01",
        {"outputs": ["stock_daily"]},
        fail=lambda name: "|stock_daily|" in name,
    )
    assert failed.run.state == "failed"
    # only what stock_daily needs was submitted
    assert [P.parse_emr_step_name(s["Name"])["step"] for s in failed.added_steps] == [
        "ingest_stock_ticks",
        "stock_daily",
    ]
    states = failed.run.task_states
    assert states["wait_stock_daily"] == "failed"
    assert states["register_stock_daily"] == "upstream_failed"
    assert states["add_graph"] == "skipped"
    assert states["terminate_cluster"] == "success"
    assert list(failed.clusters.values()) == ["TERMINATED"]
    assert "stock_daily" not in failed.glue or not failed.glue["stock_daily"]["partitions"]


def test_a_backfill_runs_the_whole_range_on_one_prod_cluster_date_after_date(fake_aws):
    dates = ["2024-06-29", "2024-06-30"]
    backfill = run_emr(
        fake_aws, "backfill", None, {"start_ds": dates[0], "end_ds": dates[1], "cluster_profile": "prod"}
    )
    assert backfill.run.state == "success", backfill.run.task_states
    assert len(backfill.run_job_flow) == 1
    assert list(backfill.clusters.values()) == ["TERMINATED"]
    req = backfill.run_job_flow[0]
    fleets = {f["InstanceFleetType"]: f for f in req["Instances"]["InstanceFleets"]}
    assert set(fleets) == {"MASTER", "CORE", "TASK"}
    assert fleets["TASK"]["TargetSpotCapacity"] > 0
    assert req["ManagedScalingPolicy"]["ComputeLimits"]["MaximumCapacityUnits"] > 5

    # first every dataset's history in one ranged step each, side by side
    first = backfill.step_calls[0]
    assert sorted(_job_args(s)[2] for s in first) == sorted(
        d for d in ("customers", "sales", "referrals", "stock_ticks", "clickstream")
    )
    assert all(_job_args(s)[3:7] == ["--start-ds", dates[0], "--end-ds", dates[1]] for s in first)
    # then each date's steps, dates in order, a step's dependencies in earlier batches
    seen: list[tuple[str, str]] = []
    for batch in backfill.step_calls[1:]:
        here = [
            (P.parse_emr_step_name(s["Name"])["ds"], P.parse_emr_step_name(s["Name"])["step"]) for s in batch
        ]
        assert len({ds for ds, _ in here}) == 1
        for ds, step in here:
            assert all((ds, dep) in seen for dep in P.STEPS[step].depends_on if not P.STEPS[dep].ranged)
            assert _job_args(next(s for s in batch if f"|{step}|" in s["Name"]))[-4:-2] == ["--ds", ds]
        seen.extend(here)
    daily = [s.name for s in P.PIPELINE if not s.ranged]
    assert seen == [(ds, step) for ds in dates for step in _by_wave(daily)]
    for output, found in backfill.glue.items():
        assert {p["Values"][0] for p in found["partitions"]} == set(dates), output
    assert set(backfill.glue) == set(P.OUTPUTS)


def _by_wave(names: list[str]) -> list[str]:
    return [s.name for wave in P.waves([P.STEPS[n] for n in names]) for s in wave]


# The steps' own entrypoint, run the way spark-submit would, for each command in one Python
# process (one JVM: the steps share nothing but the lake, so this only saves start-up time).
REPLAY = """
import json, runpy, sys
entrypoint, commands = sys.argv[1], json.loads(sys.argv[2])
for args in commands:
    sys.argv = [entrypoint, *args]
    try:
        runpy.run_path(entrypoint, run_name="__main__")
    except SystemExit as exc:
        if exc.code:
            print("REPLAY FAILED:", args, flush=True)
            raise
"""


def test_the_commands_sent_to_emr_run_with_local_spark_on_a_lake_directory(nightly, tmp_path):
    from include.demo_data import generate
    from include.lake_summary import read_partition

    lake_dir, code_dir, empty = tmp_path / "lake", tmp_path / "code", tmp_path / "empty"
    code_dir.mkdir()
    empty.mkdir()
    generate(str(lake_dir), HISTORY_START, DS, scale=0.002, seed=3)
    # the code exactly as the steps fetch it from S3
    py_files, entrypoint = nightly.added_steps[0]["HadoopJarStep"]["Args"][4:6]
    zip_path, entry_path = code_dir / Path(py_files).name, code_dir / Path(entrypoint).name
    zip_path.write_bytes(nightly.s3_objects[py_files.removeprefix("s3://lake-bucket/")])
    entry_path.write_bytes(nightly.s3_objects[entrypoint.removeprefix("s3://lake-bucket/")])
    # the S3 lake mapped to the directory
    commands = [[lake_dir.as_uri() if a == LAKE else a for a in _job_args(s)] for s in nightly.added_steps]

    env = {
        **os.environ,
        "PYTHONPATH": str(zip_path),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_MASTER": "local[2]",
    }
    proc = subprocess.run(
        [sys.executable, "-c", REPLAY, str(entry_path), json.dumps(commands)],
        cwd=empty,  # nothing of the project importable but the zip
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    metrics = [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("SPARK_JOBS_METRICS ")
    ]
    assert [m["job"] for m in metrics] == [c[0] for c in commands]
    rows_out = {out: n for m in metrics for out, n in m.get("rows_out", {}).items()}
    for output in P.OUTPUTS:
        df = read_partition(lake_dir, "curated", output, DS)
        assert df is not None, f"no curated/{output}/dt={DS}"
        assert len(df) > 0, output
        assert rows_out[output] == rows_written(lake_dir, output, DS), output
