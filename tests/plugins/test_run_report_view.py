"""The "Run report" tab: the plugin Airflow loads, its FastAPI app (FastAPI's test client, Airflow's
own auth manager and access check), the page it serves from a local lake and from S3 (moto), and
how it finds a run's page (the run_report task's XCom, through a real dag.test run)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

import tests.harness.airflow_home as airflow_setup
from include.lake_files import report_uri
from include.run_report.task import PAGE_XCOM_KEY
from plugins import run_report_view as V

DAG_ID = "customer_analytics_nightly"
RUN_ID = "manual__2024-06-10T02:00:00+00:00"
PAGE = "<!doctype html><html><body><h1>the report</h1></body></html>"


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    """Session cookies of Airflow's simple auth manager: an admin, a viewer, a user with no role."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    airflow_setup.migrate_db()  # a token is checked against the revoked ones in the DB
    manager = create_auth_manager()
    manager.init()
    users = {"admin": "admin", "viewer": "viewer", "nobody": None}
    return {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in users.items()
    }


def _lake_page(tmp_path: Path, run_id: str = RUN_ID) -> dict[str, str]:
    """A report and its page where run_report writes them, and the XCom it pushes."""
    lake = tmp_path.as_uri()
    json_uri, html_uri = (report_uri(lake, DAG_ID, "2024-06-10", n) for n in ("report.json", "report.html"))
    for uri, text in ((json_uri, json.dumps({"run_id": run_id})), (html_uri, PAGE)):
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"json": json_uri, "html": html_uri}


def _client(find):
    from fastapi.testclient import TestClient

    return TestClient(V.create_app(find=find))


def _get(client, token: str | None, run_id: str = RUN_ID):
    from urllib.parse import quote

    cookies = {"_token": token} if token else {}
    # the UI fills the tab's URL template with encodeURIComponent(run id)
    return client.get(f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}", cookies=cookies)


def test_airflow_loads_the_tab_on_every_run_and_mounts_the_app_under_run_report():
    from airflow import plugins_manager

    external_views, _ = plugins_manager._get_ui_plugins()
    (tab,) = [v for v in external_views if v["name"] == "Run report"]
    assert tab == {
        "name": "Run report",
        "href": "/run-report/dags/{DAG_ID}/runs/{RUN_ID}",
        "destination": "dag_run",
        "url_route": "run-report",
    }
    apps, _ = plugins_manager.get_fastapi_plugins()
    (app,) = [a for a in apps if a["name"] == "Run report"]
    assert app["url_prefix"] == "/run-report"
    paths = {route.path for route in app["app"].routes}
    assert "/dags/{dag_id}/runs/{run_id:path}" in paths


def test_the_page_is_the_file_the_runs_task_wrote_served_to_a_user_who_may_read_the_runs(tmp_path, tokens):
    where = _lake_page(tmp_path)
    asked = []
    client = _client(lambda dag_id, run_id: asked.append((dag_id, run_id)) or where)

    for user in ("admin", "viewer"):
        response = _get(client, tokens[user])
        assert response.status_code == 200, response.text
        assert response.text == PAGE
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src" not in response.headers["content-security-policy"]
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert asked == [(DAG_ID, RUN_ID), (DAG_ID, RUN_ID)]


def test_without_a_session_or_with_no_right_to_the_dag_there_is_no_page(tmp_path, tokens):
    where = _lake_page(tmp_path)
    asked = []
    client = _client(lambda dag_id, run_id: asked.append(run_id) or where)
    assert _get(client, None).status_code == 401
    assert _get(client, "not-a-token").status_code == 403
    assert _get(client, tokens["nobody"]).status_code == 403
    assert asked == []  # refused before anything was looked up


def test_a_run_without_a_page_a_missing_file_and_a_replaced_report_say_so(tmp_path, tokens):
    admin = tokens["admin"]
    response = _get(_client(lambda d, r: None), admin)
    assert (response.status_code, "has no run report page" in response.text) == (404, True)
    response = _get(_client(lambda d, r: {"html": "file:///nowhere/report.html"}), admin)
    assert (response.status_code, "/nowhere/report.html is not there" in response.text) == (404, True)
    # a later run of the same date wrote the date's report: this run's tab says whose it is now
    where = _lake_page(tmp_path, run_id="manual__2024-06-10T09:00:00+00:00")
    response = _get(_client(lambda d, r: where), admin)
    assert response.status_code == 404
    assert "now belongs to run manual__2024-06-10T09:00:00+00:00" in response.text
    # only file:// and s3:// are read, whatever an XCom says
    response = _get(_client(lambda d, r: {"html": "/etc/passwd"}), admin)
    assert response.status_code == 404


@mock_aws
def test_on_emr_the_page_is_read_from_s3_beside_the_json(tokens):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake-bucket")
    lake = "s3://lake-bucket/lake"
    json_uri, html_uri = (report_uri(lake, DAG_ID, "2024-06-10", n) for n in ("report.json", "report.html"))
    for uri, text in ((json_uri, json.dumps({"run_id": RUN_ID})), (html_uri, PAGE)):
        s3.put_object(Bucket="lake-bucket", Key=uri.removeprefix("s3://lake-bucket/"), Body=text.encode())
    where = {"json": json_uri, "html": html_uri, "aws_conn_id": None, "region": "us-east-1"}
    response = _get(_client(lambda d, r: where), tokens["admin"])
    assert (response.status_code, response.text) == (200, PAGE)


def test_the_page_is_found_by_the_run_report_tasks_xcom_in_airflows_database():
    """A one-task DAG run by dag.test (Airflow's DB, its task runner's XCom push, as run_report does)."""
    from airflow.sdk import DAG, get_current_context, task

    airflow_setup.migrate_db()
    value = {"json": "file:///l/report.json", "html": "file:///l/report.html"}
    with DAG("report_view_lookup", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) as dag:

        @task(task_id="run_report")
        def run_report() -> None:
            get_current_context()["ti"].xcom_push(key=PAGE_XCOM_KEY, value=value)

        run_report()
    _serialize(dag)  # as the dag-processor would (dag.test runs serialized DAGs only)
    run = dag.test(logical_date=dt.datetime(2024, 6, 10, 2, tzinfo=dt.UTC))
    assert run.state == "success"
    assert V.find_page("report_view_lookup", run.run_id) == value
    assert V.find_page("report_view_lookup", "manual__another") is None
    assert V.find_page("another_dag", run.run_id) is None
    assert V.XCOM_KEY == PAGE_XCOM_KEY  # the plugin reads the key the task pushes


def _serialize(dag) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        dags = [LazyDeserializedDAG.from_dag(dag)]
        update_dag_parsing_results_in_db("dags-folder", None, dags, {}, None, set(), session=session)
