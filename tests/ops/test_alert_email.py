"""A failed run's alert as a person receives it: the nightly DAG fails (its `plan` refuses a history
start after the run's date) in a throwaway Airflow of its own (dag.test, in a subprocess), a
local SMTP server receives the alert, and headless Chromium renders the message (its headers and
HTML body) to docs/screenshots/07-failed-run-alert-email.png. Slow only for the browser and the
Airflow home's migration: `make test-ops`."""

from __future__ import annotations

import html
import os
import subprocess
import sys

import pytest

from tests.harness.smtp_inbox import Inbox, free_port, smtp_connection
from tests.ops.chrome import headless_chrome
from tests.ops.instance import DAG_ID, ROOT

pytestmark = pytest.mark.ops

SHOT = ROOT / "docs" / "screenshots" / "07-failed-run-alert-email.png"
RECIPIENTS = ["data-oncall@example.com", "analytics-lead@example.com"]
FAILING_DS, HISTORY_AFTER_IT = "2024-06-10", "2024-06-12"  # refused by `plan`: the run fails there

# The run, as `python dags/customer_analytics_nightly.py` runs it, with the Task SDK channel Airflow's
# dag-processor gives DAG callbacks (tests/harness/airflow_runs.py says why dag.test() needs it).
RUN = f"""
from pathlib import Path
import sys
from include.run_local import DAG_FILES, load_dag, prepare_airflow, run_dag_test
prepare_airflow(Path(sys.argv[1]))
from tests.harness.airflow_runs import task_sdk_channel
with task_sdk_channel():
    conf = {{"ingest_start_ds": "{HISTORY_AFTER_IT}"}}
    run = run_dag_test(load_dag(DAG_FILES["nightly"]), "{FAILING_DS}", conf)
print("RUN", run.run_id, run.state)
"""


@pytest.fixture(scope="module")
def received(tmp_path_factory):
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    home, lake = tmp_path_factory.mktemp("alert-airflow"), tmp_path_factory.mktemp("alert-lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "AIRFLOW"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PIPELINE_LAKE": lake.as_uri(),
            "PIPELINE_RETRIES": "0",
            "PIPELINE_ALERT_EMAIL": ",".join(RECIPIENTS),
            "AIRFLOW_CONN_SMTP_DEFAULT": smtp_connection(controller.port),
        }
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", RUN, str(home)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        controller.stop()
    run = [line.split() for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert run, f"the run did not finish:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (_, run_id, state), *_ = run
    return run_id, state, inbox.received


def test_the_failed_runs_alert_arrives_once_naming_the_cause(received):
    run_id, state, messages = received
    assert state == "failed"
    assert len(messages) == 1
    _, recipients, message = messages[0]
    assert recipients == RECIPIENTS
    assert (
        message["Subject"]
        == f"[customer-analytics] FAILED {DAG_ID} ds {FAILING_DS}: task plan (run {run_id})"
    )
    body = message.get_body(preferencelist=("html",)).get_content()
    assert (
        "<th align='left'>error of plan</th><td>RunParamError: ingest_start_ds .. ds: start "
        f"{HISTORY_AFTER_IT} is after end {FAILING_DS}</td>"
    ) in body


def test_the_alert_as_received_renders_in_a_browser(received, tmp_path):
    from selenium.webdriver.common.by import By

    _, _, messages = received
    _, _, message = messages[0]
    body = message.get_body(preferencelist=("html",)).get_content()
    headers = "".join(
        f"<tr><th align='left'>{name}</th><td>{html.escape(str(message[name]))}</td></tr>"
        for name in ("From", "To", "Date", "Subject")
    )
    page = tmp_path / "alert.html"
    page.write_text(
        "<html><body style='font-family: sans-serif; margin: 24px'>"
        f"<table style='border-bottom: 1px solid #999; margin-bottom: 12px'>{headers}</table>{body}"
        "</body></html>"
    )
    driver = headless_chrome(1100, 600)
    try:
        driver.get(page.as_uri())
        text = driver.find_element(By.TAG_NAME, "body").text
        assert f"FAILED {DAG_ID} ds {FAILING_DS}: task plan" in text
        assert "Open the task's log" in text
        SHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SHOT)), SHOT
    finally:
        driver.quit()
    assert SHOT.stat().st_size > 10_000  # a rendered page, not a blank one
