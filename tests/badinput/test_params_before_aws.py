"""Bad run parameters through a real DAG run (dag.test against moto): the run fails and AWS never
hears of it — no cluster, no upload, no catalog call."""

from __future__ import annotations

import pytest

from tests.harness.aws_fakes import EmrStepPlayer
from tests.harness.dag_runs import run_pipeline_dag

pytestmark = pytest.mark.slow


def _run_with_bad_conf(fake_aws, which: str, ds: str | None, conf: dict):
    fake_aws.reset()
    with EmrStepPlayer(fake_aws):
        try:
            run = run_pipeline_dag(which, ds, conf)
        except Exception as exc:  # refused at trigger time by the Param schema
            return None, exc, fake_aws.requests()
    return run, None, fake_aws.requests()


@pytest.fixture(scope="module")
def reversed_range(fake_aws):
    # passes the Param schema (two real dates); only the plan sees that they are reversed
    return _run_with_bad_conf(fake_aws, "backfill", None, {"start_ds": "2024-07-01", "end_ds": "2024-06-30"})


def test_a_reversed_backfill_range_fails_the_plan_and_no_cluster_code_or_step_reaches_aws(reversed_range):
    run, refused, requests = reversed_range
    assert refused is None
    assert run.state == "failed"
    assert run.task_states["plan"] == "failed"
    assert run.task_states["create_cluster"] in ("upstream_failed", "skipped")
    assert [r.action or r.method for r in requests if not r.action.startswith("AWSGlue.")] == []


def test_a_reversed_backfill_range_makes_no_aws_request_at_all(reversed_range):
    _, _, requests = reversed_range
    assert [r.action or r.method for r in requests] == []


@pytest.mark.parametrize(
    ("which", "ds", "conf"),
    [
        ("backfill", None, {"start_ds": "2024-06-30; rm -rf /", "end_ds": "2024-06-30"}),
        ("nightly", "2024-06-30", {"outputs": ["stock_daily", "$(id)"]}),
    ],
)
def test_an_injection_attempt_in_the_conf_never_reaches_aws(fake_aws, which, ds, conf):
    run, refused, requests = _run_with_bad_conf(fake_aws, which, ds, conf)
    assert requests == []
    if refused is None:  # accepted by the trigger: then the plan task refuses it
        assert run.state == "failed"
        assert run.task_states["plan"] == "failed"
    else:
        assert "rm -rf" in str(refused) or "$(id)" in str(refused)
