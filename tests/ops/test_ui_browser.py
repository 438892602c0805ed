"""The Airflow UI in headless Chromium (Debian's chromium + chromium-driver), as a user sees it:
log in, list the DAGs, open the nightly DAG, open its trigger form with the Params, open the
finished run's grid, open a run's "Run report" tab.
Each page is saved to docs/screenshots/. Slow: `make test-ops` (after the triggered run)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from include import pipeline as P
from tests.ops.chrome import headless_chrome
from tests.ops.instance import DAG_ID, MAINTENANCE_DAG_ID, ROLLBACK_DAG_ID, ROOT

pytestmark = pytest.mark.ops

SHOTS = ROOT / "docs" / "screenshots"
PAGE_TIMEOUT = 90  # the React UI on 2 shared cores


@pytest.fixture(scope="module")
def browser(airflow_server) -> Iterator:
    driver = headless_chrome(1400, 1000)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, *texts: str, timeout: float = PAGE_TIMEOUT) -> str:
    """Until every one of `texts` is on the page; fails naming the missing ones."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline, body = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except StaleElementReferenceException:  # the page was replaced between find and read
            body = ""
        if all(t in body for t in texts):
            return body
        time.sleep(1)
    missing = [t for t in texts if t not in body]
    raise AssertionError(f"{driver.current_url}: {missing} not shown; page text:\n{body[:2000]}")


def _shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


@pytest.fixture(scope="module")
def logged_in(browser, airflow_server):
    """The simple auth manager's login page, filled in as a person would."""
    from selenium.webdriver.common.by import By

    from scripts.airflow_local import ADMIN_PASSWORD, ADMIN_USER

    browser.get(f"{airflow_server.url}/auth/login?next={quote(f'/dags/{DAG_ID}', safe='')}")
    _wait_text(browser, "Sign in")
    browser.find_element(By.NAME, "username").send_keys(ADMIN_USER)
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_text(browser, DAG_ID, "Trigger")
    return browser


def test_dag_list_shows_the_pipeline_and_its_upkeep_dags(logged_in, airflow_server, nightly_run):
    logged_in.get(f"{airflow_server.url}/dags")
    # The nightly run (daily 02:00), weekly maintenance (Sunday 04:00), rollback (manual only).
    _wait_text(logged_in, DAG_ID, "0 2 * * *", MAINTENANCE_DAG_ID, "0 4 * * 0", ROLLBACK_DAG_ID)
    _shot(logged_in, "00-dag-list.png")


def test_dag_page_shows_the_nightly_dag_with_its_tasks(logged_in, airflow_server, nightly_run):
    logged_in.get(f"{airflow_server.url}/dags/{DAG_ID}")
    body = _wait_text(
        logged_in, DAG_ID, "Schedule", "0 2 * * *", "plan", "start_spark", "ingest_sales",
        "segments", "register", "stop_spark",
    )  # fmt: skip
    # the grid's rows: one per step of the spec (its task group, collapsed), then audit, publish
    # and register, not the tasks inside them
    rows = set(body.splitlines())
    assert {s.name for s in P.PIPELINE} | {"audit", "publish", "register"} <= rows
    assert not {f"run_{s.name}" for s in P.PIPELINE} & rows
    _shot(logged_in, "01-nightly-dag.png")


def test_trigger_form_shows_every_param_with_its_title_and_default(logged_in, airflow_server, nightly_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    logged_in.get(f"{airflow_server.url}/dags/{DAG_ID}")
    _wait_text(logged_in, DAG_ID, "Trigger")
    logged_in.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']").click()
    _wait_text(
        logged_in,
        f"Trigger Dag - {DAG_ID}",
        "Logical Date",
        "Run Parameters",
        "Date to build",
        "Cluster profile",
        "Outputs to build",
        "Load landing history from",
        "customer_segments",  # the outputs Param's default lists every output
    )
    _shot(logged_in, "02-trigger-form-params.png")
    # Close without submitting: this test only looks.
    logged_in.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def test_trigger_form_says_which_date_an_empty_date_field_builds(logged_in, airflow_server):
    """The form's first field is the date to build, and before Trigger is pressed it says in words
    which date an empty field builds (include/run_dates.py); saved as its own screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from include.run_dates import DS_DESCRIPTION

    logged_in.get(f"{airflow_server.url}/dags/{DAG_ID}")
    _wait_text(logged_in, DAG_ID, "Trigger")
    logged_in.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']").click()
    body = _wait_text(logged_in, f"Trigger Dag - {DAG_ID}", "Date to build", DS_DESCRIPTION[:60])
    # the date field comes before the other Params
    assert body.index("Date to build") < body.index("Cluster profile")
    heading = logged_in.find_element(By.XPATH, "//*[text()='Run Parameters']")
    logged_in.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    _shot(logged_in, "06-trigger-form-date-to-build.png")
    logged_in.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def test_grid_of_the_finished_run_shows_every_task(logged_in, airflow_server, nightly_run):
    run_id = nightly_run["dag_run_id"]
    logged_in.get(f"{airflow_server.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}")
    # plan, start_spark, one task per step, run_audit, run_publish, one register_ per output,
    # stop_spark, run_report
    tasks = f"{len(P.PIPELINE) + len(P.OUTPUTS) + 6} Task Instances"
    _wait_text(
        logged_in, run_id, "Success", tasks, "start_spark", "run_ingest_sales", "run_segments",
        "stop_spark", "run_report",
    )  # fmt: skip
    _shot(logged_in, "03-finished-run-grid.png")


def test_the_run_report_is_a_tab_of_the_run_and_shows_the_report(logged_in, airflow_server, api, nightly_run):
    """From a finished run, click its "Run report" tab (the plugin's view) and land on the report:
    the steps with their times, rows and task log links, and the trends of the runs up to it. The
    run: the latest date's successful run of the nightly DAG (after test_real_airflow's backfill,
    2024-06-13, with 4 runs in its trends; on its own the triggered run, with 1)."""
    from selenium.webdriver.common.by import By

    runs = [r for r in api.dag_runs(DAG_ID) if r["state"] == "success" and r.get("logical_date")]
    run = max(runs, key=lambda r: r["logical_date"])
    ds, run_id = run["logical_date"][:10], run["dag_run_id"]
    earlier = {r["logical_date"][:10] for r in runs if r["logical_date"][:10] <= ds}
    trend = f"Last {len(earlier)} runs" if len(earlier) > 1 else "This run (no earlier report yet)"
    logged_in.get(f"{airflow_server.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}")
    _wait_text(logged_in, run_id, "Run report")
    logged_in.find_element(By.XPATH, "//*[self::a or self::button][normalize-space()='Run report']").click()
    frame = _wait_element(logged_in, By.CSS_SELECTOR, "iframe[title='Run report']")
    assert f"/run-report/dags/{DAG_ID}/runs/" in frame.get_attribute("src")
    logged_in.switch_to.frame(frame)
    try:
        _wait_text(
            logged_in, f"{DAG_ID}: {ds}", run_id, "queued s", "start-up s", "Spark s", "ingest_sales",
            "task log", trend, "curated.customer_segments", "no cost",
        )  # fmt: skip
        page_url = logged_in.execute_script("return location.href")
    finally:
        logged_in.switch_to.default_content()
    _shot(logged_in, "05-run-report-tab.png")
    # The same page on its own (what the tab frames), whole: the docs' picture of the report.
    logged_in.get(page_url)
    _wait_text(logged_in, "queued s", trend)
    logged_in.set_window_size(1000, 1000)
    width, height = logged_in.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    logged_in.set_window_size(max(1000, int(width) + 40), min(int(height) + 140, 4000))
    try:
        _shot(logged_in, "04-run-report-page.png")
    finally:
        logged_in.set_window_size(1400, 1000)


def _wait_element(driver, by: str, value: str, timeout: float = PAGE_TIMEOUT):
    from selenium.common.exceptions import NoSuchElementException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return driver.find_element(by, value)
        except NoSuchElementException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
