"""The Repair run action in a real Airflow (`make airflow`'s instance, local target): a nightly run
whose `ingest_sales` step fails (its landing partition is not there yet), the partition arrives,
and the run is repaired from its "Repair run" tab in Chromium by an editor: the same run ends
green, only the failed step and what depends on it ran again, each table's main has one commit
of the run. A viewer gets Airflow's refusal. Slow: `make test-ops`.

It runs after test_ui_browser.py (the file's name): its run of an earlier date would otherwise
be counted in the trend that test expects of the latest date's report, written before it.

The EMR target's repair (a new cluster running the failed step, its dependants, audit and publish)
is covered in-process against moto: tests/reliability/test_repair_run.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import quote

import httpx
import networkx as nx
import pytest

from include import lake as L
from include import pipeline as P
from plugins import run_repair as R
from tests.ops.airflow_api import AirflowApi, wait_for, wait_for_run
from tests.ops.instance import DAG_ID, RUN_TIMEOUT, Server
from tests.ops.test_real_airflow import _ts
from tests.ops.test_ui_browser import _shot, _wait_element, _wait_text

pytestmark = pytest.mark.ops

DS = "2024-06-07"  # a Friday with landing data; no other ops test runs it
OUTPUTS = ["stock_daily", "sales_rolling_30d"]
# the steps those outputs need: the stock branch succeeds, the sales branch fails at its ingest
STOCK = ("run_ingest_stock_ticks", "run_stock_daily")
SALES_FAILED, SALES_AFTER = "run_ingest_sales", ("run_sales_rolling",)
TABLES = {  # what the run writes: zone.table -> the step that commits it
    "processed.stock_ticks": "ingest_stock_ticks",
    "curated.stock_daily": "stock_daily",
    "processed.sales": "ingest_sales",
    "curated.sales_rolling_30d": "sales_rolling",
}


def _dependants(step: str) -> set[str]:
    """The oracle: the step and every step that depends on it, transitively (the pipeline's graph)."""
    graph = nx.DiGraph([(dep, s.name) for s in P.PIPELINE for dep in s.depends_on])
    return {step} | nx.descendants(graph, step)


def _login_token(server: Server, user: str) -> str:
    from scripts.airflow_local import OTHER_USERS

    (password,) = [p for name, _, p in OTHER_USERS if name == user]
    answer = httpx.post(f"{server.url}/auth/token", json={"username": user, "password": password}, timeout=30)
    answer.raise_for_status()
    return answer.json()["access_token"]


def _tab_url(server: Server, run_id: str) -> str:
    return f"{server.url}/run-report/repair/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"


def _main_commits(lake: Path, table: str, run_id: str) -> list[L.Commit]:
    uri = lake.as_uri()
    history = L.main_history(L.open_catalog(uri).load_table(L.table_id(uri, table)))
    return [c for c in history if c.run_id == run_id]


def _open_run_tab(browser, server: Server, run_id: str, tab: str):
    """The run's page, then its tab (a plugin's external view): the browser switched into the
    tab's frame, which is returned."""
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}")
    _wait_text(browser, run_id, tab)
    browser.find_element(By.XPATH, f"//*[self::a or self::button][normalize-space()='{tab}']").click()
    frame = _wait_element(browser, By.CSS_SELECTOR, f"iframe[title='{tab}']")
    browser.switch_to.frame(frame)
    return frame


def _finished(api: AirflowApi, run_id: str) -> dict | None:
    run = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


@pytest.fixture
def editor_browser(airflow_server: Server):
    from selenium.webdriver.common.by import By

    from scripts.airflow_local import OTHER_USERS
    from tests.ops.chrome import headless_chrome

    driver = headless_chrome(1400, 1000)
    driver.set_page_load_timeout(90)
    try:
        driver.get(f"{airflow_server.url}/auth/login?next={quote(f'/dags/{DAG_ID}', safe='')}")
        _wait_text(driver, "Sign in")
        driver.find_element(By.NAME, "username").send_keys("editor")
        driver.find_element(By.NAME, "password").send_keys({n: p for n, _, p in OTHER_USERS}["editor"])
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait_text(driver, DAG_ID)
        yield driver
    finally:
        driver.quit()


def test_a_failed_step_is_repaired_from_the_repair_run_tab_in_the_same_run(
    api: AirflowApi, airflow_server: Server, nightly_dag: dict, ops_lake: Path, editor_browser
):
    from selenium.webdriver.common.by import By

    landing = ops_lake / "landing" / "sales" / f"dt={DS}"
    late = ops_lake / f"late-sales-{DS}"
    assert landing.is_dir(), landing
    shutil.move(landing, late)  # the day's sales have not landed yet
    try:
        run = api.trigger_like_the_ui_form(
            DAG_ID, f"{DS}T02:00:00Z", {"outputs": OUTPUTS, "cluster_profile": "dev"}
        )
        run_id = run["dag_run_id"]
        first = wait_for(f"run {run_id} to end", lambda: _finished(api, run_id), RUN_TIMEOUT, interval=10)
    finally:
        shutil.move(late, landing)  # ... and now they have
    assert first["state"] == "failed", api.failure_report(DAG_ID, run_id)
    before = {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run_id)}
    assert before[SALES_FAILED]["state"] == "failed", api.failure_report(DAG_ID, run_id)
    log = api.task_log(DAG_ID, run_id, SALES_FAILED, 1)
    assert f"missing landing partition file://{landing} (no data files)" in log
    assert {t: before[t]["state"] for t in STOCK} == dict.fromkeys(STOCK, "success")
    assert {t: before[t]["state"] for t in SALES_AFTER} == dict.fromkeys(SALES_AFTER, "upstream_failed")

    # a viewer: the tab shows Airflow's refusal, and a form posted anyway clears nothing
    viewer = {"_token": _login_token(airflow_server, "viewer")}
    shown = httpx.get(_tab_url(airflow_server, run_id), cookies=viewer, timeout=60)
    assert shown.status_code == 403, shown.text
    assert f"Airflow does not allow viewer to clear the task instances of DAG {DAG_ID}" in shown.text
    # (with a form token valid for the viewer's own session: the refusal is Airflow's)
    plan = "0" * 32
    form = {"plan": plan, "csrf": R.csrf_token(viewer["_token"], DAG_ID, run_id, plan)}
    posted = httpx.post(_tab_url(airflow_server, run_id), cookies=viewer, data=form, timeout=60)
    assert posted.status_code == 403, posted.text
    assert f"Airflow does not allow viewer to clear the task instances of DAG {DAG_ID}" in posted.text
    assert api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"] == "failed"

    # an editor, in the UI: the run's Repair run tab, its confirmation, the button
    browser = editor_browser
    frame = _open_run_tab(browser, airflow_server, run_id, "Repair run")
    try:
        page = _wait_text(browser, "Steps it reruns", SALES_FAILED, "run_audit", "run_publish", "With them")
        listed = page.split("Steps it reruns", 1)[1].split("With them", 1)[0]
        # the failed step and every step after it in the DAG (those the run's outputs do not
        # need skip themselves again), audit and publish
        assert re.findall(r"^(run_\w+) \(", listed, re.M) == sorted(
            [f"run_{s}" for s in _dependants("ingest_sales")] + ["run_audit", "run_publish"]
        ), listed
        assert all(f"{t}" in page.split("Not rerun", 1)[1] for t in STOCK), page
        browser.switch_to.default_content()
        _shot(browser, "08-repair-run-confirmation.png")
        browser.switch_to.frame(frame)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait_text(browser, "Repair started", "the run is queued again")
    finally:
        browser.switch_to.default_content()

    repaired = wait_for_run(api, DAG_ID, run_id, RUN_TIMEOUT)  # the same run, green
    assert repaired["dag_run_id"] == run_id
    after = {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run_id)}
    assert {t: ti["state"] for t, ti in after.items() if ti["state"] != "skipped"} == dict.fromkeys(
        [t for t, ti in after.items() if ti["state"] != "skipped"], "success"
    )
    # ran again: the failed step, what depends on it, audit, publish and the run's Spark app;
    # not again: the stock branch (same try, same times)
    for task in (SALES_FAILED, *SALES_AFTER, "run_audit", "run_publish", "start_spark", "stop_spark"):
        assert after[task]["try_number"] == before[task]["try_number"] + 1, task
    for task in ("plan", *STOCK):
        assert (after[task]["try_number"], after[task]["end_date"]) == (1, before[task]["end_date"]), task
    # each table's main: exactly one commit of this run, for its date, by its step
    for table, step in TABLES.items():
        commits = _main_commits(ops_lake, table, run_id)
        assert len(commits) == 1, (table, [c.line() for c in commits])
        assert (commits[0].job, commits[0].dates) == (P.STEPS[step].job, DS), commits[0].line()
    # the stock branch's commits are the first attempt's: made before the repair began
    repair_began = min(_ts(after[t]["start_date"]) for t in ("start_spark", SALES_FAILED))
    for table in ("processed.stock_ticks", "curated.stock_daily"):
        (commit,) = _main_commits(ops_lake, table, run_id)
        assert commit.committed_at < repair_began, (table, commit.line(), repair_began)

    # the repaired run's report, as its Run report tab shows it: the same run, now with the
    # repaired branch's steps (the docs' picture of a repaired run)
    _open_run_tab(browser, airflow_server, run_id, "Run report")
    try:
        _wait_text(browser, f"{DAG_ID}: {DS}", run_id, "ingest_sales", "sales_rolling", "stock_daily")
    finally:
        browser.switch_to.default_content()
    _shot(browser, "09-repaired-run-report.png")
