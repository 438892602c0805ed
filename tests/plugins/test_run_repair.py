"""The "Repair run" tab (plugins/run_repair.py through plugins/run_report_view.py's app).

In-process: the nightly DAG of each target written to the metadata DB as Airflow parses it, a
run of it resolved by the scheduler's own dependency rules with one step failing
(tests/harness/scheduling.py), and Airflow's REST API itself (its app, its permission checks,
its clear) answering the plugin as it answers the UI. What a repair clears is checked against
the DAG's graph (networkx: the failed tasks, everything downstream of them) plus the target's
setup and teardown; who may repair against the simple auth manager's roles (a viewer may read
the run but not clear it; a `user` may).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

import networkx as nx
import pytest

import tests.harness.airflow_home as airflow_setup
from plugins import run_repair as R
from plugins import run_report_view as V
from tests.harness.settings import EMR_ENV, SERVERLESS_ENV

DAG_ID = "customer_analytics_nightly"
TARGET_ENV = {
    "local": {
        "PIPELINE_TARGET": "local",
        "PIPELINE_LAKE": "file:///tmp/repair-test-lake",
        "PIPELINE_RETRIES": "0",
    },
    "emr": EMR_ENV,
    "emr-serverless": SERVERLESS_ENV,
}
SETUP_TEARDOWN = {
    "local": ("start_spark", "stop_spark"),
    "emr": ("create_cluster", "terminate_cluster"),
    "emr-serverless": ("create_application", "delete_application"),
}
DAYS = {
    "local": dt.datetime(2024, 5, 6, 2, tzinfo=dt.UTC),
    "emr": dt.datetime(2024, 5, 7, 2, tzinfo=dt.UTC),
    "emr-serverless": dt.datetime(2024, 5, 8, 2, tzinfo=dt.UTC),
}
FAILING = "run_segments"


# ---- the pure rules --------------------------------------------------------------------------
def _ti(task_id: str, state: str | None, map_index: int = -1) -> dict[str, Any]:
    return {"task_id": task_id, "state": state, "map_index": map_index}


def test_the_failed_tasks_are_what_a_repair_clears_each_mapped_instance_by_its_index():
    run = {"dag_run_id": "r1", "state": "failed"}
    tis = [
        _ti("plan", "success"),
        _ti("run_segments", "failed"),
        _ti("run_audit", "upstream_failed"),
        _ti("register", "failed", 2),
        _ti("register", "success", 1),
        _ti("run_report", "failed"),
    ]
    assert R.plan_repair(run, tis) == [("register", 2), "run_report", "run_segments"]
    # only upstream_failed left (a state set by hand): those are what it clears
    assert R.plan_repair(run, [_ti("a", "success"), _ti("b", "upstream_failed")]) == ["b"]
    body = R.clear_body("r1", ["run_segments", ("register", 2)], dry_run=False)
    assert body == {
        "dry_run": False,
        "dag_run_id": "r1",
        "task_ids": ["run_segments", ["register", 2]],
        "include_downstream": True,
        "include_upstream": False,
        "include_future": False,
        "include_past": False,
        "only_failed": False,
    }


@pytest.mark.parametrize(
    ("state", "tis", "status", "says"),
    [
        ("running", [_ti("run_segments", "running")], 409, "is still running"),
        ("queued", [], 409, "is still queued"),
        ("success", [_ti("run_segments", "success")], 409, "succeeded: there is nothing to repair"),
        ("failed", [_ti("run_a", "failed"), _ti("run_b", "deferred")], 409, "still going (run_b)"),
        ("failed", [_ti("run_a", "success"), _ti("run_b", "skipped")], 409, "none of its tasks did"),
    ],
)
def test_a_run_that_is_not_failed_or_still_going_or_with_nothing_failed_is_refused(state, tis, status, says):
    with pytest.raises(R.Refusal) as refused:
        R.plan_repair({"dag_run_id": "r1", "state": state}, tis)
    assert refused.value.status == status
    assert says in refused.value.text


def test_the_pages_escape_what_they_show_and_allow_no_script():
    plan = R.Repair(
        dag_id="d<script>",
        run_id="r'1\"><img src=x onerror=alert(1)>",
        roots=["run_<b>"],
        cleared=[{"task_id": "run_<b>", "map_index": -1, "state": "failed"}],
        kept_steps=["run_<i>"],
    )
    page = R.confirmation_page(plan, "tok'en")
    for raw in ("<script>", "<img", "<b>", "<i>"):
        assert raw not in page
    assert "r&#x27;1&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "value='tok&#x27;en'" in page
    refusal = R.refusal_page(R.Refusal("<h1>", "<script>alert(1)</script>", 409))
    assert "<script>" not in refusal
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in refusal
    assert "script-src" not in R.PAGE_POLICY
    assert R.PAGE_POLICY.startswith("default-src 'none'")
    assert "form-action 'self'" in R.PAGE_POLICY


# ---- the nightly of each target in the metadata DB, a failed run, Airflow's own API ----------
@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    """Session tokens of Airflow's simple auth manager: a viewer, a `user` (may edit DAG runs),
    an admin and someone with no role."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    airflow_setup.migrate_db()
    manager = create_auth_manager()
    manager.init()
    roles = {"viewer": "viewer", "editor": "user", "admin": "admin", "nobody": None}
    return {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in roles.items()
    }


@pytest.fixture(scope="module")
def core_api(airflow_db, tokens):
    """Airflow's REST API app in this process; the plugin's ApiCall through it."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:

        def call(method: str, path: str, token: str, body: Any, query: Any) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"}
            response = client.request(method, "/api/v2" + path, json=body, params=query, headers=headers)
            return response.status_code, response.json() if response.content else None

        yield call


@pytest.fixture(scope="module", params=["local", "emr", "emr-serverless"])
def failed_run(request, airflow_db, core_api) -> tuple[str, Any, str]:
    """(target, DAG, run id): a nightly run of the target in which run_segments failed."""
    from include.run_local import DAG_FILES, load_dag
    from tests.harness.scheduling import ScheduledDag

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("PIPELINE_")]:
            mp.delenv(key)
        for key, value in TARGET_ENV[request.param].items():
            mp.setenv(key, value)
        scheduled = ScheduledDag(load_dag(DAG_FILES["nightly"]))
    # the scheduler hands a finished run's callbacks to the dag-processor; none here (no alert mail)
    scheduled.scheduler_dag.on_success_callback = scheduled.scheduler_dag.on_failure_callback = None
    states = scheduled.resolve_run(
        logical_date=DAYS[request.param],
        conf={},
        # run_report fails a run whose step failed, after writing the report (include/run_report)
        decide=lambda task, ti: "failed" if task.task_id in (FAILING, "run_report") else "success",
    )
    assert states[FAILING] == "failed"
    run_id = _run_ids()[-1]
    return request.param, scheduled.dag, run_id


def _run_ids() -> list[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == DAG_ID).order_by(DagRun.id)))


def _states(run_id: str) -> dict[str, str | None]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id
            )
        )
        return {task_id: (str(state) if state is not None else None) for task_id, state in rows}


def _set_run_state(run_id: str, state: str) -> None:
    from tests.harness.airflow_runs import end_run

    end_run(DAG_ID, run_id, state)


def expected_clear(dag: Any, target: str, failed: set[str]) -> set[str]:
    """The oracle: the failed tasks and all their descendants in the DAG's graph, with the
    target's setup and its teardown (a cleared task on the run's cluster or Spark app brings them)."""
    graph = nx.DiGraph([(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids])
    return failed.union(*(nx.descendants(graph, t) for t in failed)) | set(SETUP_TEARDOWN[target])


def _plugin(core_api):
    from fastapi.testclient import TestClient

    return TestClient(V.create_app(api=core_api))


def _url(run_id: str, dag_id: str = DAG_ID) -> str:
    from urllib.parse import quote

    # the UI fills the tab's URL template with encodeURIComponent(run id)
    return f"/repair/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def _form(page: str) -> dict[str, str]:
    return dict(re.findall(r"<input type='hidden' name='(\w+)' value='([^']*)'>", page))


def _listed(page: str, heading: str) -> list[str]:
    section = page.split(f"<h2 style='font-size:1.1em'>{heading}", 1)[1].split("</ul>", 1)[0]
    return re.findall(r"<li><code>([^<]+)</code>", section)


def test_a_repair_clears_the_failed_steps_their_dependants_and_the_targets_setup_and_teardown(
    failed_run, core_api, tokens
):
    target, dag, run_id = failed_run
    before = _states(run_id)
    failed = {t for t, s in before.items() if s == "failed"}
    assert FAILING in failed
    plan = R.prepare(core_api, tokens["editor"], "editor", DAG_ID, run_id)  # Airflow's dry run
    assert {ti["task_id"] for ti in plan.cleared} == expected_clear(dag, target, failed)
    assert [ti["task_id"] for ti in plan.steps] == ["run_audit", "run_publish", "run_segments"]
    steps = {t for t in dag.task_dict if t.startswith("run_") and t != "run_report"}
    assert plan.kept_steps == sorted(steps - {"run_audit", "run_publish", "run_segments"})
    assert _states(run_id) == before  # a dry run


def test_an_editor_confirms_and_the_run_is_cleared_as_confirmed_in_the_same_run(failed_run, core_api, tokens):
    target, dag, run_id = failed_run
    before = _states(run_id)
    client = _plugin(core_api)
    cookies = {"_token": tokens["editor"]}
    shown = client.get(_url(run_id), cookies=cookies)
    assert shown.status_code == 200, shown.text
    assert shown.headers["content-security-policy"] == R.PAGE_POLICY
    assert _listed(shown.text, "Steps it reruns") == ["run_audit", "run_publish", "run_segments"]
    failed = {t for t, s in before.items() if s == "failed"}
    others = expected_clear(dag, target, failed) - {"run_audit", "run_publish", "run_segments"}
    assert sorted(_listed(shown.text, "With them")) == sorted(others)
    form = _form(shown.text)
    assert set(form) == {"csrf", "plan"}

    done = client.post(_url(run_id), cookies=cookies, data=form, headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 200, done.text
    assert "Repair started" in done.text
    after = _states(run_id)
    cleared = expected_clear(dag, target, failed)
    assert {t for t, s in after.items() if s is None} == cleared
    assert {t: s for t, s in after.items() if t not in cleared} == {
        t: s for t, s in before.items() if t not in cleared
    }
    assert _run_state(run_id) == "queued"  # the same run goes on: the scheduler picks it up

    # confirmed once: the same form again finds a run that is not failed any more
    again = client.post(_url(run_id), cookies=cookies, data=form)
    assert again.status_code == 409
    assert "is still queued" in again.text
    _set_run_state(run_id, "failed")  # for the next test of this target


def _run_state(run_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return str(session.scalar(select(DagRun.state).where(DagRun.run_id == run_id)))


def test_a_viewer_sees_airflows_refusal_and_nothing_is_cleared(failed_run, core_api, tokens):
    _, _, run_id = failed_run
    _fail_again(run_id)
    before = _states(run_id)
    client = _plugin(core_api)
    cookies = {"_token": tokens["viewer"]}
    shown = client.get(_url(run_id), cookies=cookies)
    assert shown.status_code == 403
    assert f"Airflow does not allow viewer to clear the task instances of DAG {DAG_ID}" in shown.text
    assert "<form" not in shown.text
    # a viewer posting a form with a valid token for their own session: still Airflow's no
    plan = R.Repair(DAG_ID, run_id, [], [], []).fingerprint()
    form = {"csrf": R.csrf_token(tokens["viewer"], DAG_ID, run_id, plan), "plan": plan}
    posted = client.post(_url(run_id), cookies=cookies, data=form)
    assert posted.status_code == 403
    assert "Airflow does not allow viewer to clear" in posted.text
    assert _states(run_id) == before
    # no session, or a user Airflow gives no access to the DAG: the tab itself is refused
    assert client.get(_url(run_id)).status_code == 401
    assert client.get(_url(run_id), cookies={"_token": tokens["nobody"]}).status_code == 403


def _fail_again(run_id: str) -> None:
    """The run back to failed with run_segments failed (a repaired run of an earlier test)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.run_id == run_id, TaskInstance.state.is_(None))
            .values(state="upstream_failed")
        )
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.run_id == run_id, TaskInstance.task_id == FAILING)
            .values(state="failed")
        )
    _set_run_state(run_id, "failed")


def test_a_post_not_confirmed_from_the_tab_or_for_another_plan_clears_nothing(failed_run, core_api, tokens):
    _, _, run_id = failed_run
    _fail_again(run_id)
    before = _states(run_id)
    client = _plugin(core_api)
    cookies = {"_token": tokens["editor"]}
    form = _form(client.get(_url(run_id), cookies=cookies).text)
    forged = [
        ({}, {}),  # no token at all
        # a token made for another session
        ({**form, "csrf": R.csrf_token(tokens["admin"], DAG_ID, run_id, form["plan"])}, {}),
        (form, {"Sec-Fetch-Site": "cross-site"}),  # posted by another site
    ]
    for data, headers in forged:
        response = client.post(_url(run_id), cookies=cookies, data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
        assert "not confirmed from its Repair run tab" in response.text
    # a token for another plan (what the run would clear changed since it was shown)
    other = "0" * 32
    data = {"plan": other, "csrf": R.csrf_token(tokens["editor"], DAG_ID, run_id, other)}
    response = client.post(_url(run_id), cookies=cookies, data=data)
    assert response.status_code == 409
    assert "has changed since the confirmation was shown: nothing was cleared" in response.text
    assert _states(run_id) == before


def test_running_and_green_runs_and_bad_ids_are_refused_with_a_message(failed_run, core_api, tokens):
    _, _, run_id = failed_run
    _fail_again(run_id)
    client = _plugin(core_api)
    cookies = {"_token": tokens["admin"]}
    try:
        for state, says in (("running", "is still running"), ("success", "there is nothing to repair")):
            _set_run_state(run_id, state)
            response = client.get(_url(run_id), cookies=cookies)
            assert response.status_code == 409
            assert says in response.text
            assert "<form" not in response.text
    finally:
        _set_run_state(run_id, "failed")
    for dag_id, run in ((DAG_ID, "manual__x<script>"), ("bad dag", run_id)):
        response = client.get(_url(run, dag_id), cookies=cookies)
        assert response.status_code == 400
        assert "<script>" not in response.text
    response = client.get(_url("manual__2099-01-01T00:00:00+00:00"), cookies=cookies)
    assert response.status_code == 404
    assert "Airflow has no run manual__2099-01-01T00:00:00+00:00" in response.text


def test_airflow_loads_the_repair_tab_on_every_run():
    from airflow import plugins_manager

    external_views, _ = plugins_manager._get_ui_plugins()
    (tab,) = [v for v in external_views if v["name"] == "Repair run"]
    assert tab == {
        "name": "Repair run",
        "href": "/run-report/repair/dags/{DAG_ID}/runs/{RUN_ID}",
        "destination": "dag_run",
        "url_route": "repair-run",
    }
    # the step tasks the page lists are the project's (include/run_plan.step_task_ids)
    from include.run_plan import step_task_ids

    assert all(R.step_task(t) for name in ("segments", "audit") for t in step_task_ids(name))
    assert not R.step_task(V.TASK_ID)
