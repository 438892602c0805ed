"""Repairing a failed EMR nightly run in the same run, as the UI's own Clear does it (dag.test()'s
loop against moto, the Clear through the public API's own route functions) and as the run's
Repair run tab does it (plugins/run_repair.py, through Airflow's REST API app as an editor):

- the failed step task cleared with the Clear dialog's defaults (downstream, not upstream) brings
  its setup back: one new cluster runs the failed step, what depends on it, the audit and the
  publish, and is terminated; nothing that had succeeded runs again;
- the run cleared with "Only failed tasks" leaves the setup, whose XCom names the old terminated
  cluster: the step task fails at once with one line saying so, creates and adds nothing;
- a cluster lost under a waiting step fails that step task at its next poll with the cluster's
  state and EMR's reason; the repair then goes green.
"""

from __future__ import annotations

import math
import re

import pytest

from include import pipeline as P
from include.run_local import DAG_FILES, load_dag, run_dag_test
from plugins.emr_naming import parse_emr_step_name
from tests.harness.airflow_runs import (
    clear_run_as_the_ui_does,
    clear_tasks_as_the_ui_does,
    repair_from_the_tab,
    resume_run,
)
from tests.harness.aws_fakes import EmrStepPlayer
from tests.harness.dag_runs import record_run
from tests.harness.settings import EMR_ENV
from tests.reliability.emr_faults import lose_cluster, set_step_state

pytestmark = pytest.mark.ops  # two whole DAG runs each (about 100 s apiece on 2 cores): make test-ops

LAKE = EMR_ENV["PIPELINE_LAKE"]
DS = "2024-07-03"
REPAIR_DS = "2024-07-05"
LOST = "Spot capacity was reclaimed"
REGISTERS = tuple(f"register_{o}" for o in P.OUTPUTS)


@pytest.fixture
def nightly(aws, airflow_db, monkeypatch):
    """The EMR nightly DAG parsed under the emr target's test settings, as Airflow would."""
    for key, value in EMR_ENV.items():
        monkeypatch.setenv(key, value)
    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None  # as run_dag_test: dag.test() of Airflow 3.3.2 cannot end a run that has one
    return dag


def clusters(aws) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(id, state, [(step, state)]) of every cluster, oldest first, steps in submission order."""
    return [
        (c.id, c.state, [(parse_emr_step_name(s.name)["step"], s.state) for s in c.steps])
        for c in aws.emr_backend().clusters.values()
    ]


def completed_twice(player: EmrStepPlayer) -> list[str]:
    done = [name for name, state in player.finished if state == "COMPLETED"]
    return sorted({n for n in done if done.count(n) > 1})


def test_a_failed_step_is_repaired_by_clearing_its_task_and_only_failed_says_how(nightly, aws, capfd):
    failed_once: list[str] = []

    def fail(name: str) -> bool:  # segments fails on its first attempt only
        if "|segments|" in name and not failed_once:
            failed_once.append(name)
            return True
        return False

    with EmrStepPlayer(aws, fail=fail) as emr:
        run_id = run_dag_test(nightly, DS, {}).run_id
        first = record_run(nightly, run_id)
        assert first.state == "failed", first.task_states
        assert first.task_states["run_segments"] == "failed"
        (old, old_state, old_steps), *more = clusters(aws)
        assert (old_state, more) == ("TERMINATED", [])
        added = len(aws.calls("ElasticMapReduce.AddJobFlowSteps"))
        capfd.readouterr()

        # Run -> Clear -> "Only failed tasks": the setup keeps its XCom, the old cluster
        clear_run_as_the_ui_does(nightly.dag_id, run_id, only_failed=True)
        assert resume_run(nightly, run_id) == "failed"
        log = capfd.readouterr().out
        gone = [line for line in log.splitlines() if "the run's cluster is gone" in line]
        assert gone, log[-3000:]
        assert f"the run's cluster is gone (cluster {old} is TERMINATED" in gone[0]
        assert (
            "): repair the run (its Repair run tab), or clear this task with its downstream tasks "
            "(the Clear dialog's defaults); either creates a new cluster and reruns only what failed"
        ) in gone[0]
        assert "KeyError" not in log
        assert record_run(nightly, run_id).task_states["run_segments"] == "failed"
        assert len(clusters(aws)) == 1  # no cluster created, none leaked
        assert len(aws.calls("ElasticMapReduce.AddJobFlowSteps")) == added  # nothing added

        # the failed task's Clear with the dialog's defaults
        cleared = clear_tasks_as_the_ui_does(nightly.dag_id, run_id, ["run_segments"])
        state = resume_run(nightly, run_id)
    assert emr.errors == []
    assert cleared == sorted(
        {"run_segments", "create_cluster", "terminate_cluster", "step_logs", "steps_done"}
        | {"run_audit", "run_publish", "run_report", *REGISTERS}
    )
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    assert set(repaired.task_states.values()) == {"success"}
    # exactly one more cluster, which ran the failed step, its dependants (none), audit and
    # publish, and was terminated
    assert [(c, s) for c, s, _ in clusters(aws)] == [(old, "TERMINATED"), (clusters(aws)[1][0], "TERMINATED")]
    assert clusters(aws)[1][2] == [
        ("segments", "COMPLETED"),
        ("audit", "COMPLETED"),
        ("publish", "COMPLETED"),
    ]
    assert sorted(s for s, _ in old_steps) == sorted(P.STEPS)
    assert dict(old_steps)["segments"] == "FAILED"
    assert completed_twice(emr) == []  # nothing that had succeeded ran again
    assert sorted(repaired.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)


def test_a_failed_step_is_repaired_from_the_repair_run_tab(nightly, aws):
    """The Repair run tab on the EMR target: it lists the failed step, the steps after it (none
    but audit and publish here), and on confirmation one new cluster runs exactly those."""
    failed_once: list[str] = []

    def fail(name: str) -> bool:  # segments fails on its first attempt only
        if "|segments|" in name and not failed_once:
            failed_once.append(name)
            return True
        return False

    with EmrStepPlayer(aws, fail=fail) as emr:
        run_id = run_dag_test(nightly, REPAIR_DS, {}).run_id
        assert record_run(nightly, run_id).task_states["run_segments"] == "failed"
        (old, _, old_steps), *more = clusters(aws)
        assert more == []
        shown, done = repair_from_the_tab(nightly.dag_id, run_id)
        state = resume_run(nightly, run_id)
    assert emr.errors == []
    reruns = shown.split("Steps it reruns", 1)[1].split("</ul>", 1)[0]
    assert re.findall(r"<li><code>([^<]+)</code>", reruns) == ["run_audit", "run_publish", "run_segments"]
    assert "create_cluster" in shown.split("With them", 1)[1]
    assert "Repair started" in done
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    assert set(repaired.task_states.values()) == {"success"}
    (first, first_state, _), (_, new_state, new_steps) = clusters(aws)
    assert (first, first_state, new_state) == (old, "TERMINATED", "TERMINATED")
    assert new_steps == [("segments", "COMPLETED"), ("audit", "COMPLETED"), ("publish", "COMPLETED")]
    assert dict(old_steps)["segments"] == "FAILED"
    assert completed_twice(emr) == []
    assert sorted(repaired.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)


def test_a_cluster_lost_under_a_waiting_step_fails_it_at_the_next_poll_and_a_repair_goes_green(nightly, aws):
    """EMR marks a lost cluster's steps only later (here: not before the repair): the step task
    learns it from DescribeCluster, which its trigger asks at each poll."""
    phase = {"name": "first", "lost": None, "requests": 0}

    def delay(name: str) -> float:
        if "|stock_daily|" not in name or phase["name"] != "first":
            return 0.2
        if phase["lost"] is None:
            for cluster in aws.emr_backend().clusters.values():
                mine = [s for s in cluster.steps if s.name == name]
                if mine and mine[0].id in aws.async_polled_steps():  # its task waits on it
                    lose_cluster(aws, cluster.id, "INSTANCE_FAILURE", LOST, cancel_steps=False)
                    phase["requests"] = len(aws.requests())  # each later one is answered after the loss
                    phase["lost"] = (cluster.id, mine[0].id)
        return math.inf  # never ends by itself

    with EmrStepPlayer(aws, delay=delay) as emr:
        run_id = run_dag_test(nightly, DS, {"outputs": ["stock_daily"]}).run_id
        first = record_run(nightly, run_id)
        assert first.state == "failed", first.task_states
        assert first.task_states["run_stock_daily"] == "failed"
        lost_cluster, lost_step = phase["lost"]
        # EMR had not marked the step (still active): the cluster's state ended the wait, at the
        # first poll after the loss (the exact message: tests/reliability/test_emr_steps.py)
        (_, old_state, old_steps), *more = clusters(aws)
        assert (old_state, more) == ("TERMINATED_WITH_ERRORS", [])
        assert old_steps[0] == ("ingest_stock_ticks", "COMPLETED")
        assert old_steps[1][0] == "stock_daily"
        assert old_steps[1][1] in ("PENDING", "RUNNING")
        after = [
            (r.action, r.body.get("StepId"))
            for r in aws.requests()[phase["requests"] :]
            if "aiobotocore" in r.user_agent
        ]
        # at most one poll after the loss (a poll may have been under way): no wait for a timeout
        assert after.count(("ElasticMapReduce.DescribeCluster", None)) <= 1
        assert after.count(("ElasticMapReduce.DescribeStep", lost_step)) <= 1
        assert first.task_states["terminate_cluster"] == "success"

        set_step_state(aws, lost_cluster, lost_step, "CANCELLED")  # as EMR does, later
        phase["name"] = "repair"
        clear_tasks_as_the_ui_does(nightly.dag_id, run_id, ["run_stock_daily"])
        state = resume_run(nightly, run_id)
    assert emr.errors == []
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    (old, old_state, old_steps), (_, new_state, new_steps) = clusters(aws)
    assert (old, old_state, new_state) == (lost_cluster, "TERMINATED_WITH_ERRORS", "TERMINATED")
    assert old_steps == [("ingest_stock_ticks", "COMPLETED"), ("stock_daily", "CANCELLED")]
    assert new_steps == [("stock_daily", "COMPLETED"), ("audit", "COMPLETED"), ("publish", "COMPLETED")]
    assert completed_twice(emr) == []
    assert repaired.asset_events == [f"{LAKE}/warehouse/curated/stock_daily"]
