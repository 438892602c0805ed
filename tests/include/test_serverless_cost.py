"""EMR Serverless job runs' cost: one job run priced by hand, a run's table recomputed with pandas,
the price table itself, job runs read through boto3 from moto's emr-serverless backend, and the
run report (its rows, total, log lines, page and CloudWatch's EstimatedCost) with them beside an
EMR cluster's cost."""

from __future__ import annotations

import datetime as dt

import boto3
import pandas as pd
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from include.run_report import metrics, model, render
from include.run_report import serverless_cost as S
from tests.harness.plans import nightly_run_plan

DS = "2024-06-08"
T0 = dt.datetime(2024, 6, 9, 2, 0, tzinfo=dt.UTC)
PRICES = S.load_serverless_prices()


def _run(name: str, minutes: int, billed: dict | None, state: str = "SUCCESS") -> dict:
    """A GetJobRun `jobRun` as boto3 returns it (the fields the report reads)."""
    run = {
        "applicationId": "00app",
        "jobRunId": f"00{name.replace(' ', '')}",
        "name": name,
        "state": state,
        "createdAt": T0 + dt.timedelta(minutes=minutes),
        "startedAt": T0 + dt.timedelta(minutes=minutes, seconds=20),
        "endedAt": T0 + dt.timedelta(minutes=minutes + 5, seconds=20),
        "queuedDurationMilliseconds": 20_000,
    }
    if billed is not None:
        run["billedResourceUtilization"] = billed
    return run


def test_one_job_run_is_its_billed_vcpu_memory_and_storage_hours_at_the_regions_prices():
    billed = {"vCPUHour": 2.5, "memoryGBHour": 10.0, "storageGBHour": 40.0}
    # by hand, us-east-1: x86 2.5 x 0.052624 + 10 x 0.0057785 + 40 x 0.000111
    x86 = S.job_run_cost(billed, S.rates(PRICES, "us-east-1", "X86_64"))
    assert x86 == pytest.approx(0.13156 + 0.057785 + 0.00444, abs=1e-12)
    assert x86 == pytest.approx(0.193785, abs=1e-12)
    # Graviton: 2.5 x 0.042094 + 10 x 0.004628 + 40 x 0.000111
    arm = S.job_run_cost(billed, S.rates(PRICES, "us-east-1", "ARM64"))
    assert arm == pytest.approx(0.105235 + 0.04628 + 0.00444, abs=1e-12)
    assert S.rates(PRICES, "us-east-1", None) == S.rates(PRICES, "us-east-1", "X86_64")
    # not billed yet (still running), or no price for the region: unknown, not zero
    assert S.job_run_cost(None, S.rates(PRICES, "us-east-1", "X86_64")) is None
    assert S.rates(PRICES, "eu-north-1", "X86_64") is None
    with pytest.raises(ValueError, match="unknown EMR Serverless architecture 'AARCH64'"):
        S.rates(PRICES, "us-east-1", "AARCH64")


def test_the_price_table_names_its_source_date_and_prices_every_region_for_both_architectures():
    assert PRICES["source"] == "https://aws.amazon.com/emr/pricing/"
    assert PRICES["as_of"]
    assert PRICES["currency"] == "USD"
    assert set(PRICES["regions"]) == {"us-east-1", "us-east-2", "us-west-2"}
    for region, archs in PRICES["regions"].items():
        assert set(archs) == set(S.ARCHITECTURES), region
        for arch, row in archs.items():
            assert set(row) == set(S.BILLED.values()), (region, arch)
            assert all(v > 0 for v in row.values()), (region, arch)
        # Graviton is cheaper per vCPU-hour and per GB-hour; storage costs the same
        assert archs["ARM64"]["vcpu_hour"] < archs["X86_64"]["vcpu_hour"]
        assert archs["ARM64"]["memory_gb_hour"] < archs["X86_64"]["memory_gb_hour"]


def test_a_runs_job_runs_table_and_total_match_a_pandas_recomputation():
    billed = [
        ("ingest_orders 2024-06-08", 0, {"vCPUHour": 0.334, "memoryGBHour": 1.336, "storageGBHour": 6.68}),
        ("segments 2024-06-08", 6, {"vCPUHour": 1.25, "memoryGBHour": 5.0, "storageGBHour": 0.0}),
        ("ingest_orders 2024-06-08", 3, {"vCPUHour": 0.1, "memoryGBHour": 0.4, "storageGBHour": 2.0}),
    ]
    runs = [_run(name, minutes, b) for name, minutes, b in billed]
    usage = S.job_runs_usage(runs, PRICES, region="us-west-2", architecture="ARM64")

    frame = pd.DataFrame([{"name": n, "minutes": m, **b} for n, m, b in billed]).sort_values("minutes")
    rate = PRICES["regions"]["us-west-2"]["ARM64"]
    frame["cost"] = (
        frame["vCPUHour"] * rate["vcpu_hour"]
        + frame["memoryGBHour"] * rate["memory_gb_hour"]
        + frame["storageGBHour"] * rate["storage_gb_hour"]
    )
    assert [r["name"] for r in usage["job_runs"]] == frame["name"].tolist()  # oldest first
    assert [r["estimated_cost"] for r in usage["job_runs"]] == pytest.approx(frame["cost"].tolist(), abs=1e-6)
    assert [r["vcpu_hours"] for r in usage["job_runs"]] == frame["vCPUHour"].tolist()
    total = usage["total"]
    assert total["job_runs"] == 3
    assert total["estimated_cost"] == pytest.approx(frame["cost"].sum(), abs=1e-6)
    assert total["vcpu_hours"] == pytest.approx(frame["vCPUHour"].sum())
    assert total["memory_gb_hours"] == pytest.approx(frame["memoryGBHour"].sum())
    assert total["storage_gb_hours"] == pytest.approx(frame["storageGBHour"].sum())
    assert usage["job_runs"][0]["queue_seconds"] == 20.0
    assert usage["job_runs"][0]["seconds"] == 300.0
    # a step retried (or repaired) has a job run per try, oldest first
    named = S.by_name(usage)
    assert [r["vcpu_hours"] for r in named["ingest_orders 2024-06-08"]] == [0.334, 0.1]


def test_a_job_run_not_billed_yet_or_a_region_without_prices_leaves_the_total_unknown():
    runs = [
        _run("a 2024-06-08", 0, {"vCPUHour": 1.0, "memoryGBHour": 4.0, "storageGBHour": 0.0}),
        _run("b 2024-06-08", 1, None, state="RUNNING"),
    ]
    usage = S.job_runs_usage(runs, PRICES, region="us-east-1")
    assert usage["job_runs"][0]["estimated_cost"] == pytest.approx(0.052624 + 4 * 0.0057785)
    assert usage["job_runs"][1]["estimated_cost"] is None
    assert usage["total"]["estimated_cost"] is None
    elsewhere = S.job_runs_usage(runs[:1], PRICES, region="eu-north-1")
    assert elsewhere["unpriced"]
    assert elsewhere["total"]["estimated_cost"] is None
    said = "no EMR Serverless price for eu-north-1 X86_64: add it to serverless_prices.json"
    assert said in S.job_run_lines(elsewhere)


@mock_aws
def test_every_application_of_the_run_even_deleted_is_read_and_its_job_runs_priced():
    from moto.emrserverless.models import emrserverless_backends

    from include.run_report.serverless import read_job_runs
    from plugins.emr_naming import emr_step_name, serverless_application_name

    dag, run = "customer_analytics_nightly", "manual__1"
    client = boto3.client("emr-serverless", region_name="us-east-1")
    name = serverless_application_name(dag, run)
    ours = [
        client.create_application(name=name, releaseLabel="emr-7.13.0", type="SPARK")["applicationId"]
        for _ in range(2)  # a run and its repair: an application each
    ]
    other = client.create_application(name="someone-else", releaseLabel="emr-7.13.0", type="SPARK")
    for app, steps in (
        (ours[0], ("segments", "graph")),
        (ours[1], ("segments",)),
        (other["applicationId"], ("x",)),
    ):
        for step in steps:
            client.start_job_run(
                applicationId=app,
                executionRoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/job-runtime",
                name=emr_step_name(dag, run, DS, step),
                clientToken=f"{app}{step}",
                jobDriver={"sparkSubmit": {"entryPoint": "s3://code/main.py"}},
            )
    billed = {"vCPUHour": 1.0, "memoryGBHour": 4.0, "storageGBHour": 0.0}
    for job_runs in emrserverless_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].job_runs.values():
        for job_run in job_runs:  # as AWS reports them once they ended
            job_run.billed_resource_utilization = dict(billed)
    client.stop_application(applicationId=ours[0])  # the first attempt's teardown
    client.delete_application(applicationId=ours[0])

    applications = read_job_runs(client, dag, run)
    usage = S.applications_usage(applications, PRICES, region="us-east-1", architecture="X86_64")
    assert sorted(r["application_id"] for r in usage["job_runs"]) == sorted([ours[0], ours[0], ours[1]])
    one = 0.052624 + 4 * 0.0057785
    assert [r["estimated_cost"] for r in usage["job_runs"]] == pytest.approx([one, one, one])
    assert usage["total"]["estimated_cost"] == pytest.approx(3 * one)
    # a job run AWS has not billed yet (still running) leaves the run's cost unknown, not lower
    applications[0]["job_runs"][0]["billed_resource_utilization"] = {}
    unbilled = S.applications_usage(applications, PRICES, region="us-east-1")
    assert unbilled["job_runs"][0]["estimated_cost"] is None
    assert unbilled["total"]["estimated_cost"] is None


def _cluster(cost: float | None) -> dict:
    return {
        "cluster_id": "j-1",
        "log_uri": None,
        "state": "TERMINATED",
        "runtime_hours": 0.5,
        "runtime_source": "cluster end",
        "instance_types": [],
        "normalized_instance_hours": 12.0,
        "emr_normalized_instance_hours": 24,
        "estimated_cost": cost,
        "unpriced_instance_types": [],
        "currency": "USD",
        "price_table": {"region": "us-east-1", "as_of": "2025-01"},
    }


def test_the_report_lists_each_steps_job_runs_and_counts_their_cost_in_the_runs_cost():
    plan = nightly_run_plan(DS, ["graph"], emr=True, dag_id="customer_analytics_nightly")
    graph = next(p for p in plan.steps if p.step == "graph")
    runs = [
        _run(graph.emr_step_name, 0, {"vCPUHour": 0.8, "memoryGBHour": 3.2, "storageGBHour": 0.0}, "FAILED"),
        _run(graph.emr_step_name, 9, {"vCPUHour": 1.0, "memoryGBHour": 4.0, "storageGBHour": 0.0}),
    ]
    usage = S.job_runs_usage(runs, PRICES, region="us-east-1")
    report = model.build_report(
        dag_id="customer_analytics_nightly", run_id="manual__1", target="emr-serverless", plan=plan,
        task_states={"run_graph": "success"}, metrics={}, job_runs=usage,
    )  # fmt: skip
    row = next(s for s in report["steps"] if s["step"] == "graph")
    assert [r["state"] for r in row["job_runs"]] == ["FAILED", "SUCCESS"]
    both = (0.8 + 1.0) * 0.052624 + (3.2 + 4.0) * 0.0057785
    cost, currency = model.run_cost(report)
    assert cost == pytest.approx(both, abs=1e-4)
    assert currency == "USD"

    table = render.format_table(report)
    assert "EMR Serverless total: 2 job runs; vCPU-h 1.8000, memory GB-h 7.2000, storage GB-h 0.0000; " in (
        table
    )
    assert f"estimated cost {round(both, 6):.4f} USD" in table
    page = render.html_page(report, {})
    assert page.count("<tr><td>" + graph.emr_step_name) == 2
    assert f"<td>{round(both, 6):.4f}</td></tr></table>" in page  # the total row
    assert f"estimated cost {both:.2f} USD" in page

    datum = next(d for d in metrics.metric_data(report) if d["MetricName"] == "EstimatedCost")
    assert datum["Value"] == pytest.approx(both, abs=1e-4)


def test_a_runs_cost_is_its_clusters_and_its_job_runs_and_unknown_when_one_part_is():
    usage = S.job_runs_usage(
        [_run("a 2024-06-08", 0, {"vCPUHour": 1.0, "memoryGBHour": 0.0, "storageGBHour": 0.0})],
        PRICES,
        region="us-east-1",
    )
    assert model.run_cost({"emr_cluster": _cluster(1.25), "serverless_job_runs": usage}) == (
        round(1.25 + 0.052624, 4),
        "USD",
    )
    assert model.run_cost({"emr_cluster": _cluster(None), "serverless_job_runs": usage})[0] is None
    assert model.run_cost({"emr_cluster": _cluster(1.25)}) == (1.25, "USD")
    assert model.run_cost({}) == (None, None)  # local: no cost
