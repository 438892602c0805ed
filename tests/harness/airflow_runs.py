"""DAG runs made the way Airflow's own components make them, for tests that need one run at a
time: a scheduled run as the scheduler creates it, and one task of a run executed as dag.test()
executes it (through the Task SDK, in this process)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from contextlib import contextmanager
from typing import Any


def create_scheduled_run(dag_id: str) -> str:
    """The run the scheduler would create now (SchedulerJobRunner._create_dag_runs); its run id.

    Call it under a frozen clock (time-machine): the timetable picks the latest interval that
    has ended, as the scheduler does for a DAG without catchup."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        model = session.get(DagModel, dag_id)
        model.calculate_dagrun_date_fields(dag, reference_run=None)
        info = dag.timetable.next_run_info_from_dag_model(dag_model=model)
        run = dag.create_dagrun(
            run_id=dag.timetable.generate_run_id(
                run_type=DagRunType.SCHEDULED,
                run_after=info.run_after,
                data_interval=info.data_interval,
                partition_key=info.partition_key,
            ),
            logical_date=info.logical_date,
            data_interval=info.data_interval,
            run_after=info.run_after,
            run_type=DagRunType.SCHEDULED,
            triggered_by=DagRunTriggeredByType.TIMETABLE,
            state=DagRunState.QUEUED,
            session=session,
            partition_key=info.partition_key,
            partition_date=info.partition_date,
        )
        return run.run_id


def run_task(dag: Any, run_id: str, task_id: str) -> tuple[str, Any]:
    """Run one task of an existing run as dag.test() runs a task; returns its state and XCom."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        run.state = DagRunState.RUNNING
        session.commit()
        ti = run.get_task_instance(task_id, session=session)
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        _run_task(ti=ti, task=dag.task_dict[task_id])
        state = str(session.scalar(select(type(ti).state).where(type(ti).id == ti.id)))
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag.dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    return state, XComModel.deserialize_value(_Row(value)) if value is not None else None


def end_run(dag_id: str, run_id: str, state: str = "failed") -> None:
    """Mark a run finished (max_active_runs=1 would hold the next run of the test back)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        run.state = state
        session.commit()


def end_backfill(backfill_id: int) -> None:
    """Mark a backfill completed, as the scheduler does once its runs are done: Airflow allows one
    running backfill per DAG, so one a test leaves running refuses the next test's of the worker."""
    from airflow.models.backfill import Backfill
    from airflow.utils.session import create_session

    with create_session() as session:
        session.get(Backfill, backfill_id).completed_at = dt.datetime.now(dt.UTC)


class _Row:
    def __init__(self, value: Any) -> None:
        self.value = value


@contextmanager
def task_sdk_channel():
    """What Airflow's dag-processor gives the DAG callbacks it runs: a Task SDK channel to Airflow
    (SUPERVISOR_COMMS, which answers e.g. the run's task states). dag.test() runs the callbacks
    in its own process without one, so the test provides the channel dag.test() gives its tasks
    and triggers (Airflow's in-process execution API)."""
    import os
    import uuid

    import psutil
    import structlog
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )

    supervisor = InProcessTestSupervisor(
        id=uuid.uuid4(),
        pid=os.getpid(),
        process=psutil.Process(),
        process_log=structlog.get_logger(logger_name="task").bind(),
        client=InProcessTestSupervisor._api_client(),
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    with set_supervisor_comms(supervisor.comms):
        yield


def deadlines_of(run_id: str) -> list:
    from airflow.models import Deadline
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Deadline).join(DagRun).where(DagRun.run_id == run_id)).all()
        return [(d.deadline_time, d.missed) for d in rows]


def scheduler_checks_deadlines_and_executor_runs_callbacks() -> list[tuple[bool, str | None]]:
    """What the scheduler's loop does with expired deadlines (SchedulerJobRunner: select the
    unmissed ones past due, handle_miss queues their callback), then what the executor's
    callback supervisor runs for each queued callback (execute_callback)."""
    import structlog
    from airflow.models import Deadline
    from airflow.models.callback import Callback
    from airflow.sdk.execution_time.callback_supervisor import execute_callback
    from airflow.utils.session import create_session
    from sqlalchemy import select

    results = []
    with create_session() as session:
        expired = session.scalars(
            select(Deadline).where(Deadline.deadline_time < dt.datetime.now(dt.UTC)).where(~Deadline.missed)
        ).all()
        for deadline in expired:
            deadline.handle_miss(session)
        session.flush()
        callbacks = [session.get(Callback, d.callback_id).data for d in expired]
    for data in callbacks:
        results.append(execute_callback(data["path"], data["kwargs"], None, None, structlog.get_logger()))
    return results


def clear_tasks_as_the_ui_does(dag_id: str, run_id: str, task_ids: list[str]) -> list[str]:
    """A task's Clear in the UI with the dialog's defaults (downstream yes, upstream no, not only
    failed, not past or future): the public API's route itself (post_clear_task_instances) on the
    DAG as Airflow stored it. The ids of the task instances it cleared."""
    from airflow.api_fastapi.core_api.datamodels.task_instances import ClearTaskInstancesBody
    from airflow.api_fastapi.core_api.routes.public.task_instances import post_clear_task_instances
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    body = ClearTaskInstancesBody(
        dry_run=False,
        dag_run_id=run_id,
        task_ids=task_ids,
        include_downstream=True,
        include_upstream=False,
        only_failed=False,
    )
    with create_session() as session:
        cleared = post_clear_task_instances(dag_id, DBDagBag(), body, session, None)
        return sorted(ti.task_id for ti in cleared.task_instances)


def clear_run_as_the_ui_does(dag_id: str, run_id: str, *, only_failed: bool) -> None:
    """Run -> Clear in the UI ("Only failed tasks" or all): the public API's route (clear_dag_run)."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunClearBody
    from airflow.api_fastapi.core_api.routes.public.dag_run import clear_dag_run
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    with create_session() as session:
        clear_dag_run(
            dag_id, run_id, DAGRunClearBody(dry_run=False, only_failed=only_failed), DBDagBag(), session, None
        )


def resume_run(dag: Any, run_id: str) -> str:
    """Run an existing (cleared) run to its end as dag.test() runs a new one: the same loop (the
    run's state, its schedulable tasks, each task and its trigger in this process). Its state."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.settings import Session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    scheduler_dag.on_success_callback = dag.on_success_callback
    scheduler_dag.on_failure_callback = dag.on_failure_callback
    session = Session()
    try:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        run.dag = scheduler_dag
        run.state = DagRunState.RUNNING  # what the scheduler does with a queued (cleared) run
        session.commit()
        seen: dict[str, Any] = {}
        while run.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = run.update_state(session=session)
            for ti in schedulable:
                if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                    ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            tis = run.get_task_instances(session=session)
            scheduled = [t for t in tis if t.state == TaskInstanceState.SCHEDULED]
            states = {t.task_id: t.state for t in tis}
            if not scheduled and run.state == DagRunState.RUNNING and states == seen:
                # nothing ran and nothing changed since the last look: it never will (a deferred
                # task's trigger runs inside _run_task, so nothing is waiting elsewhere)
                raise AssertionError(f"the run cannot go on: nothing to schedule, task states {states}")
            seen = states
            for ti in scheduled:
                try:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
                except Exception:  # as dag.test(): a failed task is the run's state, not the test's error
                    logging.getLogger(__name__).exception("task failed: %s", ti.task_id)
        return str(run.state)
    finally:
        session.close()


def repair_from_the_tab(dag_id: str, run_id: str) -> tuple[str, str]:
    """The run's Repair run tab as an editor (the simple auth manager's `user` role) uses it:
    open it (the confirmation), press Repair run (its form). The plugin's app calls Airflow's own
    REST API app, in this process, with the editor's token. (confirmation page, result page)."""
    from urllib.parse import quote

    from airflow.api_fastapi.app import create_app, create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from plugins import run_report_view

    manager = create_auth_manager()
    manager.init()
    token = manager.generate_jwt(SimpleAuthManagerUser(username="editor", role="user"))
    with TestClient(create_app(apps="core")) as core:

        def api(method: str, path: str, bearer: str, body: Any, query: Any) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {bearer}"}
            response = core.request(method, "/api/v2" + path, json=body, params=query, headers=headers)
            return response.status_code, response.json() if response.content else None

        tab = TestClient(run_report_view.create_app(api=api), cookies={"_token": token})
        url = f"/repair/dags/{dag_id}/runs/{quote(run_id, safe='')}"
        shown = tab.get(url)
        assert shown.status_code == 200, shown.text
        form = dict(re.findall(r"<input type='hidden' name='(\w+)' value='([^']*)'>", shown.text))
        done = tab.post(url, data=form)
        assert done.status_code == 200, done.text
        return shown.text, done.text
