"""The EMR step player (tests/harness/aws_fakes.py) speaks for itself: when it cannot play a step,
the test fails with the player's own error first, not only with the DAG's failed task."""

from __future__ import annotations

import threading

import pytest

from tests.harness.aws_fakes import EmrStepPlayer, HarnessError
from tests.reliability.emr_faults import run_cluster, step, step_states

# a spark-submit step as the DAGs add them (the player takes its command line apart)
SUBMIT = ["spark-submit", "--deploy-mode", "cluster", "--py-files", "s3://b/code.zip", "entry.py", "graph"]


def _submit(aws, name: str) -> str:
    cluster_id = run_cluster(aws)
    request = {**step(name), "HadoopJarStep": {"Jar": "command-runner.jar", "Args": SUBMIT}}
    aws.client("emr").add_job_flow_steps(JobFlowId=cluster_id, Steps=[request])
    return cluster_id


def _broken_runner(reached: threading.Event):
    def run(args: list[str], conf: dict) -> int:
        reached.set()
        raise OSError(f"no space left on device while running {args[0]}")

    return run


def test_a_step_the_player_cannot_play_fails_the_test_with_the_players_error_and_traceback(aws):
    cluster_id = _submit(aws, "graph-step")
    reached = threading.Event()
    player = EmrStepPlayer(aws, run=_broken_runner(reached), delay=lambda name: 0.0)
    with pytest.raises(HarnessError) as failure, player:
        assert reached.wait(60), "the player never played the step"
    message = str(failure.value)
    assert "the run's failure is the harness's, not the DAG's" in message
    assert "step graph-step: OSError: no space left on device while running graph" in message
    assert "Traceback (most recent call last)" in message
    assert "in run\n" in message  # the frame that raised, from the traceback
    # the player failed the step (so the DAG would have failed too) and recorded why
    assert step_states(aws, cluster_id) == {"graph-step": "FAILED"}
    assert player.finished == [("graph-step", "FAILED")]


def test_the_players_error_comes_first_and_the_tests_own_failure_stays_attached(aws):
    _submit(aws, "graph-step")
    reached = threading.Event()
    player = EmrStepPlayer(aws, run=_broken_runner(reached), delay=lambda name: 0.0)
    with pytest.raises(HarnessError) as failure, player:  # noqa: PT012 (the block is the player's life)
        assert reached.wait(60)
        raise AssertionError("run.state == 'failed': {'graph': 'failed'}")  # what a test would say
    assert "OSError: no space left on device" in str(failure.value)
    assert isinstance(failure.value.__cause__, AssertionError)
    assert "{'graph': 'failed'}" in str(failure.value.__cause__)


def test_a_player_that_played_everything_adds_nothing_to_a_passing_test(aws):
    cluster_id = _submit(aws, "graph-step")
    done = threading.Event()

    def run(args: list[str], conf: dict) -> int:
        done.set()
        return 0

    with EmrStepPlayer(aws, run=run, delay=lambda name: 0.0) as player:
        assert done.wait(60)
    assert player.errors == []
    assert step_states(aws, cluster_id) == {"graph-step": "COMPLETED"}


def test_fails_once_fails_a_steps_first_attempt_only():
    from tests.harness.aws_fakes import fails_once

    fail = fails_once("segments")
    names = ["n|r|ingest_sales|d", "n|r|segments|d", "n|r|segments|d", "n|r2|segments|d", "n|r|segments_x|d"]
    assert [fail(n) for n in names] == [False, True, False, False, False]
