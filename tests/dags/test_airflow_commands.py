"""Airflow's own `dag.test()` (what `airflow dags test` runs) on the nightly DAG as its file defines
it, Deadline Alert included: a green run ends green. Airflow 3.3.2 alone ends every green
`dag.test()` of a DAG with a Deadline Alert in "'dict' object has no attribute 'hex'"
(include/dag_factory.PipelineDAG). The command line itself, in a throwaway Airflow home:
tests/ops/test_airflow_cli.py."""

from __future__ import annotations

import pytest

from include.run_local import DAG_FILES, load_dag, run_dag_test
from tests.harness.airflow_runs import deadlines_of
from tests.harness.nightly import NIGHTLY_DS, demo_landing


@pytest.fixture
def local_lake(tmp_path, airflow_db, monkeypatch):
    lake = demo_landing(tmp_path / "lake")
    monkeypatch.setenv("PIPELINE_TARGET", "local")
    monkeypatch.setenv("PIPELINE_LAKE", lake.as_uri())
    monkeypatch.setenv("PIPELINE_RETRIES", "0")
    return lake


@pytest.mark.usefixtures("local_lake")
def test_dag_test_of_the_nightly_with_its_deadline_ends_green():
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = load_dag(DAG_FILES["nightly"])
    (alert,) = dag.deadline
    assert type(alert.reference).__name__ == "ScheduledRunLogicalDate"

    run = run_dag_test(dag, NIGHTLY_DS, {"outputs": ["stock_daily"]})

    with create_session() as session:
        states = dict(
            session.execute(
                select(TaskInstance.task_id, TaskInstance.state).where(
                    TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
                )
            ).all()
        )
    assert str(run.state) == "success", states
    assert {t: str(s) for t, s in states.items() if str(s) not in ("success", "skipped")} == {}
    # what stock_daily needs, then the write-audit-publish, the output's asset event and the
    # report, around the run's Spark application; every other step skipped itself
    assert {t for t, s in states.items() if str(s) == "success"} == {
        "plan",
        "start_spark",
        "run_ingest_stock_ticks",
        "run_stock_daily",
        "run_audit",
        "run_publish",
        "register_stock_daily",
        "run_report",
        "stop_spark",
    }
    assert dag.deadline == [alert]  # the DAG keeps its alert
    assert deadlines_of(run.run_id) == []  # a manual run: no deadline (plugins/deadline_reference.py)
