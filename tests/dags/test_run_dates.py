"""Which date a nightly run builds, through Airflow's REST API with the wall clock injected.

Airflow's FastAPI app runs in this process on the tests' metadata DB; every trigger happens at a
frozen instant (time-machine), so the run's `run_after` is known. Each test then runs the run's
real `plan` task (as dag.test does, through the Task SDK) and reads the `ds` it planned. The
oracle is the calendar: FROZEN is 2026-03-15 09:30 UTC, so the last complete UTC day is 2026-03-14.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from typing import Any

import pytest
import time_machine

from include import pipeline as P
from include.run_dates import last_complete_day, run_ds
from include.run_local import DAG_FILES, load_dag
from include.run_plan import PLAN_XCOM_KEY, RunPlan
from tests.harness.airflow_runs import create_scheduled_run, end_backfill, end_run, run_task

UTC = dt.UTC
FROZEN = dt.datetime(2026, 3, 15, 9, 30, tzinfo=UTC)  # "now" of every trigger below
LAST_COMPLETE = "2026-03-14"
NIGHTLY = "customer_analytics_nightly"
BACKFILL = "customer_analytics_backfill"
NOW = "the trigger form's pre-filled logical date: the instant of the trigger"
_MINUTES = itertools.count()


# ---- the rule, as a pure function (every branch, exact answers) ------------------------------
def _ds(run_type="manual", logical=None, start=None, after=FROZEN, requested=None) -> str:
    return run_ds(
        run_type=run_type,
        logical_date=logical,
        data_interval_start=start,
        run_after=after,
        requested=requested,
    )[0]


def test_the_last_complete_day_is_the_utc_day_before_the_trigger():
    assert last_complete_day(FROZEN) == LAST_COMPLETE
    assert last_complete_day(dt.datetime(2026, 3, 15, 0, 0, tzinfo=UTC)) == "2026-03-14"
    assert last_complete_day(dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC)) == "2026-03-13"
    # 01:30 in Kolkata on the 15th is 20:00 UTC on the 14th: UTC decides, not the trigger's zone
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert last_complete_day(dt.datetime(2026, 3, 15, 1, 30, tzinfo=ist)) == "2026-03-13"


@pytest.mark.parametrize(
    ("logical", "expected"),
    [
        (None, LAST_COMPLETE),  # the REST API without a logical date
        (FROZEN, LAST_COMPLETE),  # the form's pre-filled "now"
        (dt.datetime(2026, 3, 15, 0, 0, tzinfo=UTC), LAST_COMPLETE),  # today at midnight: not ended
        (dt.datetime(2026, 3, 14, 23, 59, tzinfo=UTC), "2026-03-14"),  # the form opened before midnight
        (dt.datetime(2024, 6, 28, 2, 0, tzinfo=UTC), "2024-06-28"),  # make demo, scripts, tests/ops
        (dt.datetime(2024, 6, 28, 0, 0, tzinfo=UTC), "2024-06-28"),  # a date at 00:00 names its day
    ],
)
def test_a_manual_run_builds_its_logical_dates_day_only_once_that_day_had_ended(logical, expected):
    assert _ds(logical=logical) == expected


def test_a_given_date_wins_over_the_logical_date_and_the_run_type():
    assert _ds(logical=FROZEN, requested="2024-02-29") == "2024-02-29"
    assert _ds(run_type="scheduled", start=FROZEN, requested="2026-03-14") == "2026-03-14"


def test_scheduled_and_backfill_runs_build_their_data_intervals_day():
    start = dt.datetime(2024, 6, 28, 2, 0, tzinfo=UTC)
    for run_type in ("scheduled", "backfill", "asset_triggered"):
        assert _ds(run_type=run_type, logical=start, start=start, after=FROZEN) == "2024-06-28"


@pytest.mark.parametrize("bad", ["2026-03-15", "2026-03-16", "2099-12-31"])
def test_a_given_date_that_has_not_ended_when_triggered_is_refused(bad):
    with pytest.raises(
        P.RunParamError, match=f"ds {bad} is not a complete day.*last complete UTC day is 2026-03-14"
    ):
        _ds(requested=bad)


def test_a_logical_date_after_the_trigger_day_is_refused():
    with pytest.raises(P.RunParamError, match="after the day the run was triggered"):
        _ds(logical=dt.datetime(2026, 3, 16, 0, 0, tzinfo=UTC))


@pytest.mark.parametrize("bad", ["2024-02-30", "2024-6-30", "2024-06-30; rm -rf /", 20240630, ""])
def test_a_given_date_that_is_not_a_real_yyyy_mm_dd_date_is_refused(bad):
    with pytest.raises(P.RunParamError, match="ds"):
        _ds(requested=bad)


# ---- through the REST API ------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory, module_monkeypatch):
    """Airflow's core REST API in-process, serving this project's DAGs on a local test lake."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from tests.harness.scheduling import ScheduledDag

    lake = tmp_path_factory.mktemp("run-dates") / "lake"
    lake.mkdir()
    module_monkeypatch.setenv("PIPELINE_TARGET", "local")
    module_monkeypatch.setenv("PIPELINE_LAKE", lake.as_uri())
    module_monkeypatch.setenv("PIPELINE_RETRIES", "0")
    module_monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    dags = {name: load_dag(DAG_FILES[name]) for name in ("nightly", "backfill")}
    ScheduledDag(dags["nightly"])  # writes the DAG folder, parsed with these settings, to the DB
    with TestClient(create_app(apps="core")) as client:
        yield client, dags


def _trigger(client, dag_id: str, *, logical_date: str | None, conf: dict[str, Any] | None = None) -> dict:
    """POST a run the way the UI's trigger form does (its defaults, unless `conf` overrides them).

    Each trigger happens at its own frozen instant of 2026-03-15 (FROZEN plus a minute per
    trigger: Airflow's run id and the logical date "now" must not repeat); `logical_date=NOW` is
    the form's pre-filled value, that instant."""
    at = FROZEN + dt.timedelta(minutes=next(_MINUTES))
    logical_date = at.isoformat() if logical_date is NOW else logical_date
    params = client.get(f"/api/v2/dags/{dag_id}/details").json()["params"]
    form = {name: spec.get("value") for name, spec in params.items()}
    form.update(conf or {})
    body = {
        "conf": form,
        "logical_date": logical_date,
        "data_interval_start": None,
        "data_interval_end": None,
    }
    with time_machine.travel(at, tick=False):
        response = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _run_plan(dag: Any, run_id: str) -> tuple[str, RunPlan | None]:
    """Run the run's `plan` task as dag.test() runs a task; returns its state and its plan."""
    state, value = run_task(dag, run_id, "plan")
    end_run(dag.dag_id, run_id)  # done with it: max_active_runs must not hold the next test's run
    return state, RunPlan.from_xcom(value[PLAN_XCOM_KEY]) if value is not None else None


def test_the_form_defaults_build_the_last_complete_utc_day(api, caplog):
    client, dags = api
    # the form pre-fills the logical date with the browser's "now" (dayjs().format(...) in the UI)
    run = _trigger(client, NIGHTLY, logical_date=NOW)
    assert run["run_type"] == "manual"
    assert run["run_after"].startswith("2026-03-15T")
    assert run["run_after"] == run["logical_date"]
    assert run["conf"]["ds"] is None  # the form's default: empty
    with caplog.at_level(logging.INFO):
        state, plan = _run_plan(dags["nightly"], run["dag_run_id"])
    assert state == "success"
    assert plan.ds == LAST_COMPLETE
    logical = run["logical_date"].replace("Z", "+00:00")
    assert f"building {LAST_COMPLETE} because its logical date {logical} falls in the day" in caplog.text


def test_the_form_with_an_empty_logical_date_builds_the_last_complete_utc_day(api):
    client, dags = api
    run = _trigger(client, NIGHTLY, logical_date=None)
    assert run["logical_date"] is None
    state, plan = _run_plan(dags["nightly"], run["dag_run_id"])
    assert (state, plan.ds) == ("success", LAST_COMPLETE)


def test_a_run_given_a_date_builds_exactly_that_date(api):
    client, dags = api
    run = _trigger(client, NIGHTLY, logical_date=NOW, conf={"ds": "2025-12-31"})
    state, plan = _run_plan(dags["nightly"], run["dag_run_id"])
    assert (state, plan.ds) == ("success", "2025-12-31")
    # every step's command line names that date, and nothing else
    commands = plan.commands()
    assert commands
    assert all(cmd[cmd.index("--ds") + 1] == "2025-12-31" for cmd in commands)


def test_a_run_given_todays_date_fails_at_plan_before_any_step(api, capsys):
    client, dags = api
    run = _trigger(client, NIGHTLY, logical_date=NOW, conf={"ds": "2026-03-15"})
    capsys.readouterr()
    state, plan = _run_plan(dags["nightly"], run["dag_run_id"])
    assert (state, plan) == ("failed", None)
    # the task's log (structlog, to stdout here) says why and which day can be built
    out = capsys.readouterr().out
    assert "RunParamError: ds 2026-03-15 is not a complete day" in out
    assert "the last complete UTC day is 2026-03-14" in out


def test_a_script_triggering_with_a_past_logical_date_builds_that_day(api):
    client, dags = api
    run = _trigger(client, NIGHTLY, logical_date="2024-06-10T00:00:00+00:00")
    assert _run_plan(dags["nightly"], run["dag_run_id"])[1].ds == "2024-06-10"


def test_a_scheduled_run_builds_its_data_intervals_day(api):
    """The run the scheduler creates at 02:00 UTC on 2026-03-15: its interval is the 14th."""
    _, dags = api
    with time_machine.travel(FROZEN, tick=False):
        run_id = create_scheduled_run(NIGHTLY)
    assert run_id == "scheduled__2026-03-15T02:00:00+00:00"  # named for when it runs
    state, plan = _run_plan(dags["nightly"], run_id)
    assert (state, plan.ds) == ("success", "2026-03-14")


def _runs_of_backfill(backfill_id: int) -> dict[str, str]:
    """The runs Airflow created for one backfill: logical date (day) -> run id."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(DagRun.logical_date, DagRun.run_id).where(DagRun.backfill_id == backfill_id)
        ).all()
    return {logical.date().isoformat(): run_id for logical, run_id in rows}


def test_a_backfill_of_the_nightly_builds_each_runs_data_interval_day(api):
    client, dags = api
    with time_machine.travel(FROZEN, tick=False):
        response = client.post(
            "/api/v2/backfills",
            json={"dag_id": NIGHTLY, "from_date": "2024-06-01T00:00:00Z", "to_date": "2024-06-03T23:59:59Z"},
        )
    assert response.status_code == 200, response.text
    backfill_id = response.json()["id"]
    try:
        # this backfill's runs (the worker's metadata DB may hold other tests' backfill runs)
        runs = _runs_of_backfill(backfill_id)
        assert sorted(runs) == ["2024-06-01", "2024-06-02", "2024-06-03"]
        built = {}
        for logical, run_id in runs.items():
            built[logical] = _run_plan(dags["nightly"], run_id)[1].ds
        assert built == {"2024-06-01": "2024-06-01", "2024-06-02": "2024-06-02", "2024-06-03": "2024-06-03"}
    finally:
        end_backfill(backfill_id)  # test_alerts.py, on the same worker, creates its own


def test_the_backfill_dag_builds_exactly_its_range(api):
    client, dags = api
    run = _trigger(
        client, BACKFILL, logical_date=None, conf={"start_ds": "2024-06-01", "end_ds": "2024-06-03"}
    )
    state, plan = _run_plan(dags["backfill"], run["dag_run_id"])
    dates = sorted({p.label for p in plan.steps if p.step in P.STEPS and not P.STEPS[p.step].ranged})
    assert (state, dates) == ("success", ["2024-06-01", "2024-06-02", "2024-06-03"])


def test_the_form_shows_the_date_field_first_and_says_what_empty_builds(api):
    client, _ = api
    params = client.get(f"/api/v2/dags/{NIGHTLY}/details").json()["params"]
    assert next(iter(params)) == "ds"
    schema = params["ds"]["schema"]
    assert params["ds"]["value"] is None
    assert schema["title"] == "Date to build"
    assert "Empty (the default): the last complete day in UTC" in params["ds"]["description"]
