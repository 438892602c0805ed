"""A step fails in a whole nightly run (dag.test() against moto): no later step is added, the
cluster is terminated, nothing of the failed branch is announced (asset event) for the date, what
the lake held before is untouched, the run fails, and the log says where the step's stderr lies.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from plugins.emr_naming import parse_emr_step_name
from tests.harness.aws_fakes import EmrStepPlayer
from tests.harness.dag_runs import run_pipeline_dag
from tests.harness.emr_runs import published_metrics
from tests.harness.settings import EMR_ENV

pytestmark = pytest.mark.ops  # a whole local DAG run with a failing step: make test-ops

DS, EARLIER = "2024-07-02", "2024-07-01"
STDERR = b"INFO starting\nspark_jobs.common.JobInputError: no landing partition clickstream/dt=2024-07-02\n"
EARLIER_TABLE = "lake/warehouse/curated/stock_daily/metadata/00000-earlier.metadata.json"


def _earlier_outputs(aws) -> dict[str, bytes]:
    """What a good run of an earlier date left in the lake: a table's metadata file."""
    aws.s3.put_object(Bucket="lake-bucket", Key=EARLIER_TABLE, Body=b'{"format-version": 2}')
    return _objects(aws)


def _objects(aws) -> dict[str, bytes]:
    s3 = aws.s3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake-bucket").get("Contents", [])]
    return {k: s3.get_object(Bucket="lake-bucket", Key=k)["Body"].read() for k in keys if "/warehouse/" in k}


def test_a_failed_step_stops_its_branch_cleans_up_and_logs_its_stderr(aws, airflow_db, monkeypatch, capfd):
    """dag.test() runs deferred sensors one at a time, so a step cancelled *while running* by another
    step's failure is shown in test_emr_steps (operators directly); here the whole run's outcome."""
    for key, value in EMR_ENV.items():
        monkeypatch.setenv(key, value)
    earlier = _earlier_outputs(aws)

    def fail(name: str) -> bool:
        if "|ingest_clickstream|" not in name:
            return False
        # EMR writes the step's stderr to the cluster's LogUri; put it there as the step fails
        for cluster in aws.emr_backend().clusters.values():
            for s in cluster.steps:
                if s.name == name:
                    key = f"lake/_emr_logs/{cluster.id}/steps/{s.id}/stderr.gz"
                    aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=gzip.compress(STDERR))
        return True

    with EmrStepPlayer(aws, fail=fail) as emr:
        run = run_pipeline_dag("nightly", DS, {"outputs": ["stock_daily", "clickstream_checkouts"]})
    log = capfd.readouterr().out

    states = run.task_states
    assert run.state == "failed", states
    assert states["run_ingest_clickstream"] == "failed"
    # no later step: clickstream (which needs the failed ingest) was never added
    assert states["run_clickstream"] == "upstream_failed"
    steps = {parse_emr_step_name(n)["step"]: s for n, s in emr.finished}
    assert steps["ingest_clickstream"] == "FAILED"
    assert "clickstream" not in {parse_emr_step_name(s["Name"])["step"] for s in _added(aws)}
    # nothing announced for the failed branch (the other one only if it finished before the failed
    # step cancelled the run's other steps); the cluster is gone
    assert states["register_clickstream_checkouts"] == "upstream_failed"
    assert set(run.asset_events) <= {f"{EMR_ENV['PIPELINE_LAKE']}/warehouse/curated/stock_daily"}
    assert states["terminate_cluster"] == "success"
    assert [c.state for c in aws.emr_backend().clusters.values()] == ["TERMINATED"]
    # the lake's tables untouched by Airflow (only the jobs, here the stand-in cluster, write them)
    assert _objects(aws) == earlier
    # Airflow asked Glue nothing: the tables register themselves when a job commits
    assert not [r for r in aws.requests() if r.action.startswith("AWSGlue.")]
    # the failing task's log: where stderr lies and its first error line
    assert re.search(r"step stderr: s3://lake-bucket/lake/_emr_logs/j-\w+/steps/s-\w+/stderr\.gz", log)
    assert "JobInputError: no landing partition clickstream/dt=2024-07-02" in log
    # the run's metrics in CloudWatch say it failed, and which step did; a step never added has none
    key = f"lake/_runs/reports/dag_id=customer_analytics_nightly/dt={DS}/report.json"
    report = json.loads(aws.s3.get_object(Bucket="lake-bucket", Key=key)["Body"].read())
    metrics = published_metrics(aws, "CustomerMarketAnalytics", report)
    assert metrics[("RunFailed", None, None)] == [1.0]
    assert metrics[("RunSucceeded", None, None)] == [0.0]
    assert metrics[("StepFailed", "ingest_clickstream", None)] == [1.0]
    assert not {k for k in metrics if k[1] in ("clickstream", "audit", "publish")}
    assert ("AuditErrors", None, None) not in metrics  # the audit never ran
    # every EMR call of the run (its operators, triggers and report task) retried throttling with
    # backoff; a count was no bound (how often a trigger polls depends on how fast steps end)
    emr = [r for r in aws.requests() if r.action.startswith("ElasticMapReduce.")]
    assert {"ElasticMapReduce.RunJobFlow", "ElasticMapReduce.AddJobFlowSteps"} <= {r.action for r in emr}
    assert any("aiobotocore" in r.user_agent for r in emr)  # the triggers' polls are among them
    assert [(r.action, r.user_agent) for r in emr if "retry-mode#standard" not in r.user_agent] == []


def _added(aws) -> list[dict]:
    return [s for body in aws.calls("ElasticMapReduce.AddJobFlowSteps") for s in body["Steps"]]
