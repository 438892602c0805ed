"""EMR DAG runs that need no lake of their own: a failed step and a backfill, under moto.

The stand-in cluster (EmrStepPlayer) only plays the steps: each ends as the test says and leaves
the metrics record a job would, so these runs are about what the DAG asks of AWS and in which
order, and that the cluster is terminated whatever happened.
"""

from __future__ import annotations

import html
import json

import pytest

from include import pipeline as P
from include.settings import PROJECT_ROOT
from plugins.emr_naming import parse_emr_step_name
from tests.harness.aws_fakes import spark_submit
from tests.harness.emr_runs import EmrRun, run_emr, step_job_args
from tests.harness.settings import EMR_ENV

pytestmark = pytest.mark.slow

LAKE = EMR_ENV["PIPELINE_LAKE"]


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
    assert [parse_emr_step_name(s["Name"])["step"] for s in failed.added_steps] == [
        "ingest_stock_ticks",
        "stock_daily",
    ]
    states = failed.run.task_states
    assert states["run_stock_daily"] == "failed"
    assert states["register_stock_daily"] == "upstream_failed"
    assert states["run_graph"] == "skipped"
    assert states["terminate_cluster"] == "success"
    assert list(failed.clusters.values()) == ["TERMINATED"]
    assert failed.run.asset_events == []  # nothing new to announce
    _the_report_page_is_on_s3_beside_the_json(failed, "2024-07-01", "stock_daily")


def test_emr_7_stays_selectable_spark_3_5_with_the_scala_2_12_listener_and_python_3_9(fake_aws, monkeypatch):
    monkeypatch.setenv("PIPELINE_EMR_RELEASE", "emr-7.13.0")
    seven = run_emr(fake_aws, "nightly", "2024-07-01", {"outputs": ["stock_daily"]})
    assert seven.run.state == "success", seven.run.task_states
    (req,) = seven.run_job_flow
    assert req["ReleaseLabel"] == "emr-7.13.0"
    assert req["Applications"] == [{"Name": "Spark"}]
    by_class = {c["Classification"]: c for c in req["Configurations"]}
    assert by_class["iceberg-defaults"]["Properties"] == {"iceberg.enabled": "true"}
    assert by_class["spark-env"]["Configurations"][0]["Properties"] == {
        "PYSPARK_PYTHON": "/usr/bin/python3.9"
    }
    spark = by_class["spark-defaults"]["Properties"]
    assert spark["spark.executorEnv.PYSPARK_PYTHON"] == "/usr/bin/python3.9"
    assert spark["spark.sql.ansi.enabled"] == "true"  # off by default on Spark 3.5: set
    # the listener built for Spark 3.5's Scala, uploaded from `make jars` and named by every step
    jar_key = "lake/_code/jars/openlineage-spark_2.12-1.53.0.jar"
    assert (
        seven.s3_objects[jar_key]
        == (PROJECT_ROOT / ".cache" / "jars" / jar_key.rsplit("/", 1)[1]).read_bytes()
    )
    assert not [k for k in seven.s3_objects if "openlineage-spark_2.13" in k]
    for step in seven.added_steps:
        assert spark_submit(step["HadoopJarStep"]["Args"]).jars == f"s3://lake-bucket/{jar_key}"
    assert list(seven.clusters.values()) == ["TERMINATED"]


def _the_report_page_is_on_s3_beside_the_json(emr: EmrRun, ds: str, failed_step: str) -> None:
    """run_report wrote report.html beside report.json in the lake's bucket, with the EMR links,
    and the UI's Run report tab finds it by the task's XCom (plugins/run_report_view.py)."""
    from include.run_report import model
    from plugins.run_report_view import find_page

    folder = f"lake/_runs/reports/dag_id=customer_analytics_nightly/dt={ds}/"
    assert {k for k in emr.s3_objects if k.startswith(folder)} == {
        folder + "report.json",
        folder + "report.html",
    }
    report = json.loads(emr.s3_objects[folder + "report.json"])
    page = emr.s3_objects[folder + "report.html"].decode()
    (cluster_id,) = emr.clusters
    step = next(s for s in report["steps"] if s["step"] == failed_step)
    assert step["state"] == "failed"
    log_folder = f"{LAKE}/_emr_logs/{cluster_id}/steps/{step['emr_step']['id']}/"
    assert step["step_log_url"] == model.s3_console_url(log_folder, "us-east-1")
    assert report["links"]["emr_cluster"] == model.emr_console_url("us-east-1", cluster_id)
    for url in (step["step_log_url"], report["links"]["emr_cluster"], step["task_log_url"]):
        assert f'href="{html.escape(url)}"' in page
    assert find_page("customer_analytics_nightly", emr.run.run_id) == {
        "json": f"s3://lake-bucket/{folder}report.json",
        "html": f"s3://lake-bucket/{folder}report.html",
        "aws_conn_id": "aws_default",
        "region": None,
    }


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
    assert sorted(step_job_args(s)[2] for s in first) == sorted(
        d for d in ("customers", "sales", "referrals", "stock_ticks", "clickstream")
    )
    assert all(step_job_args(s)[3:7] == ["--start-ds", dates[0], "--end-ds", dates[1]] for s in first)
    # then each date's steps, dates in order, a step's dependencies in earlier batches
    *days, audit, publish = backfill.step_calls[1:]
    seen: list[tuple[str, str]] = []
    for batch in days:
        here = [(parse_emr_step_name(s["Name"])["ds"], parse_emr_step_name(s["Name"])["step"]) for s in batch]
        assert len({ds for ds, _ in here}) == 1
        for ds, step in here:
            assert all((ds, dep) in seen for dep in P.STEPS[step].depends_on if not P.STEPS[dep].ranged)
            args = step_job_args(next(s for s in batch if f"|{step}|" in s["Name"]))
            assert args[args.index("--ds") + 1] == ds
        seen.extend(here)
    daily = [s.name for s in P.PIPELINE if not s.ranged]
    assert seen == [(ds, step) for ds in dates for step in _by_wave(daily)]
    # then one audit of the whole range on the run's branch, then its publish
    assert [parse_emr_step_name(s["Name"])["step"] for s in (*audit, *publish)] == ["audit", "publish"]
    assert step_job_args(audit[0])[1:5] == ["--start-ds", dates[0], "--end-ds", dates[1]]
    # every output announced once, after the whole range ran
    assert backfill.run.asset_events == sorted(f"{LAKE}/warehouse/curated/{out}" for out in P.OUTPUTS)
    assert {backfill.run.task_states[f"register_{out}"] for out in P.OUTPUTS} == {"success"}


def _by_wave(names: list[str]) -> list[str]:
    return [s.name for wave in P.waves([P.STEPS[n] for n in names]) for s in wave]
