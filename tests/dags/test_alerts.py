"""Alerts of a failed run and of a nightly run late for its deadline, as received by a local SMTP
server the tests start (aiosmtpd on a free port of 127.0.0.1).

The failure: the real nightly DAG under dag.test(), made to fail at `plan` (no Spark needed), so
Airflow runs its on_failure_callback. The deadline: a scheduled run created the scheduler's way at
a frozen 02:00 UTC, held back on purpose (its plan runs, no step is started: the run stays
running), then the clock is moved past 06:00 and the scheduler loop's deadline check and the
executor's callback run as Airflow runs them.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from urllib.parse import quote

import pytest
import time_machine

from include.alert_settings import AlertSettings, deadline_interval
from include.run_local import DAG_FILES, load_dag
from tests.harness.airflow_runs import (
    create_scheduled_run,
    deadlines_of,
    end_backfill,
    end_run,
    run_task,
    scheduler_checks_deadlines_and_executor_runs_callbacks,
    task_sdk_channel,
)
from tests.harness.smtp_inbox import Inbox, free_port, smtp_connection

NIGHTLY = "customer_analytics_nightly"
RECIPIENTS = ["ops@example.com", "data-lead@example.com"]
UTC = dt.UTC


@pytest.fixture(scope="module")
def smtp_server():
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def alerting(smtp_server, airflow_db, tmp_path_factory, module_monkeypatch):
    """Settings with e-mail alerts to RECIPIENTS over the local SMTP server; an empty local lake."""
    inbox, port = smtp_server
    lake = tmp_path_factory.mktemp("alerts") / "lake"
    lake.mkdir()
    for var, value in {
        "PIPELINE_TARGET": "local",
        "PIPELINE_LAKE": lake.as_uri(),
        "PIPELINE_RETRIES": "0",
        "PIPELINE_ALERT_EMAIL": ",".join(RECIPIENTS),
        "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(port),
    }.items():
        module_monkeypatch.setenv(var, value)
    return inbox


def _html(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


# ---- the deadline's arithmetic ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("deadline", "hours"),
    [("06:00", 28), ("02:30", 24.5), ("23:59", 24 + 21 + 59 / 60), ("01:00", 47), ("02:00", 48)],
)
def test_the_deadline_is_the_first_hh_mm_after_the_run_starts(deadline, hours):
    # from the logical date D 02:00 UTC; the run starts at 02:00 on D+1
    assert deadline_interval(deadline, dt.time(2, 0)) == dt.timedelta(hours=hours)


# ---- a failed run ----------------------------------------------------------------------------
def test_a_failed_run_is_told_by_email_naming_dag_run_date_task_and_log(alerting):
    from tests.harness.dag_runs import run_pipeline_dag

    inbox = alerting
    inbox.received.clear()
    # a history start after the run's date: refused by `plan`, the run fails there (and its
    # report after it: there is nothing to report)
    with task_sdk_channel():
        run = run_pipeline_dag("nightly", "2024-03-07", {"ingest_start_ds": "2024-03-09"})
    assert run.state == "failed"
    assert {t: s for t, s in run.task_states.items() if s == "failed"} == {
        "plan": "failed",
        "run_report": "failed",
    }
    assert len(inbox.received) == 1
    sender, recipients, message = inbox.received[0]
    assert sender == "airflow@example.com"  # the connection's from_email
    assert recipients == RECIPIENTS
    assert message["To"] == ", ".join(RECIPIENTS)
    assert message["Subject"] == (
        f"[customer-analytics] FAILED {NIGHTLY} ds 2024-03-07: task plan (run {run.run_id})"
    )
    body = _html(message)
    # the failed task, its error as it raised it in the worker (Airflow gives the DAG's callback
    # only its reason), the other failed task (a consequence), Airflow's reason
    assert (
        "<tr><th align='left'>failed task</th><td>plan</td></tr>"
        "<tr><th align='left'>error of plan</th><td>RunParamError: ingest_start_ds .. ds: start "
        "2024-03-09 is after end 2024-03-07</td></tr>"
        "<tr><th align='left'>all failed tasks</th><td>plan, run_report</td></tr>"
        "<tr><th align='left'>reason</th><td>task_failure</td></tr>"
    ) in body
    link = f"http://localhost:8080/dags/{NIGHTLY}/runs/{quote(run.run_id)}/tasks/plan"
    assert f"<a href='{link}'>" in body


def test_a_long_error_is_cut_for_the_alert():
    from include.alerts import MAX_ERROR_CHARS, error_text

    assert MAX_ERROR_CHARS == 2000
    assert error_text(ValueError("x" * 3000)) == (
        f"ValueError: {'x' * 1988} ... (1012 more characters in the task's log)"
    )
    assert error_text(ValueError("x" * 1988)) == f"ValueError: {'x' * 1988}"


def test_a_task_marked_failed_by_hand_has_no_error_and_the_alert_says_so(nightly_in_db):
    """What the dag-processor's DAG callback finds for a task that failed without raising."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    from include.alerts import failure_alert

    run_id = _manual_run(dt.datetime(2024, 3, 13, 2, 0, tzinfo=UTC))
    try:
        with create_session() as session:
            session.execute(
                update(TaskInstance)
                .where(TaskInstance.run_id == run_id, TaskInstance.task_id == "plan")
                .values(state="failed")
            )
        context = {"dag_run": {"dag_id": NIGHTLY, "run_id": run_id, "conf": {}}, "reason": "task_failure"}
        with task_sdk_channel():
            alert = failure_alert(context, ("run_report",))
        assert alert.lines[3:6] == (
            ("failed task", "plan"),
            (
                "error of plan",
                "none recorded (the task did not raise in its worker: marked failed, or its worker was lost)",
            ),
            ("all failed tasks", "plan"),
        )
    finally:
        end_run(NIGHTLY, run_id)


def test_a_failed_backfill_is_told_by_email_naming_its_range_the_task_and_the_error(alerting):
    from tests.harness.dag_runs import run_pipeline_dag

    inbox = alerting
    inbox.received.clear()
    # a reversed range: both real dates (the form takes them), refused by `plan`
    run = run_pipeline_dag("backfill", None, {"start_ds": "2024-03-20", "end_ds": "2024-03-19"})
    assert run.state == "failed"
    assert sorted(t for t, state in run.task_states.items() if state == "failed") == ["plan", "run_report"]
    assert len(inbox.received) == 1  # the plan's; the run report's failure is a consequence
    _, recipients, message = inbox.received[0]
    assert recipients == RECIPIENTS
    assert message["Subject"] == (
        "[customer-analytics] FAILED customer_analytics_backfill ds 2024-03-20..2024-03-19: task plan "
        f"(run {run.run_id})"
    )
    body = _html(message)
    assert (
        "<th align='left'>error of plan</th><td>RunParamError: start_ds .. end_ds: start 2024-03-20 is "
        "after end 2024-03-19</td>"
    ) in body
    link = f"http://localhost:8080/dags/customer_analytics_backfill/runs/{quote(run.run_id)}/tasks/plan"
    assert f"<a href='{link}'>" in body


# ---- a run late for its deadline -------------------------------------------------------------
def test_a_nightly_run_not_finished_by_the_deadline_is_told_by_email(alerting, nightly_in_db):
    inbox = alerting
    inbox.received.clear()
    dag = nightly_in_db.dag  # with its Deadline Alert, in the DB
    with time_machine.travel(dt.datetime(2026, 5, 20, 2, 0, 5, tzinfo=UTC), tick=False):
        run_id = create_scheduled_run(NIGHTLY)  # the run of 2026-05-19
    assert deadlines_of(run_id) == [(dt.datetime(2026, 5, 20, 6, 0, tzinfo=UTC), False)]
    try:
        # held back on purpose: its plan ran, then nothing more (no step is started), so the run
        # stays running; at 05:59 nothing is due
        state, plan = run_task(dag, run_id, "plan")
        assert (state, plan["run_plan"]["ds"]) == ("success", "2026-05-19")
        with time_machine.travel(dt.datetime(2026, 5, 20, 5, 59, tzinfo=UTC), tick=False):
            scheduler_checks_deadlines_and_executor_runs_callbacks()
        assert deadlines_of(run_id) == [(dt.datetime(2026, 5, 20, 6, 0, tzinfo=UTC), False)]
        assert inbox.received == []
        # still running at 06:00:01
        with time_machine.travel(dt.datetime(2026, 5, 20, 6, 0, 1, tzinfo=UTC), tick=False):
            assert scheduler_checks_deadlines_and_executor_runs_callbacks() == [(True, None)]  # this run's
        assert deadlines_of(run_id) == [(dt.datetime(2026, 5, 20, 6, 0, tzinfo=UTC), True)]
        assert len(inbox.received) == 1
        _, recipients, message = inbox.received[0]
        assert recipients == RECIPIENTS
        assert message["Subject"] == (
            f"[customer-analytics] LATE {NIGHTLY} ds 2026-05-19: not finished by 2026-05-20 06:00 UTC "
            f"(run {run_id})"
        )
        body = _html(message)
        assert "<td>2026-05-20 06:00 UTC (PIPELINE_ALERT_DEADLINE_UTC=06:00)</td>" in body
        assert "<th align='left'>state at the deadline</th><td>running</td>" in body
    finally:
        end_run(NIGHTLY, run_id)


@pytest.fixture(scope="module")
def nightly_in_db(alerting):
    """The nightly DAG parsed from its file as the dag-processor parses it, in the metadata DB."""
    from tests.harness.scheduling import ScheduledDag

    return ScheduledDag(load_dag(DAG_FILES["nightly"]))


def test_the_nightly_in_the_db_has_its_deadline_from_a_scheduled_runs_logical_date(nightly_in_db):
    from airflow.models.deadline_alert import DeadlineAlert
    from airflow.utils.session import create_session

    with create_session() as session:
        # the alerts' ids, as DagRun.update_state looks them up when a run succeeds
        alerts = [DeadlineAlert.get_by_id(i, session=session) for i in nightly_in_db.scheduler_dag.deadline]
        assert [(a.name, a.reference) for a in alerts] == [
            (
                "nightly run not finished by PIPELINE_ALERT_DEADLINE_UTC",
                {
                    "reference_type": "ScheduledRunLogicalDate",
                    "__class_path": "plugins.deadline_reference.ScheduledRunLogicalDate",
                },
            )
        ]


def _manual_run(logical: dt.datetime) -> str:
    """A run triggered with a logical date (the REST API's way, as the UI's Trigger does)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = SerializedDagModel.get_dag(NIGHTLY, session=session)
        run = dag.create_dagrun(
            run_id=DagRun.generate_run_id(
                run_type=DagRunType.MANUAL, logical_date=logical, run_after=logical
            ),
            logical_date=logical,
            data_interval=dag.timetable.infer_manual_data_interval(run_after=logical),
            run_after=dt.datetime.now(UTC),
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.REST_API,
            state=DagRunState.QUEUED,
            session=session,
        )
        return run.run_id


def _backfill_run(logical: dt.datetime) -> str:
    """The run `airflow backfill create` makes for one date (Airflow's own backfill code)."""
    from airflow.models.backfill import ReprocessBehavior, _create_backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    backfill = _create_backfill(
        dag_id=NIGHTLY,
        from_date=logical,
        to_date=logical,
        max_active_runs=1,
        reverse=False,
        dag_run_conf=None,
        triggering_user_name="test",
        reprocess_behavior=ReprocessBehavior.COMPLETED,
    )
    with create_session() as session:
        (run_id,) = session.scalars(select(DagRun.run_id).where(DagRun.backfill_id == backfill.id)).all()
    end_backfill(backfill.id)  # no other backfill waits
    return run_id


@pytest.mark.parametrize(("kind", "create"), [("manual", _manual_run), ("backfill", _backfill_run)])
def test_a_manual_or_backfill_run_of_an_old_date_has_no_deadline_to_miss(
    nightly_in_db, alerting, kind, create
):
    """A deadline from its 2024 logical date would have passed long before the run was created
    (Missed at once in the grid, its callback queued): the run is late by design and gets none."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    inbox = alerting
    inbox.received.clear()
    logical = dt.datetime(2024, 3, 12, 2, 0, tzinfo=UTC)
    run_id = create(logical)
    try:
        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == NIGHTLY, DagRun.run_id == run_id))
            assert (str(run.run_type), run.logical_date) == (kind, logical)
        assert deadlines_of(run_id) == []
        scheduler_checks_deadlines_and_executor_runs_callbacks()  # what the scheduler's loop does
        assert deadlines_of(run_id) == []  # nothing missed: the grid shows no "Missed"
        assert inbox.received == []
    finally:
        end_run(NIGHTLY, run_id)


def test_channels_are_the_settings_present():
    assert AlertSettings().channels == ()
    assert AlertSettings(emails=("a@b.c",)).channels == ("email",)
    assert AlertSettings(
        slack_webhook="https://hooks.slack.com/services/x", sns_topic_arn="arn"
    ).channels == (
        "slack",
        "sns",
    )
