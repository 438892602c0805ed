"""The run report: the CLI's metrics file, the report built from it and the tasks' states, the
EMR cost estimate (by hand, and through boto3 against moto), the log table and the HTML page."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from include import pipeline as P
from include.cluster_profiles import PROFILES, instance_types
from include.run_plan import JobCall
from include.run_report import cost, model, render, task
from plugins.emr_naming import emr_step_name
from spark_jobs.cli import main
from spark_jobs.protocol import METRICS_PREFIX
from tests.harness.lake_files import write_landing_csv
from tests.harness.lake_tables import append_rows
from tests.harness.plans import nightly_run_plan, step_metrics

DS = "2024-06-08"
UTC = dt.UTC


# ---- the CLI leaves its metrics in the lake ---------------------------------------------------
def test_cli_writes_the_metrics_it_prints_to_the_lake_where_the_report_reads_them(spark, lake, capsys):
    rows = [
        ("c1", "north", "2024-01-01"),
        ("c2", "south", "2024-01-02"),
        ("c1", "north", "2024-01-01"),  # duplicate key: dropped, not quarantined
        ("c3", "east", "2024-02-30"),  # not a date: quarantined
    ]
    write_landing_csv(lake, "customers", DS, ["customer_id", "region", "signup_date"], rows)

    call = JobCall(P.STEPS["ingest_customers"], ds=DS, lake=lake)
    command = call.args
    assert command == ["ingest", "--dataset", "customers", "--ds", DS, "--lake", lake]
    handlers = list(logging.getLogger().handlers)
    try:
        assert main(command) == 0
    finally:  # main's logging.basicConfig writes to this test's captured stderr: detach it
        logging.getLogger().handlers[:] = handlers

    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(METRICS_PREFIX)]
    assert len(printed) == 1
    uri = call.metrics_uri  # the plan's rule for where this command's job leaves them
    assert uri == f"{lake}/_runs/metrics/dt={DS}/ingest-customers.json"
    stored = json.loads(Path(uri.removeprefix("file://")).read_text())
    assert stored == json.loads(printed[0].removeprefix(METRICS_PREFIX))
    assert {k: v for k, v in stored.items() if k not in ("duration_seconds", "timings", "tables")} == {
        "job": "ingest",
        "run_id": None,
        "ds": DS,
        "dataset": "customers",
        "start_ds": DS,
        "end_ds": DS,
        "rows_in": {"customers": 4},
        "rows_out": {"customers": 2},
        "rows_quarantined": 1,
        "duplicates_dropped": 1,
    }
    assert isinstance(stored["duration_seconds"], float)


# ---- the report -----------------------------------------------------------------------------
def test_report_uses_metrics_of_succeeded_steps_only_and_fails_with_the_failed_tasks():
    selected = [s.name for s in P.steps_for(["customer_features", "stock_daily"])]
    plan = nightly_run_plan(DS, selected, emr=False)
    states = {
        "run_ingest_customers": "success",
        "run_ingest_sales": "success",
        "run_ingest_referrals": "success",
    }
    states |= {"run_ingest_stock_ticks": "success", "run_stock_daily": "success"}
    states |= {"run_graph": "failed", "run_features": "upstream_failed"}
    states |= {"run_audit": "upstream_failed", "run_publish": "upstream_failed"}
    metrics = {
        ("ingest_customers", DS): step_metrics({"customers": 100}, {"customers": 98}, 2, 30.5),
        ("ingest_sales", DS): step_metrics({"sales": 1000}, {"sales": 990}, 7, 41.0),
        # ingest_referrals succeeded but left no file: shown, not invented
        ("ingest_stock_ticks", DS): step_metrics({"stock_ticks": 50}, {"stock_ticks": 50}, 0, 20.0),
        ("stock_daily", DS): step_metrics({"stock_ticks": 50}, {"stock_daily": 5}, 0, 15.25),
        # a file of an earlier run of the failed step must not count
        ("graph", DS): step_metrics({"referrals": 9}, {"referral_graph": 9}, 0, 99.0),
    }
    report = model.build_report(
        dag_id="nightly", run_id="manual__1", target="local",
        plan=plan, task_states=states, metrics=metrics,
    )  # fmt: skip
    by_step = {s["step"]: s for s in report["steps"]}
    assert [s["step"] for s in report["steps"]] == [s.name for s in P.PIPELINE] + ["audit", "publish"]
    assert {k: s["state"] for k, s in by_step.items()} == {
        "ingest_customers": "success",
        "ingest_sales": "success",
        "ingest_referrals": "success",
        "ingest_stock_ticks": "success",
        "ingest_clickstream": "skipped",
        "graph": "failed",
        "features": "upstream_failed",
        "segments": "skipped",
        "sales_rolling": "skipped",
        "stock_daily": "success",
        "clickstream": "skipped",
        "audit": "upstream_failed",
        "publish": "upstream_failed",
    }
    assert (by_step["ingest_sales"]["rows_in"], by_step["ingest_sales"]["rows_out"]) == (1000, 990)
    assert by_step["ingest_sales"]["rows_quarantined"] == 7
    assert by_step["ingest_referrals"]["note"] == "no metrics file"
    assert "rows_in" not in by_step["graph"]
    assert report["state"] == "failed"
    assert report["failed_tasks"] == ["run_audit", "run_features", "run_graph", "run_publish"]
    assert report["totals"] == {
        "steps_succeeded": 5,
        "steps_failed": 4,
        "rows_quarantined": 2 + 7,
        "job_seconds": 30.5 + 41.0 + 20.0 + 15.25,
    }


def test_table_in_the_log_has_one_line_per_step_with_its_numbers():
    plan = nightly_run_plan(DS, ["ingest_sales"], emr=False)
    report = model.build_report(
        dag_id="nightly", run_id="manual__1", target="local", plan=plan,
        task_states={"run_ingest_sales": "success"},
        metrics={("ingest_sales", DS): step_metrics({"sales": 12345}, {"sales": 12000}, 300, 61.04)},
    )  # fmt: skip
    lines = render.format_table(report).splitlines()
    assert lines[0] == f"run report: nightly manual__1 (ds {DS}, local): success"
    assert lines[1].split() == ["step", "ds", "state", "rows", "in", "rows", "out", "quarantined", "seconds"]
    body = {line.split()[0]: line.split() for line in lines[3:-2]}
    assert body["ingest_sales"] == ["ingest_sales", DS, "success", "12,345", "12,000", "300", "61.0"]
    assert body["graph"] == ["graph", DS, "skipped", "-", "-", "-", "-"]
    assert lines[-1].split() == ["total", "1", "succeeded", "300", "61.0"]


# ---- EMR: normalized instance hours and cost ------------------------------------------------
PRICES = {
    "currency": "USD",
    "region": "us-east-1",
    "as_of": "test",
    "instances": {"m5.xlarge": {"ec2": 0.192, "emr": 0.048}, "r5.4xlarge": {"ec2": 1.008, "emr": 0.252}},
}


def _instances(itype, count, market="ON_DEMAND", created=None, ended=None, fleet=""):
    """ListInstances items: `count` instances of one type, with their own life times when given."""
    timeline = ({"CreationDateTime": created} if created else {}) | ({"EndDateTime": ended} if ended else {})
    return [{"Id": f"ci-{itype}-{i}", "InstanceType": itype, "Market": market, "InstanceFleetId": fleet,
             "Status": {"State": "TERMINATED" if ended else "RUNNING", "Timeline": timeline}}
            for i in range(count)]  # fmt: skip


def _cluster(created, ended=None):
    timeline = {"CreationDateTime": created} | ({"EndDateTime": ended} if ended else {})
    state = "TERMINATED" if ended else "TERMINATING"
    return {"Id": "j-1", "NormalizedInstanceHours": 48, "Status": {"State": state, "Timeline": timeline}}


@pytest.mark.parametrize(
    ("instance_type", "factor"),
    [("m5.large", 4), ("m5.xlarge", 8), ("m5.2xlarge", 16), ("r5.4xlarge", 32), ("c5.24xlarge", 192),
     ("t3.small", 1), ("m5.metal", None)],
)  # fmt: skip
def test_normalization_factor_follows_emr_sizes(instance_type, factor):
    assert cost.normalization_factor(instance_type) == factor


def test_cost_is_normalized_instance_hours_times_the_price_per_normalized_hour():
    t0 = dt.datetime(2024, 6, 9, 2, 0, tzinfo=UTC)
    cluster = _cluster(t0, t0 + dt.timedelta(hours=1, minutes=30))
    instances = _instances("m5.xlarge", 3)  # the dev profile: 1 primary + 2 core, the cluster's life long
    usage = cost.cluster_usage(cluster, instances, [], PRICES)
    assert usage["runtime_hours"] == 1.5
    assert usage["runtime_source"] == "cluster end"
    # 3 instances x 1.5 h x factor 8 = 36 normalized hours; 36 x (0.24 / 8) = 3 x 1.5 x 0.24 = 1.08
    assert usage["normalized_instance_hours"] == 36.0
    assert usage["estimated_cost"] == pytest.approx(1.08)
    assert [(t["instances"], t["instance_hours"]) for t in usage["instance_types"]] == [(3, 4.5)]
    assert usage["emr_normalized_instance_hours"] == 48


def test_a_terminating_cluster_is_counted_to_its_last_step_and_unknown_types_leave_cost_open():
    t0 = dt.datetime(2024, 6, 9, 2, 0, tzinfo=UTC)
    steps = [
        {"Name": "a", "Status": {"Timeline": {"EndDateTime": t0 + dt.timedelta(minutes=30)}}},
        {"Name": "b", "Status": {"Timeline": {"EndDateTime": t0 + dt.timedelta(minutes=45)}}},
        {"Name": "c", "Status": {"Timeline": {}}},  # cancelled, never ran
    ]
    instances = _instances("r5.4xlarge", 5) + _instances("x9.huge", 2, "SPOT")
    usage = cost.cluster_usage(_cluster(t0), instances, steps, PRICES)
    assert usage["runtime_hours"] == 0.75
    assert usage["runtime_source"].startswith("last step end")
    assert usage["instance_types"][0]["normalized_instance_hours"] == 5 * 0.75 * 32
    assert usage["instance_types"][0]["estimated_cost"] == pytest.approx(5 * 0.75 * 1.26)
    assert usage["estimated_cost"] is None
    assert usage["unpriced_instance_types"] == ["x9.huge"]


def test_a_fleets_cost_follows_the_instances_it_really_ran_each_for_its_own_life():
    t0 = dt.datetime(2024, 6, 9, 2, 0, tzinfo=UTC)
    at = lambda minutes: t0 + dt.timedelta(minutes=minutes)  # noqa: E731
    cluster = _cluster(t0, at(120))
    instances = (
        _instances("m7g.2xlarge", 1, fleet="if-primary")  # the cluster's life: 2 h
        + _instances("r7g.4xlarge", 3, fleet="if-core")
        + _instances("r6g.4xlarge", 2, fleet="if-core")
        # spot task capacity: one c7g for the first hour, a c6g added by scaling for the last 30 min,
        # and one on demand after spot could not be had
        + _instances("c7g.4xlarge", 1, "SPOT", created=t0, ended=at(60), fleet="if-task")
        + _instances("c6g.4xlarge", 1, "SPOT", created=at(90), ended=at(120), fleet="if-task")
        + _instances("c7g.4xlarge", 1, "ON_DEMAND", created=at(30), fleet="if-task")
    )
    prices = cost.load_prices()["instances"]
    hourly = {t: p["ec2"] + p["emr"] for t, p in prices.items()}
    usage = cost.cluster_usage(cluster, instances, [], cost.load_prices())
    rows = {(t["instance_type"], t["market"]): t for t in usage["instance_types"]}
    assert {k: (r["instances"], r["instance_hours"]) for k, r in rows.items()} == {
        ("m7g.2xlarge", "ON_DEMAND"): (1, 2.0),
        ("r7g.4xlarge", "ON_DEMAND"): (3, 6.0),
        ("r6g.4xlarge", "ON_DEMAND"): (2, 4.0),
        ("c7g.4xlarge", "SPOT"): (1, 1.0),
        ("c6g.4xlarge", "SPOT"): (1, 0.5),
        ("c7g.4xlarge", "ON_DEMAND"): (1, 1.5),  # no end of its own: to the cluster's end
    }
    expected = (2 * hourly["m7g.2xlarge"] + 6 * hourly["r7g.4xlarge"] + 4 * hourly["r6g.4xlarge"]
                + 2.5 * hourly["c7g.4xlarge"] + 0.5 * hourly["c6g.4xlarge"])  # fmt: skip
    assert usage["estimated_cost"] == pytest.approx(expected, abs=1e-4)
    # normalized hours: 2xlarge = 16 per hour, 4xlarge = 32
    assert usage["normalized_instance_hours"] == 2 * 16 + (6 + 4 + 1 + 0.5 + 1.5) * 32


def test_the_price_table_in_include_prices_every_instance_type_of_the_profiles():
    prices = cost.load_prices()
    types = {t for profile in PROFILES for t in instance_types(profile)}
    assert types <= set(prices["instances"])
    assert all(cost.normalization_factor(t) for t in prices["instances"])


@mock_aws
def test_emr_usage_and_step_timings_are_read_through_boto3():
    client = boto3.client("emr", region_name="us-east-1")
    cluster_id = client.run_job_flow(
        Name="nightly-2024-06-08",
        ReleaseLabel="emr-7.13.0",
        Instances={"InstanceGroups": PROFILES["dev"]["InstanceGroups"], "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    name = emr_step_name("customer_analytics_nightly", "manual__1", DS, "graph")
    step = {"Name": name, "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "x.py"]}}  # fmt: skip
    client.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])
    client.terminate_job_flows(JobFlowIds=[cluster_id])

    cluster, instances, steps = cost.read_emr(client, cluster_id)
    usage = cost.cluster_usage(cluster, instances, steps, PRICES)
    timeline = cluster["Status"]["Timeline"]
    hours = (timeline["EndDateTime"] - timeline["CreationDateTime"]).total_seconds() / 3600
    assert [(t["instance_type"], t["market"], t["instances"]) for t in usage["instance_types"]] == [
        ("m5.xlarge", "ON_DEMAND", 3)
    ]
    assert usage["cluster_id"] == cluster_id
    assert usage["normalized_instance_hours"] == round(3 * hours * 8, 3)
    assert usage["estimated_cost"] == round(3 * hours * 0.24, 4)

    timings = cost.emr_step_timings(steps)
    assert list(timings) == [name]
    plan = nightly_run_plan(DS, ["graph"], emr=True, dag_id="customer_analytics_nightly")
    report = model.build_report(
        dag_id="customer_analytics_nightly", run_id="manual__1", target="emr", plan=plan,
        task_states={"run_graph": "success"}, metrics={}, emr_steps=timings, cluster=usage,
    )  # fmt: skip
    graph = next(s for s in report["steps"] if s["step"] == "graph")
    assert graph["task_id"] == "run_graph"
    assert graph["emr_step"]["id"] == steps[0]["Id"]
    assert f"EMR cluster {cluster_id}" in render.format_table(report)


# ---- the HTML page --------------------------------------------------------------------------
def _write(lake: Path, output: str, ds: str, df: pd.DataFrame) -> None:
    append_rows(lake.as_uri(), "curated", output, df, ds)


def test_html_page_charts_segments_rolling_sales_and_pagerank_leaders_without_network(tmp_path):
    for k, spent in ((0, [10.0, 30.0]), (1, [100.0]), (2, [5.0, 5.0, 8.0])):
        ids = [f"c{k}{i}" for i in range(len(spent))]
        _write(tmp_path, "customer_segments", DS,
               pd.DataFrame({"customer_id": ids, "total_spent": spent, "segment": k}))  # fmt: skip
    for ds, north, south in (("2024-06-07", 100.0, 50.0), (DS, 120.0, 40.0), ("2024-05-01", 1.0, 1.0)):
        _write(tmp_path, "sales_rolling_30d", ds,
               pd.DataFrame({"region": ["north", "south"], "rolling_30d_sum": [north, south]}))  # fmt: skip
    ranks = {f"u{i:02d}": 0.01 * i for i in range(12)}
    graph = pd.DataFrame({"customer_id": list(ranks), "pagerank": list(ranks.values())})
    _write(tmp_path, "referral_graph", DS, graph)

    charts = task.chart_data(tmp_path.as_uri(), DS)
    assert charts["segments"] == [("segment 0", 2, 20.0), ("segment 1", 1, 100.0), ("segment 2", 3, 6.0)]
    # 2024-05-01 is outside the 30 days up to ds
    assert charts["rolling"] == {
        "north": [("2024-06-07", 100.0), (DS, 120.0)],
        "south": [("2024-06-07", 50.0), (DS, 40.0)],
    }
    assert [c for c, _ in charts["pagerank"]] == [f"u{i:02d}" for i in range(11, 1, -1)]

    report = model.build_report(
        dag_id="nightly", run_id="manual__1", target="local",
        plan=nightly_run_plan(DS, [], emr=False), task_states={}, metrics={},
    )  # fmt: skip
    page = render.html_page(report, charts)
    assert page.count('<rect class="bar"') == 3 + 3 + 10
    assert page.count('<polyline class="line"') == 2
    assert "<script" not in page
    assert "http" not in page  # nothing fetched: no URL at all


# ---- wiring: the report is the last task of every DAG ---------------------------------------
@pytest.mark.parametrize(
    ("target", "kind"), [("local", "nightly"), ("local", "backfill"), ("emr", "nightly"), ("emr", "backfill")]
)
def test_run_report_is_the_one_last_task_and_runs_whatever_happened(target, kind):
    import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
    from include.dag_factory import build_backfill_dag, build_nightly_dag
    from include.settings import Settings

    settings = Settings(
        target=target,
        lake="s3://bucket/lake" if target == "emr" else "file:///tmp/lake",
        code_uri="s3://bucket/code",
        log_uri="s3://bucket/logs",
        subnet_id="subnet-0123456789abcdef0",
    )
    dag = (build_nightly_dag if kind == "nightly" else build_backfill_dag)(settings)
    leaves = [t.task_id for t in dag.tasks if not t.downstream_list]
    assert leaves == ["run_report"]
    report = dag.task_dict["run_report"]
    assert report.trigger_rule == "all_done"
    assert report.retries == 0
    # Directly after the tasks that ended the DAG before it was added: the asset events after
    # publishing, and the teardown (locally the one that stops the run's Spark application).
    registers = {f"register_{o}" for o in P.OUTPUTS}
    expected = {
        ("local", "nightly"): registers | {"stop_spark"},
        ("local", "backfill"): registers | {"stop_spark"},
        ("emr", "nightly"): registers | {"step_logs"},  # the step logs' copy, after the teardown
        ("emr", "backfill"): registers | {"terminate_cluster"},
    }
    assert report.upstream_task_ids == expected[(target, kind)]


def test_html_page_shows_a_single_days_rolling_sales_as_bars_per_region():
    report = model.build_report(
        dag_id="nightly", run_id="manual__1", target="local",
        plan=nightly_run_plan(DS, [], emr=False), task_states={}, metrics={},
    )  # fmt: skip
    page = render.html_page(report, {"rolling": {"north": [(DS, 12345.0)], "south": [(DS, 40.5)]}})
    assert page.count('<rect class="bar"') == 2
    assert "<polyline" not in page
    assert ">12,345<" in page
    assert ">40.5<" in page


def _check(table, check, ds, status, severity="error", numbers=None, rows=(), note=""):
    return {"table": table, "check": check, "ds": ds, "status": status, "severity": severity,
            "numbers": numbers or {}, "rows": list(rows), "note": note}  # fmt: skip


def test_the_checks_section_counts_every_result_and_the_log_names_each_failure_with_its_rows():
    results = [
        _check("curated.referral_graph", "pagerank_sums_to_one", DS, "fail", numbers={"sum": 0.8}),
        _check("curated.referral_graph", "key_unique_not_null", DS, "pass", numbers={"rows": 4}),
        *[_check("processed.sales", "quarantine_share", f"2024-06-0{d}", "pass") for d in (1, 2)],
        _check(
            "processed.sales",
            "quarantine_share",
            "2024-06-03",
            "fail",
            "warn",
            {"share": 0.02},
            rows=[{"id": "x"}],
        ),
        _check("processed.sales", "row_count_vs_history", "2024-06-01", "skipped", note="fewer than 3"),
        _check("processed.sales", "row_count_vs_history", "2024-06-02", "skipped", note="fewer than 3"),
    ]
    plan = nightly_run_plan(DS, ["graph"], emr=False)
    report = model.build_report(
        dag_id="nightly", run_id="manual__1", target="local", plan=plan,
        task_states={"run_graph": "success", "run_audit": "failed"}, metrics={}, checks=results,
    )  # fmt: skip

    section = report["checks"]
    assert {k: section[k] for k in ("passed", "warnings", "errors", "skipped")} == {
        "passed": 3, "warnings": 1, "errors": 1, "skipped": 2,
    }  # fmt: skip
    assert section["results"] == results  # every check with its numbers, per output
    text = render.format_table(report)
    assert "checks: 3 passed, 1 warnings, 1 errors, 2 skipped" in text
    lines = text.splitlines()
    assert any(
        line.split() == ["fail", "error", "curated.referral_graph", "pagerank_sums_to_one:", "sum=0.8"]
        for line in lines
    )
    assert any("quarantine_share: 3 dates: 2 pass, 1 fail" in line for line in lines)
    assert any("quarantine_share 2024-06-03: share=0.02" in line for line in lines)
    assert any(line.strip() == "{'id': 'x'}" for line in lines)
    assert any("row_count_vs_history: 2 dates: 2 skipped" in line for line in lines)
