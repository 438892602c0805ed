"""Throttling and transient AWS errors: retried with backoff inside a try (botocore's retry config on
every hook of the DAGs), then by task retries with exponential backoff. The faults are injected
in front of moto: a `before-send` handler answers the first calls with ThrottlingException / 503.
"""

from __future__ import annotations

import json
import time
import types

import pytest
from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.sdk.exceptions import TaskDeferred
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from plugins.emr_client import AWS_RETRY_CONFIG
from plugins.emr_naming import emr_step_name
from plugins.emr_steps import EmrRunStepOperator
from tests.harness.settings import EMR_ENV
from tests.reliability.emr_faults import context, run_cluster, step, step_states


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object):
        yield self.body


def failing_first(calls: int, *, status: int = 400, code: str = "ThrottlingException"):
    """A before-send handler: the first `calls` requests get an error response, the rest reach moto."""
    seen = {"n": 0}

    def handler(request, **_):
        seen["n"] += 1
        if seen["n"] > calls:
            return None
        body = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "r"}
        return AWSResponse(request.url, status, headers, _Raw(body))

    handler.seen = seen
    return handler


@pytest.fixture
def sleeps(monkeypatch):
    """botocore's backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    # Replace the module botocore.endpoint sees, not time.sleep itself: other threads of the
    # process (moto's server, earlier tests' leftovers) sleep too and must not be recorded.
    shim = types.SimpleNamespace(
        **{name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    )
    shim.sleep = slept.append
    monkeypatch.setattr("botocore.endpoint.time", shim)
    return slept


def test_botocore_defaults_give_up_after_five_throttled_attempts(aws, sleeps):
    """The fault itself: a hook without the retry config fails on a burst of throttling."""
    client = EmrHook(aws_conn_id="aws_default").conn
    client.meta.events.register("before-send.emr.ListClusters", failing_first(6))
    with pytest.raises(ClientError, match="ThrottlingException"):
        client.list_clusters()
    assert len(sleeps) == 4


@pytest.mark.parametrize(("status", "code"), [(400, "ThrottlingException"), (503, "ServiceUnavailable")])
def test_the_retry_config_rides_out_throttling_and_transient_errors_with_backoff(aws, sleeps, status, code):
    client = EmrHook(aws_conn_id="aws_default", config=AWS_RETRY_CONFIG).conn
    handler = failing_first(6, status=status, code=code)
    client.meta.events.register("before-send.emr.ListClusters", handler)
    assert client.list_clusters()["Clusters"] == []
    assert handler.seen["n"] == 7
    assert len(sleeps) == 6
    assert all(0 <= s <= 20 for s in sleeps)  # jittered exponential backoff, capped at 20 s


def test_a_throttled_step_task_adds_its_step_once(aws, sleeps):
    cluster = run_cluster(aws)
    name = emr_step_name("nightly_dag", "manual__1", "2024-06-28", "graph")
    op = EmrRunStepOperator(
        task_id="run_graph", job_flow_id=cluster, steps=[step(name)], botocore_config=AWS_RETRY_CONFIG
    )
    for action in ("DescribeCluster", "ListSteps", "AddJobFlowSteps"):
        op.hook.conn.meta.events.register(f"before-send.emr.{action}", failing_first(2))
    with pytest.raises(TaskDeferred):  # added, then waited for
        op.execute(context())
    assert list(step_states(aws, cluster)) == [name]
    assert len(aws.emr_backend().clusters[cluster].steps) == 1
    assert len(sleeps) == 6


def test_every_aws_task_of_the_dags_has_the_retry_config_and_exponential_task_retries(monkeypatch):
    from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
    from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor

    from include.dag_factory import build_backfill_dag, build_nightly_dag
    from include.settings import load_settings

    settings = load_settings({**EMR_ENV, "PIPELINE_RETRIES": "3"})
    for dag in (build_nightly_dag(settings), build_backfill_dag(settings)):
        aws_tasks = [t for t in dag.tasks if isinstance(t, AwsBaseOperator | AwsBaseSensor)]
        assert len(aws_tasks) >= 3  # create, steps, terminate at least
        for task in aws_tasks:
            assert task.botocore_config == AWS_RETRY_CONFIG, task.task_id
            if task.task_id.startswith(("run_", "create_")):
                assert task.retries == 3, task.task_id
                assert task.retry_exponential_backoff, task.task_id
