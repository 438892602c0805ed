"""Airflow's own `dag.test()` (what `airflow dags test` runs) on the nightly DAG as its file defines
it, Deadline Alert included: a green run ends green. Airflow 3.3.2 alone ends every green
`dag.test()` of a DAG with a Deadline Alert in "'dict' object has no attribute 'hex'"
(include/dag_factory.PipelineDAG). The run is the session's local nightly (tests/dags/conftest.py:
the DAG parsed from its file and dag.test() of it, every output). The command line itself, in a
throwaway Airflow home: tests/ops/test_airflow_cli.py."""

from __future__ import annotations

import pytest

from tests.harness.airflow_runs import deadlines_of

pytestmark = pytest.mark.slow


def test_dag_test_of_the_nightly_with_its_deadline_ends_green(local_nightly):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag, run = local_nightly.dag, local_nightly.run
    with create_session() as session:
        states = dict(
            session.execute(
                select(TaskInstance.task_id, TaskInstance.state).where(
                    TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
                )
            ).all()
        )
    assert run.state == "success", states
    # every output asked for: every task of the DAG ran green, around the run's Spark application
    assert {t: str(s) for t, s in states.items()} == dict.fromkeys(dag.task_dict, "success")
    assert {"start_spark", "run_audit", "run_publish", "run_report", "stop_spark"} <= set(states)
    # the DAG keeps its alert after dag.test() (PipelineDAG takes it off for the run only)
    (alert,) = dag.deadline
    assert type(alert.reference).__name__ == "ScheduledRunLogicalDate"
    assert deadlines_of(run.run_id) == []  # a manual run: no deadline (plugins/deadline_reference.py)
