"""Airflow's own scheduling of a DAG run, with each task's outcome decided by the test instead of run.

`dag.test()` parses the whole DAG folder and executes every task through the Task SDK (about
0.15 s a task); a test that only asks which tasks Airflow lets run, skips or fails for a given
run needs neither. `resolve_run` creates a real DagRun in the metadata DB and drives it with
the scheduler's own dependency evaluation (`DagRun.update_state`: trigger rules, skip and
upstream-failed propagation, setup/teardown), calling `decide(task, ti)` for every task Airflow
finds runnable; the returned state is recorded as that task's outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

Decide = Callable[[Any, Any], str]  # (the DAG's task, its TaskInstance) -> "success" | "skipped" | "failed"


class ScheduledDag:
    """A DAG written to the metadata DB once, then any number of runs resolved against it."""

    def __init__(self, dag: Any) -> None:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
        from airflow.models.serialized_dag import SerializedDagModel

        manager = DagBundlesManager()
        manager.sync_bundles_to_db()
        bundle = manager.get_bundle("dags-folder")
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if dag.dag_id not in bag.dags:
            raise LookupError(f"{dag.dag_id} is not in {bundle.path}: {bag.import_errors}")
        sync_bag_to_db(bag, bundle.name, None)
        self.dag = dag
        # the DAG as the scheduler reads it from the metadata DB (its Deadline Alerts by database
        # id, as DagRun.update_state looks them up: include/dag_factory.PipelineDAG says why an
        # in-memory round trip would not do)
        self.scheduler_dag = SerializedDagModel.get_dag(dag.dag_id)
        if set(self.scheduler_dag.task_dict) != set(dag.task_dict):  # the harness's error, said as such
            raise AssertionError(
                f"the metadata DB holds another version of {dag.dag_id} than the one just parsed "
                f"(tasks only there: {sorted(set(self.scheduler_dag.task_dict) - set(dag.task_dict))}, "
                f"only here: {sorted(set(dag.task_dict) - set(self.scheduler_dag.task_dict))}): "
                "Airflow did not write the parsed DAG (core.min_serialized_dag_update_interval?)"
            )

    def resolve_run(
        self, *, logical_date: dt.datetime, conf: dict[str, Any], decide: Decide, max_rounds: int = 100
    ) -> dict[str, str]:
        """One run to its end; returns every task's final state."""
        from airflow import settings
        from airflow.models.dagrun import DagRun, get_or_create_dagrun
        from airflow.serialization.encoders import coerce_to_core_timetable
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType

        session = settings.Session()
        try:
            interval = coerce_to_core_timetable(self.dag.timetable).infer_manual_data_interval(
                run_after=logical_date
            )
            run = get_or_create_dagrun(
                dag=self.scheduler_dag,
                start_date=logical_date,
                logical_date=logical_date,
                data_interval=interval,
                run_after=logical_date,
                run_id=DagRun.generate_run_id(
                    run_type=DagRunType.MANUAL, logical_date=logical_date, run_after=logical_date
                ),
                session=session,
                conf=conf,
                triggered_by=DagRunTriggeredByType.TEST,
                triggering_user_name="test",
            )
            for _ in range(max_rounds):
                if run.state != DagRunState.RUNNING:
                    break
                session.expire_all()
                runnable, _ = run.update_state(session=session)
                for ti in runnable:
                    ti.try_number += 1
                    ti.state = decide(self.dag.task_dict[ti.task_id], ti)
                session.commit()
            else:
                raise RuntimeError(f"run {run.run_id} did not finish in {max_rounds} scheduling rounds")
            return {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        finally:
            session.close()
