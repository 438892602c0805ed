"""The nightly DAG in a real Airflow (`make airflow`'s api-server, scheduler, dag-processor and
triggerer on PostgreSQL): triggered through the REST API as the UI's form does it, then a
backfill of three dates through the scheduler, a dry run of the rollback DAG, and the weekly
maintenance DAG kept off the test lake. Slow: `make test-ops`.

What each run wrote is read from the Iceberg tables' history with pyiceberg (include/lake.py):
every commit carries the job, the dates it replaced and the Airflow run id (`pipeline.*` snapshot
properties, docs/DATA_CONTRACT.md), and its snapshot's commit time."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from include import lake as L
from include import pipeline as P
from tests.ops.airflow_api import AirflowApi, wait_for, wait_for_run
from tests.ops.instance import (
    BACKFILL_DATES,
    DAG_ID,
    HISTORY_START,
    MAINTENANCE_DAG_ID,
    ROLLBACK_DAG_ID,
    RUN_DS,
    RUN_TIMEOUT,
)

pytestmark = pytest.mark.ops

# A snapshot's commit time (timestamp_ms, the Spark application's clock) and the API's task
# times (the worker's clock, microseconds) come from the same machine: one second of slack
# around a task's window covers the rounding.
SLACK = dt.timedelta(seconds=1)
HISTORY = f"{HISTORY_START}..{RUN_DS}"  # the triggered run's ingest_start_ds .. its date


def _days(label: str) -> list[str]:
    """`D` or `A..B` (pipeline.dates) -> every date it names."""
    first, _, last = label.partition("..")
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)
    return [str(start + dt.timedelta(days=k)) for k in range((end - start).days + 1)]


def _table(lake: Path, zone: str, name: str):
    uri = lake.as_uri()
    return L.open_catalog(uri).load_table(L.table_id(uri, f"{zone}.{name}"))


def _history(lake: Path, zone: str, name: str) -> list[L.Commit]:
    """The commits readers have seen (main's lineage), oldest first."""
    return L.main_history(_table(lake, zone, name))


def _only_commit(history: list[L.Commit], ds: str, what: str) -> L.Commit:
    """The one commit of a history that replaced date ds; fails if there are none or several."""
    covering = [c for c in history if c.dates and ds in _days(c.dates)]
    lines = "\n".join(c.line() for c in history)
    assert len(covering) == 1, f"{what}: {len(covering)} commits replaced {ds}:\n{lines}"
    return covering[0]


def _the_commit(lake: Path, zone: str, name: str, ds: str) -> L.Commit:
    """The one commit of main's lineage that replaced date ds of the table."""
    return _only_commit(_history(lake, zone, name), ds, f"{zone}.{name}")


def _assert_committed_by(commit: L.Commit, ti: dict, *, run_id: str, job: str, dates: str, what) -> None:
    """The commit is the job's, for exactly `dates`, by `run_id`, inside the task's start..end."""
    assert (commit.job, commit.dates, commit.run_id) == (job, dates, run_id), (what, commit.line())
    assert (ti["state"], ti["try_number"]) == ("success", 1), (what, ti["task_id"])
    start, end = _ts(ti["start_date"]), _ts(ti["end_date"])
    assert start - SLACK <= commit.committed_at <= end + SLACK, (what, commit.line(), start, end)


def _rows(lake: Path, zone: str, name: str, ds: str) -> int:
    rows = L.read_date(lake, zone, name, ds)
    assert rows is not None, f"{zone}.{name}: nothing written for {ds}"
    return len(rows)


def _scan(lake: Path, zone: str, name: str, first: str, last: str, columns: tuple[str, ...]):
    table = _table(lake, zone, name)
    return table.scan(row_filter=f"dt >= '{first}' AND dt <= '{last}'", selected_fields=columns).to_arrow()


def _rows_between(lake: Path, zone: str, name: str, first: str, last: str) -> int:
    return _scan(lake, zone, name, first, last, ("dt",)).num_rows


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _tis(api: AirflowApi, run_id: str) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run_id)}


def _as_read(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """A date's rows as a reader gets them, order aside: the columns, and each row's values (arrays
    as lists, NaN as nan) in sorted order. Frames with array columns cannot be sorted by pandas."""
    rows = (
        repr([v.tolist() if hasattr(v, "tolist") else v for v in row])
        for row in frame.itertuples(index=False, name=None)
    )
    return list(frame.columns), sorted(rows)


def test_airflow_runs_every_component_on_a_real_metadata_db(api: AirflowApi, airflow_server):
    health = api.get("/monitor/health")
    assert {k: v["status"] for k, v in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    # PostgreSQL wherever Debian's package can be had (CI: root with apt); SQLite is the fallback.
    assert airflow_server.instance["backend"] == "postgres", airflow_server.logs_tail()


def test_trigger_form_shows_the_params_of_the_nightly_dag(api: AirflowApi, nightly_dag):
    params = api.get(f"/dags/{DAG_ID}/details")["params"]
    assert list(params) == ["ds", "cluster_profile", "outputs", "ingest_start_ds", "publish_despite_warnings"]
    assert params["ds"]["value"] is None  # empty: the last complete UTC day (include/run_dates.py)
    assert params["publish_despite_warnings"]["value"] is True
    assert params["outputs"]["value"] == list(P.OUTPUTS)
    assert params["ingest_start_ds"]["value"] is None


def test_nightly_run_triggered_like_the_ui_commits_every_table_once(
    api: AirflowApi, nightly_run: dict, ops_lake: Path
):
    run_id = nightly_run["dag_run_id"]
    assert nightly_run["run_type"] == "manual"
    assert nightly_run["logical_date"].startswith(RUN_DS)
    assert nightly_run["conf"]["ingest_start_ds"] == HISTORY_START
    tis = _tis(api, run_id)
    # The run's warm local Spark application: start_spark (setup) ... stop_spark (teardown).
    # Write-audit-publish: the steps write the run's branch, run_audit checks it, run_publish makes
    # it main, then each output's register_ task emits its asset event.
    steps = [*P.PIPELINE, P.AUDIT, P.PUBLISH]
    expected_tasks = (
        {"plan", "start_spark", "stop_spark", "run_report"}
        | {f"run_{s.name}" for s in steps}
        | {f"register_{o}" for o in P.OUTPUTS}
    )
    assert set(tis) == expected_tasks
    assert {t: ti["state"] for t, ti in tis.items()} == dict.fromkeys(expected_tasks, "success")
    # Every step ran between the application's start and its stop, on that application.
    started, stopped = _ts(tis["start_spark"]["end_date"]), _ts(tis["stop_spark"]["start_date"])
    for step in steps:
        ti = tis[f"run_{step.name}"]
        assert started <= _ts(ti["start_date"]) <= _ts(ti["end_date"]) <= stopped, step.name
        log = api.task_log(DAG_ID, run_id, ti["task_id"], 1)
        assert "on the run's Spark application (" in log, f"{step.name}:\n{log[-2000:]}"

    # ingest_start_ds from the form: one ingest step per dataset loaded every landing day up to the
    # run's date, in one commit per table (processed and quarantine), by that step's task.
    days = _days(HISTORY)
    for dataset in P.DATASETS:
        for zone in ("processed", "quarantine"):
            history = _history(ops_lake, zone, dataset)
            commit = _only_commit(history, HISTORY_START, f"{zone}.{dataset}")
            _assert_committed_by(
                commit,
                tis[f"run_ingest_{dataset}"],
                run_id=run_id,
                job="ingest",
                dates=HISTORY,
                what=f"{zone}.{dataset}",
            )
            assert all(_only_commit(history, d, f"{zone}.{dataset}") == commit for d in days)
    for dataset in ("customers", "sales", "referrals"):  # landing has rows for these every day
        loaded = _scan(ops_lake, "processed", dataset, HISTORY_START, RUN_DS, ("dt",))["dt"]
        assert sorted({str(d) for d in loaded.to_pylist()}) == days, dataset

    # Each curated table: date ds replaced once, by the task that produces it, inside that task's
    # run time; the commit is the run's only one in that table (no other date was written).
    for output in P.OUTPUTS:
        step = P.STEPS[P.PRODUCER[output]]
        commit = _the_commit(ops_lake, "curated", output, RUN_DS)
        _assert_committed_by(
            commit, tis[f"run_{step.name}"], run_id=run_id, job=step.job, dates=RUN_DS, what=output
        )
        assert [c for c in _history(ops_lake, "curated", output) if c.run_id == run_id] == [commit], output
        assert _rows(ops_lake, "curated", output, RUN_DS) > 0, output

    # The run's asset events name each output's table and the snapshot it committed.
    events = api.get("/assets/events", source_dag_id=DAG_ID, source_run_id=run_id, limit=100)["asset_events"]
    by_table = {e["extra"].get("table"): e for e in events}
    assert set(by_table) == {f"curated.{o}" for o in P.OUTPUTS}, events
    for output in P.OUTPUTS:
        event = by_table[f"curated.{output}"]
        assert event["source_task_id"] == f"register_{output}", output  # after publish
        assert _ts(event["timestamp"]) >= _ts(tis["run_publish"]["end_date"]), output
        assert event["extra"]["snapshot_id"] == _the_commit(ops_lake, "curated", output, RUN_DS).snapshot_id

    # Independent count: one customer_features row per customer with a sale on or before ds.
    sales = _scan(ops_lake, "processed", "sales", HISTORY_START, RUN_DS, ("customer_id",))
    buyers = set(sales["customer_id"].to_pylist())
    assert _rows(ops_lake, "curated", "customer_features", RUN_DS) == len(buyers)


def _quarantined(lake: Path, first: str, last: str) -> int:
    return sum(_rows_between(lake, "quarantine", dataset, first, last) for dataset in P.DATASETS)


def _report(lake: Path, ds: str) -> dict:
    path = lake / "_runs" / "reports" / f"dag_id={DAG_ID}" / f"dt={ds}" / "report.json"
    assert path.is_file(), path
    return json.loads(path.read_text())


def test_nightly_run_report_counts_what_the_lake_holds_and_is_in_the_task_log(
    api: AirflowApi, nightly_run: dict, ops_lake: Path
):
    report = _report(ops_lake, RUN_DS)
    assert report["run_id"] == nightly_run["dag_run_id"]
    assert report["state"] == "success"
    steps = {s["step"]: s for s in report["steps"]}
    every_step = [*P.STEPS, "audit", "publish"]
    assert {name: s["state"] for name, s in steps.items()} == dict.fromkeys(every_step, "success")
    # the audit's checks, with none blocking (it published)
    assert report["checks"]["errors"] == 0
    assert report["checks"]["passed"] > 0
    # Rows out per step = rows the table holds for the run's date, read back with pyiceberg. The
    # stream too (rows upserted): a new checkpoint's first batch replaces the day, and it takes
    # all of the day's files at once.
    for output in P.OUTPUTS:
        step = steps[P.PRODUCER[output]]
        assert step["rows_out_by_output"][output] == _rows(ops_lake, "curated", output, RUN_DS), output
    assert steps["ingest_sales"]["rows_out"] == _rows_between(
        ops_lake, "processed", "sales", HISTORY_START, RUN_DS
    )
    quarantined = _quarantined(ops_lake, HISTORY_START, RUN_DS)
    assert quarantined > 0  # the demo data has bad rows every day
    assert report["totals"]["rows_quarantined"] == quarantined
    assert all(isinstance(s["duration_seconds"], float) for s in steps.values())
    assert (ops_lake / "_runs" / "reports" / f"dag_id={DAG_ID}" / f"dt={RUN_DS}" / "report.html").is_file()

    log = api.task_log(DAG_ID, nightly_run["dag_run_id"], "run_report", 1)
    assert f"run report: {DAG_ID} {nightly_run['dag_run_id']} (ds {RUN_DS}, local): success" in log


@pytest.fixture(scope="module")
def backfill_runs(api: AirflowApi, airflow_server, nightly_run: dict, ops_lake: Path) -> dict:
    """`airflow backfill create` of BACKFILL_DATES, as the README says; the scheduler runs what it
    created. Returns the runs and what readers saw of the triggered run's day before it."""
    # The schedule's logical dates are 02:00 UTC: a window to 23:59:59 of the last day takes it.
    window = ["--dag-id", DAG_ID, "--from-date", f"{BACKFILL_DATES[0]}T00:00:00+00:00"]
    window += ["--to-date", f"{BACKFILL_DATES[-1]}T23:59:59+00:00", "--reprocess-behavior", "none"]
    window += ["--max-active-runs", "1"]  # each day reads the history the previous day wrote
    planned = airflow_server.cli("backfill", "create", *window, "--dry-run")
    assert re.findall(r"\| (\d{4}-\d{2}-\d{2}) 02:00:00\+00:00", planned) == list(BACKFILL_DATES), planned
    before = {
        output: (
            _the_commit(ops_lake, "curated", output, RUN_DS),
            L.read_date(ops_lake, "curated", output, RUN_DS),
        )
        for output in P.OUTPUTS
    }

    airflow_server.cli("backfill", "create", *window)
    created = api.get("/backfills", dag_id=DAG_ID)["backfills"]
    assert len(created) == 1, created
    backfill = created[0]
    assert backfill["max_active_runs"] == 1

    def completed() -> dict | None:
        state = api.get(f"/backfills/{backfill['id']}")
        return state if state["completed_at"] else None

    wait_for(f"backfill {backfill['id']}", completed, timeout=len(BACKFILL_DATES) * RUN_TIMEOUT, interval=15)
    runs = sorted(
        (r for r in api.dag_runs(DAG_ID) if r["run_type"] == "backfill"), key=lambda r: r["logical_date"]
    )
    return {"runs": runs, "before": before}


def test_backfill_through_the_scheduler_makes_three_runs_each_committing_its_date_once(
    api: AirflowApi, nightly_run: dict, backfill_runs: dict, ops_lake: Path
):
    runs = backfill_runs["runs"]
    assert [r["logical_date"][:10] for r in runs] == list(BACKFILL_DATES)
    for run in runs:
        failures = api.failure_report(DAG_ID, run["dag_run_id"])
        assert run["state"] == "success", f"{run['dag_run_id']}: {run['state']}\n{failures}"
    # Three runs, one after another (max_active_runs=1), in date order.
    for earlier, later in itertools.pairwise(runs):
        assert _ts(earlier["end_date"]) <= _ts(later["start_date"])

    for run in runs:
        ds, run_id = run["logical_date"][:10], run["dag_run_id"]
        tis = _tis(api, run_id)
        for output in P.OUTPUTS:
            step = P.STEPS[P.PRODUCER[output]]
            commit = _the_commit(ops_lake, "curated", output, ds)
            _assert_committed_by(
                commit, tis[f"run_{step.name}"], run_id=run_id, job=step.job, dates=ds, what=(output, ds)
            )
            assert _rows(ops_lake, "curated", output, ds) > 0, (output, ds)
        # A run ingests its own day only (no ingest_start_ds): one commit of that day per table.
        for dataset in P.DATASETS:
            for zone in ("processed", "quarantine"):
                commit = _the_commit(ops_lake, zone, dataset, ds)
                _assert_committed_by(
                    commit,
                    tis[f"run_ingest_{dataset}"],
                    run_id=run_id,
                    job="ingest",
                    dates=ds,
                    what=(f"{zone}.{dataset}", ds),
                )

    # Every table's whole history: the triggered run's commit, then one commit per backfill run,
    # in date order; nothing else (no rewrite of a date, no maintenance commit).
    nightly_id = nightly_run["dag_run_id"]
    later = [(r["dag_run_id"], r["logical_date"][:10]) for r in runs]
    for output in P.OUTPUTS:
        job = P.STEPS[P.PRODUCER[output]].job
        history = [(c.run_id, c.dates, c.job) for c in _history(ops_lake, "curated", output)]
        assert history == [(nightly_id, RUN_DS, job), *((r, d, job) for r, d in later)], output
    for dataset in P.DATASETS:
        for zone in ("processed", "quarantine"):
            history = [(c.run_id, c.dates, c.job) for c in _history(ops_lake, zone, dataset)]
            assert history == [(nightly_id, HISTORY, "ingest"), *((r, d, "ingest") for r, d in later)]

    # The triggered run's day is untouched: its commit is still the one readers see for that date,
    # and they read the same rows as before the backfill.
    for output, (commit, rows) in backfill_runs["before"].items():
        assert _the_commit(ops_lake, "curated", output, RUN_DS) == commit, output
        assert _as_read(L.read_date(ops_lake, "curated", output, RUN_DS)) == _as_read(rows), output

    # One report per run, in its date's folder, counting that day only.
    for run in runs:
        ds = run["logical_date"][:10]
        report = _report(ops_lake, ds)
        assert (report["run_id"], report["state"]) == (run["dag_run_id"], "success")
        assert report["totals"]["rows_quarantined"] == _quarantined(ops_lake, ds, ds)


def test_rollback_dag_dry_run_lists_what_it_would_take_away_and_changes_nothing(
    api: AirflowApi, nightly_run: dict, backfill_runs: dict, ops_lake: Path
):
    """The rollback form with Apply off, back to before the first backfill run, on one output."""
    output = "customer_features"
    first, *others = (r["dag_run_id"] for r in backfill_runs["runs"])
    history = _history(ops_lake, "curated", output)
    conf = {"table": f"curated.{output}", "before_run": first, "apply": False}
    run = api.trigger_like_the_ui_form(ROLLBACK_DAG_ID, None, conf)
    wait_for_run(api, ROLLBACK_DAG_ID, run["dag_run_id"], timeout=300)

    path = (
        f"/dags/{ROLLBACK_DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/rollback/xcomEntries/return_value"
    )
    value = api.get(path)["value"]
    result = json.loads(value) if isinstance(value, str) else value
    # Back to the triggered run's commit; the three backfill commits would go.
    assert result == {
        "table": f"curated.{output}",
        "target_snapshot": history[0].snapshot_id,
        "undone": [c.snapshot_id for c in history[1:]],
        "applied": False,
    }
    assert [c.run_id for c in history[1:]] == [first, *others]
    log = api.task_log(ROLLBACK_DAG_ID, run["dag_run_id"], "rollback", 1)
    assert f"later runs whose commits go too: {', '.join(sorted(others))}" in log
    # A dry run: the table's main branch is where it was.
    assert _history(ops_lake, "curated", output) == history


def test_upkeep_dags_are_listed_and_maintenance_never_ran_on_the_test_lake(
    api: AirflowApi, airflow_server, backfill_runs: dict, ops_lake: Path
):
    dags = {d["dag_id"]: d for d in api.get("/dags", dag_id_pattern="customer_analytics", limit=100)["dags"]}
    assert {DAG_ID, MAINTENANCE_DAG_ID, ROLLBACK_DAG_ID} <= set(dags)
    assert dags[MAINTENANCE_DAG_ID]["timetable_summary"] == "0 4 * * 0"  # weekly, Sunday 04:00 UTC
    assert dags[ROLLBACK_DAG_ID]["timetable_summary"] is None  # manual only
    # The stack runs no cron schedule (cron_schedules off: USE_JOB_SCHEDULE=False) and creates
    # DAGs paused; nothing here unpauses maintenance. It never ran, so it expired and compacted
    # nothing of the lake the other tests read (their table histories hold no commit of it).
    assert airflow_server.instance["cron_schedules"] is False
    assert dags[MAINTENANCE_DAG_ID]["is_paused"] is True
    assert api.dag_runs(MAINTENANCE_DAG_ID) == []
    for output in P.OUTPUTS:
        assert {c.job for c in _history(ops_lake, "curated", output)} == {P.STEPS[P.PRODUCER[output]].job}
