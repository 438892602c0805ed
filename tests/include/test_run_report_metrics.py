"""The run report's numbers as CloudWatch metrics: which datums a report gives (exact values, for a
run that succeeded and one that failed), the run's timing against its deadline, and PutMetricData
read back from moto's CloudWatch."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from moto import mock_aws

from include.run_report import metrics as M
from include.run_report import model
from tests.harness.plans import nightly_run_plan, step_metrics

DS = "2024-06-28"
UTC = dt.UTC


def _report(states, checks=None, cost=None):
    """A nightly run's report on EMR; `states`: step -> its state (whatever the step's task is named)."""
    plan = nightly_run_plan(
        DS, ["ingest_sales", "ingest_customers", "sales_rolling"], emr=True, dag_id="nightly"
    )
    states = {p.task_id: states[p.step] for p in plan.steps if p.step in states}
    metrics = {
        ("ingest_sales", DS): step_metrics({"sales": 1000}, {"sales": 960}, 30, 41.0),
        ("ingest_customers", DS): step_metrics({"customers": 100}, {"customers": 100}, 0, 30.5),
        ("sales_rolling", DS): step_metrics({"sales": 960}, {"sales_rolling_30d": 4}, 0, 12.25),
        ("audit", DS): step_metrics({}, {}, 0, 8.0),
        ("publish", DS): step_metrics({}, {}, 0, 2.0),
    }
    cluster = {"estimated_cost": cost, "currency": "USD"} if cost is not None else None
    report = model.build_report(
        dag_id="nightly", run_id="scheduled__1", target="emr", plan=plan,
        task_states=states, metrics=metrics, cluster=cluster, checks=checks,
    )  # fmt: skip
    report["run"] = {"duration_seconds": 900.0, "seconds_past_deadline": -3600.0}
    return report


def _by_key(data):
    """{(name, step, output): (value, unit)} of a list of datums."""
    out = {}
    for d in data:
        dims = {x["Name"]: x["Value"] for x in d["Dimensions"]}
        assert (dims["DAG"], dims["Target"]) == ("nightly", "emr")
        key = (d["MetricName"], dims.get("Step"), dims.get("Output"))
        assert key not in out, key
        out[key] = (d["Value"], d["Unit"])
    return out


ALL_DONE = dict.fromkeys(["ingest_sales", "ingest_customers", "sales_rolling", "audit", "publish"], "success")
CHECKS = [
    {"table": "processed.sales", "check": "quarantine_share", "ds": DS, "status": "fail", "severity": "warn"},
    {
        "table": "processed.sales",
        "check": "key_unique_not_null",
        "ds": DS,
        "status": "pass",
        "severity": "error",
    },
]


def test_a_successful_runs_metrics_are_its_reports_numbers_by_run_step_and_output():
    data = M.metric_data(_report(ALL_DONE, CHECKS, cost=1.234))
    assert _by_key(data) == {
        ("RunSucceeded", None, None): (1.0, "Count"),
        ("RunFailed", None, None): (0.0, "Count"),
        ("RunDurationSeconds", None, None): (900.0, "Seconds"),
        ("SecondsPastDeadline", None, None): (-3600.0, "Seconds"),
        ("AuditErrors", None, None): (0.0, "Count"),
        ("AuditWarnings", None, None): (1.0, "Count"),
        ("EstimatedCost", None, None): (1.234, "None"),
        ("StepFailed", "ingest_customers", None): (0.0, "Count"),
        ("StepDurationSeconds", "ingest_customers", None): (30.5, "Seconds"),
        ("RowsIn", "ingest_customers", None): (100.0, "Count"),
        ("RowsOut", "ingest_customers", None): (100.0, "Count"),
        ("RowsQuarantined", "ingest_customers", None): (0.0, "Count"),
        ("RowsOut", "ingest_customers", "processed.customers"): (100.0, "Count"),
        ("QuarantineShare", "ingest_customers", "processed.customers"): (0.0, "None"),
        ("StepFailed", "ingest_sales", None): (0.0, "Count"),
        ("StepDurationSeconds", "ingest_sales", None): (41.0, "Seconds"),
        ("RowsIn", "ingest_sales", None): (1000.0, "Count"),
        ("RowsOut", "ingest_sales", None): (960.0, "Count"),
        ("RowsQuarantined", "ingest_sales", None): (30.0, "Count"),
        ("RowsOut", "ingest_sales", "processed.sales"): (960.0, "Count"),
        ("QuarantineShare", "ingest_sales", "processed.sales"): (30 / 990, "None"),
        ("StepFailed", "sales_rolling", None): (0.0, "Count"),
        ("StepDurationSeconds", "sales_rolling", None): (12.25, "Seconds"),
        ("RowsIn", "sales_rolling", None): (960.0, "Count"),
        ("RowsOut", "sales_rolling", None): (4.0, "Count"),
        ("RowsQuarantined", "sales_rolling", None): (0.0, "Count"),
        ("RowsOut", "sales_rolling", "curated.sales_rolling_30d"): (4.0, "Count"),
        # the audit and publish: whether they failed and how long they took, no rows
        ("StepFailed", "audit", None): (0.0, "Count"),
        ("StepDurationSeconds", "audit", None): (8.0, "Seconds"),
        ("StepFailed", "publish", None): (0.0, "Count"),
        ("StepDurationSeconds", "publish", None): (2.0, "Seconds"),
    }
    # the skipped steps (not selected) have none
    assert not {k[1] for k in _by_key(data)} & {"graph", "ingest_clickstream", "stock_daily"}


def test_a_failed_runs_metrics_say_so_and_name_the_failed_step_not_the_ones_never_started():
    states = {**ALL_DONE, "sales_rolling": "failed", "audit": "upstream_failed", "publish": "upstream_failed"}
    got = _by_key(M.metric_data(_report(states)))
    assert got[("RunSucceeded", None, None)] == (0.0, "Count")
    assert got[("RunFailed", None, None)] == (1.0, "Count")
    assert got[("StepFailed", "sales_rolling", None)] == (1.0, "Count")
    assert got[("StepFailed", "ingest_sales", None)] == (0.0, "Count")
    # a failed step's rows are not its (its metrics file may be an earlier run's); no audit ran
    assert ("RowsOut", "sales_rolling", None) not in got
    assert not {k for k in got if k[1] in ("audit", "publish")}
    assert not {k for k in got if k[0] in ("AuditErrors", "AuditWarnings", "EstimatedCost")}


def test_metric_refuses_a_name_at_a_level_it_is_not_published_at():
    assert M.metric("RowsOut", "nightly", "graph", "curated.referral_graph")["MetricName"] == "RowsOut"
    with pytest.raises(KeyError, match="QuarantineShare"):
        M.metric("QuarantineShare", "nightly", "ingest_sales")
    with pytest.raises(KeyError, match="RunFailed"):
        M.metric("RunFailed", "nightly", "graph")
    assert set(M.RUN_METRICS + M.STEP_METRICS + M.OUTPUT_METRICS) == set(M.METRICS)


@pytest.mark.parametrize(
    ("run_type", "deadline", "finished", "due", "past"),
    [
        # the run of D (logical date D 02:00) is due by 06:00 on D+1
        ("scheduled", "06:00", "2024-06-29T06:30:00+00:00", "2024-06-29T06:00:00+00:00", 1800.0),
        ("scheduled", "06:00", "2024-06-29T03:15:00+00:00", "2024-06-29T06:00:00+00:00", -9900.0),
        # a deadline before 02:00 is the first one after the run starts: D+2
        ("scheduled", "01:30", "2024-06-29T03:00:00+00:00", "2024-06-30T01:30:00+00:00", -81000.0),
        ("manual", "06:00", "2024-06-29T06:30:00+00:00", None, None),
        ("backfill", "06:00", "2024-06-29T06:30:00+00:00", None, None),
    ],
)
def test_run_timing_measures_the_run_and_a_scheduled_runs_distance_to_its_deadline(
    run_type, deadline, finished, due, past
):
    started = dt.datetime(2024, 6, 29, 2, 0, 5, tzinfo=UTC)
    timing = model.run_timing(
        started_at=started,
        finished_at=dt.datetime.fromisoformat(finished),
        run_type=run_type,
        logical_date=dt.datetime(2024, 6, 28, 2, 0, tzinfo=UTC),
        deadline_utc=deadline,
    )
    assert timing["duration_seconds"] == (dt.datetime.fromisoformat(finished) - started).total_seconds()
    assert (timing["deadline_at"], timing["seconds_past_deadline"]) == (due, past)


def test_published_metrics_read_back_from_cloudwatch_with_their_values_and_dimensions():
    report = _report(ALL_DONE, CHECKS, cost=1.234)
    data = M.metric_data(report)
    at = dt.datetime.now(UTC).replace(microsecond=0)
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        calls = []
        cw.meta.events.register(
            "provide-client-params.cloudwatch.PutMetricData", lambda params, **_: calls.append(params)
        )
        assert M.publish(cw, "Test/NS", data, at) == len(data)
        listed = cw.list_metrics(Namespace="Test/NS")["Metrics"]
        assert len(listed) == len(data)
        queries = [
            {"Id": f"m{i}", "MetricStat": {"Metric": {"Namespace": "Test/NS", **M.metric(
                name, "nightly", step, output)}, "Period": 60, "Stat": "Sum"}}
            for i, (name, step, output) in enumerate([
                ("RowsOut", "ingest_sales", "processed.sales"),
                ("RowsQuarantined", "ingest_sales", None),
                ("RunSucceeded", None, None),
                ("SecondsPastDeadline", None, None),
            ])
        ]  # fmt: skip
        got = cw.get_metric_data(
            MetricDataQueries=queries,
            StartTime=at - dt.timedelta(minutes=5),
            EndTime=at + dt.timedelta(minutes=5),
        )
        assert [r["Values"] for r in got["MetricDataResults"]] == [[960.0], [30.0], [1.0], [-3600.0]]
        # at most CloudWatch's 1,000 datums a call
        many = [
            {**M.metric("RowsOut", "nightly", "graph", f"t{i}"), "Value": 1.0, "Unit": "Count"}
            for i in range(1001)
        ]
        calls.clear()
        assert M.publish(cw, "Test/Many", many, at) == 1001
        assert [len(c["MetricData"]) for c in calls] == [1000, 1]


def test_locally_or_switched_off_the_numbers_stay_in_the_report_and_nothing_is_sent(monkeypatch):
    from include.run_report import task
    from include.settings import Settings

    def no_aws(*args, **kwargs):
        raise AssertionError("no AWS client may be made")

    monkeypatch.setattr(boto3, "client", no_aws)
    monkeypatch.setattr(boto3.session.Session, "client", no_aws)
    report = _report(ALL_DONE, CHECKS, cost=1.234)
    local = task._cloudwatch(Settings(target="local", lake="file:///tmp/lake"), report)
    assert local == {
        "namespace": "CustomerMarketAnalytics",
        "published": False,
        "metric_data": M.metric_data(report),
        "reason": "local target: no AWS call",
    }
    off = task._cloudwatch(Settings(target="emr", lake="s3://b/lake", cloudwatch_metrics=False), report)
    assert (off["published"], off["reason"]) == (False, "PIPELINE_CLOUDWATCH_METRICS=false")
