"""The nightly DAG's deadline reference: a scheduled run's logical date; no deadline for any other run.

Airflow's own `DeadlineReference.DAGRUN_LOGICAL_DATE` gives every run a deadline, so a manual
run or a backfill of 2024-06-28, created in 2026, is "Missed" the moment it is created (its
deadline, D+1 06:00, passed two years ago): the UI shows it missed and the scheduler queues the
callback. Such a run is late by design. This reference evaluates to None for it, and Airflow
then creates no deadline for the run (`SerializedDAG._process_dagrun_deadline_alerts`): nothing
to miss, nothing shown. A scheduled run gets exactly what DAGRUN_LOGICAL_DATE gives it.

Airflow finds a custom reference by the class path the serialized DAG names
(`plugins.deadline_reference.ScheduledRunLogicalDate`), among the classes an AirflowPlugin
registers (`plugins/deadline_plugin.py`). It is evaluated where runs are created (the
scheduler, the API server, the CLI's `dags trigger` and `backfill create`), on the metadata DB.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import BaseDeadlineReference


class ScheduledRunLogicalDate(BaseDeadlineReference):
    """A scheduled run's logical date; None (no deadline) for a manual, backfill or asset-triggered run."""

    required_kwargs = {"dag_id", "run_id"}  # what Airflow passes _evaluate_with (filtered to these)

    def _evaluate_with(self, *, session: Any, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.types import DagRunType
        from sqlalchemy import select

        row = session.execute(
            select(DagRun.run_type, DagRun.logical_date).where(
                DagRun.dag_id == dag_id, DagRun.run_id == run_id
            )
        ).one_or_none()
        if row is None or row.run_type != DagRunType.SCHEDULED:
            return None
        return row.logical_date
