"""Bad alert settings fail the DAG import naming the variable; an alert channel that cannot be
reached costs one warning and never changes the run it reports on."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import subprocess
import sys

import pytest
import time_machine

from include.alert_settings import AlertSettings
from include.settings import PROJECT_ROOT, SettingsError, load_settings
from tests.harness.airflow_runs import (
    create_scheduled_run,
    deadlines_of,
    end_run,
    scheduler_checks_deadlines_and_executor_runs_callbacks,
    task_sdk_channel,
)
from tests.harness.smtp_inbox import free_port, smtp_connection

UTC = dt.UTC
NIGHTLY = "customer_analytics_nightly"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("PIPELINE_ALERT_EMAIL", "ops.example.com", r"'ops.example.com' is not an e-mail address"),
        ("PIPELINE_ALERT_EMAIL", "ops@example.com,lead", r"'lead' is not an e-mail address"),
        ("PIPELINE_ALERT_EMAIL", "ops@example.com; rm -rf /", r"is not an e-mail address"),
        ("PIPELINE_ALERT_EMAIL", "@example.com", r"is not an e-mail address"),
        ("PIPELINE_ALERT_DEADLINE_UTC", "6am", r"'6am' is not a time HH:MM"),
        ("PIPELINE_ALERT_DEADLINE_UTC", "6:00", r"'6:00' is not a time HH:MM"),
        ("PIPELINE_ALERT_DEADLINE_UTC", "24:00", r"'24:00' is not a time HH:MM"),
        ("PIPELINE_ALERT_DEADLINE_UTC", "06:60", r"'06:60' is not a time HH:MM"),
        ("PIPELINE_ALERT_DEADLINE_UTC", "06:00:00", r"is not a time HH:MM"),
        ("PIPELINE_ALERT_SMTP_CONN_ID", "smtp default", r"is not a connection id"),
        ("PIPELINE_ALERT_SNS_TOPIC_ARN", "pipeline-alerts", r"is not an SNS topic ARN"),
    ],
)
def test_a_malformed_alert_setting_fails_naming_the_variable(var, value, message):
    with pytest.raises(SettingsError, match=var) as err:
        load_settings({var: value})
    assert re.search(message, str(err.value)), str(err.value)


def test_a_slack_webhook_that_is_not_https_is_refused_without_repeating_the_secret():
    webhook = "http://hooks.slack.com/services/T000/B000/s3cr3t"
    with pytest.raises(SettingsError, match="PIPELINE_ALERT_SLACK_WEBHOOK is not an https:// URL") as err:
        load_settings({"PIPELINE_ALERT_SLACK_WEBHOOK": webhook})
    assert "s3cr3t" not in str(err.value)


def test_good_alert_settings_are_read_exactly():
    settings = load_settings(
        {
            "PIPELINE_ALERT_EMAIL": " ops@example.com , data.lead+alerts@corp.example ",
            "PIPELINE_ALERT_DEADLINE_UTC": "07:30",
            "PIPELINE_ALERT_SMTP_CONN_ID": "smtp_alerts",
            "PIPELINE_ALERT_SLACK_WEBHOOK": "https://hooks.slack.com/services/T000/B000/XXXX",
            "PIPELINE_ALERT_SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:pipeline-alerts",
        }
    )
    assert settings.alerts == AlertSettings(
        emails=("ops@example.com", "data.lead+alerts@corp.example"),
        smtp_conn_id="smtp_alerts",
        deadline_utc="07:30",
        slack_webhook="https://hooks.slack.com/services/T000/B000/XXXX",
        sns_topic_arn="arn:aws:sns:eu-west-1:123456789012:pipeline-alerts",
    )
    assert load_settings({}).alerts == AlertSettings()  # no channel; deadline 06:00


@pytest.mark.parametrize(
    ("var", "value", "shown"),
    [
        (
            "PIPELINE_ALERT_EMAIL",
            "ops.example.com",
            "PIPELINE_ALERT_EMAIL: 'ops.example.com' is not an e-mail",
        ),
        ("PIPELINE_ALERT_DEADLINE_UTC", "6am", "PIPELINE_ALERT_DEADLINE_UTC='6am' is not a time HH:MM"),
    ],
)
def test_a_malformed_alert_setting_fails_the_dag_import_naming_it(tmp_path, var, value, shown):
    """What Airflow sees: the DAG file does not import, and the error names the setting."""
    env = {**os.environ, var: value, "PYTHONPATH": str(PROJECT_ROOT), "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", "import runpy; runpy.run_path('dags/customer_analytics_nightly.py')"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"SettingsError: pipeline settings: {shown}" in done.stderr


# ---- a channel that cannot be reached --------------------------------------------------------
@pytest.fixture(scope="module")
def unreachable_smtp(airflow_db, tmp_path_factory, module_monkeypatch):
    """E-mail alerts configured, but nothing listens on the SMTP connection's port."""
    lake = tmp_path_factory.mktemp("unreachable") / "lake"
    lake.mkdir()
    for var, value in {
        "PIPELINE_TARGET": "local",
        "PIPELINE_LAKE": lake.as_uri(),
        "PIPELINE_RETRIES": "0",
        "PIPELINE_ALERT_EMAIL": "ops@example.com",
        "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(free_port()),  # closed: connection refused
    }.items():
        module_monkeypatch.setenv(var, value)


def _alert_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "include.alerts" and r.levelname == "WARNING"]


def test_an_unreachable_smtp_server_costs_one_warning_and_the_failed_run_stays_as_it_was(
    unreachable_smtp, caplog
):
    from tests.harness.dag_runs import run_pipeline_dag

    with caplog.at_level(logging.INFO, logger="include.alerts"), task_sdk_channel():
        run = run_pipeline_dag("nightly", "2024-03-08", {"ingest_start_ds": "2024-03-10"})
    assert run.state == "failed"
    assert sorted(t for t, state in run.task_states.items() if state == "failed") == ["plan", "run_report"]
    [warning] = _alert_warnings(caplog)
    assert warning.startswith("alert not sent via email (ConnectionRefusedError:")
    assert f"FAILED {NIGHTLY} ds 2024-03-08: task plan" in warning
    assert "Callback failed" not in caplog.text  # Airflow saw the callback succeed


def test_an_unreachable_smtp_server_costs_one_warning_and_the_late_run_goes_on(unreachable_smtp, caplog):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.run_local import DAG_FILES, load_dag
    from tests.harness.scheduling import ScheduledDag

    ScheduledDag(load_dag(DAG_FILES["nightly"]))
    with time_machine.travel(dt.datetime(2026, 4, 2, 2, 0, 5, tzinfo=UTC), tick=False):
        run_id = create_scheduled_run(NIGHTLY)
    try:
        with (
            caplog.at_level(logging.INFO, logger="include.alerts"),
            time_machine.travel(dt.datetime(2026, 4, 2, 6, 0, 1, tzinfo=UTC), tick=False),
        ):
            results = scheduler_checks_deadlines_and_executor_runs_callbacks()
        assert (True, None) in results  # the callback itself succeeded
        assert deadlines_of(run_id) == [(dt.datetime(2026, 4, 2, 6, 0, tzinfo=UTC), True)]
        late = [w for w in _alert_warnings(caplog) if "LATE" in w]
        assert len(late) == 1
        assert late[0].startswith("alert not sent via email (ConnectionRefusedError:")
        with create_session() as session:
            state = session.scalar(select(DagRun.state).where(DagRun.run_id == run_id))
        assert state == "queued"  # untouched: the run goes on
    finally:
        end_run(NIGHTLY, run_id)
