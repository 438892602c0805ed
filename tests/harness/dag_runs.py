"""Run a pipeline DAG once with dag.test() and keep what happened: task states, and for emr what AWS saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.run_local import DAG_FILES, load_dag, run_dag_test


@dataclass
class DagRunRecord:
    run_id: str
    state: str
    task_states: dict[str, str]
    task_times: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # task -> (start, end)
    xcoms: dict[str, Any] = field(default_factory=dict)
    asset_events: list[str] = field(default_factory=list)  # asset URIs with an event from this run
    asset_extras: dict[str, dict] = field(default_factory=dict)  # asset URI -> its event's extra


def run_pipeline_dag(
    which: str, ds: str | None, conf: dict[str, Any], xcom_tasks: tuple[str, ...] = ()
) -> DagRunRecord:
    """Parse the DAG file under the current environment (as Airflow would) and dag.test() it."""
    dag = load_dag(DAG_FILES[which])
    run = run_dag_test(dag, ds, conf)
    return record_run(dag, run.run_id, xcom_tasks)


def record_run(dag: Any, run_id: str, xcom_tasks: tuple[str, ...] = ()) -> DagRunRecord:
    """What Airflow's DB holds of a run: its state, its tasks' states and times, XComs, asset events."""
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id)
        ).all()
        xcoms = {}
        for task_id in xcom_tasks:
            value = session.scalars(
                select(XComModel.value).where(
                    XComModel.dag_id == dag.dag_id,
                    XComModel.run_id == run.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == "return_value",
                )
            ).first()
            xcoms[task_id] = XComModel.deserialize_value(_Row(value)) if value is not None else None
        events = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == dag.dag_id, AssetEvent.source_run_id == run.run_id
            )
        ).all()
        uris = sorted({e.asset.uri for e in events})
        extras = {e.asset.uri: dict(e.extra or {}) for e in events}
        return DagRunRecord(
            run_id=run.run_id,
            state=str(run.state),
            task_states={ti.task_id: str(ti.state) for ti in tis},
            task_times={ti.task_id: (ti.start_date, ti.end_date) for ti in tis},
            xcoms=xcoms,
            asset_events=uris,
            asset_extras=extras,
        )


def rows_written(lake: str | Path, output: str, ds: str) -> int:
    """Rows of date ds of a curated output, read back with pyiceberg."""
    from include.lake import read_date

    rows = read_date(lake, "curated", output, ds)
    assert rows is not None, f"curated.{output} has nothing written for {ds}"
    return len(rows)


@dataclass
class _Row:
    value: Any
