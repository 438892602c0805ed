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


def run_pipeline_dag(
    which: str, ds: str | None, conf: dict[str, Any], xcom_tasks: tuple[str, ...] = ()
) -> DagRunRecord:
    """Parse the DAG file under the current environment (as Airflow would) and dag.test() it."""
    from airflow.models.asset import AssetEvent
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = load_dag(DAG_FILES[which])
    run = run_dag_test(dag, ds, conf)
    with create_session() as session:
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
        return DagRunRecord(
            run_id=run.run_id,
            state=str(run.state),
            task_states={ti.task_id: str(ti.state) for ti in tis},
            task_times={ti.task_id: (ti.start_date, ti.end_date) for ti in tis},
            xcoms=xcoms,
            asset_events=uris,
        )


def rows_written(lake_dir: Path, output: str, ds: str) -> int:
    """Rows a first run for `ds` wrote to `output`: its dt=ds partition, or for the stream (which
    takes every landing file it has not seen, so a history run fills the earlier dates too) all of them."""
    from include.lake_summary import read_partition

    dates = [ds]
    if output == "clickstream_checkouts":
        dates = [p.name.removeprefix("dt=") for p in (lake_dir / "curated" / output).glob("dt=*")]
    return sum(len(read_partition(lake_dir, "curated", output, d)) for d in dates)


@dataclass
class _Row:
    value: Any
