"""The nightly DAG in a real Airflow (`make airflow`'s api-server, scheduler, dag-processor and
triggerer on PostgreSQL): triggered through the REST API as the UI's form does it, then a
backfill of three dates through the scheduler. Slow: `make test-ops`."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from include import pipeline as P
from tests.ops.airflow_api import AirflowApi, wait_for
from tests.ops.conftest import BACKFILL_DATES, DAG_ID, HISTORY_START, RUN_DS, RUN_TIMEOUT

pytestmark = pytest.mark.ops

# Spark writes _SUCCESS when it commits the staging directory that becomes the partition; file
# times and the API's times are both whole microseconds from the same clock, but filesystems
# round: allow one second of slack around a task's window.
SLACK = dt.timedelta(seconds=1)
# The clickstream job reads landing/clickstream as a stream: each run takes every landing file its
# checkpoint has not seen, whatever ds, and writes the days of those events' windows. The other
# outputs are batch: exactly their own dt=ds.
STREAM = "clickstream_checkouts"
BATCH_OUTPUTS = tuple(o for o in P.OUTPUTS if o != STREAM)


def _partition(lake: Path, zone: str, name: str, ds: str) -> Path:
    return lake / zone / name / f"dt={ds}"


def _rows(path: Path) -> int:
    return pads.dataset(str(path), format="parquet", partitioning="hive").count_rows()


def _names(lake: Path, output: str) -> list[str]:
    return sorted(p.name for p in (lake / "curated" / output).iterdir())


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _mtime(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)


def _newest_file(partition: Path) -> dt.datetime:
    """When the newest data file of a partition was written. Ingest commits a whole range at once
    (one _SUCCESS for the staging root), so its partitions carry no _SUCCESS of their own."""
    return max(_mtime(f) for f in partition.glob("*.parquet"))


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
    assert set(params) == {"cluster_profile", "outputs", "ingest_start_ds"}
    assert params["outputs"]["value"] == list(P.OUTPUTS)
    assert params["ingest_start_ds"]["value"] is None


def test_nightly_run_triggered_like_the_ui_writes_every_curated_partition_once(
    api: AirflowApi, nightly_run: dict, ops_lake: Path
):
    run_id = nightly_run["dag_run_id"]
    assert nightly_run["run_type"] == "manual"
    assert nightly_run["logical_date"].startswith(RUN_DS)
    assert nightly_run["conf"]["ingest_start_ds"] == HISTORY_START
    tis = {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run_id)}
    expected_tasks = {"plan", "run_report"} | {f"run_{s.name}" for s in P.PIPELINE}
    assert set(tis) == expected_tasks
    assert {t: ti["state"] for t, ti in tis.items()} == dict.fromkeys(expected_tasks, "success")

    # ingest_start_ds from the form: one ingest step loaded every landing day up to the run's date.
    days = [
        str(dt.date.fromisoformat(HISTORY_START) + dt.timedelta(days=k))
        for k in range((dt.date.fromisoformat(RUN_DS) - dt.date.fromisoformat(HISTORY_START)).days + 1)
    ]
    for dataset in ("customers", "sales", "referrals"):
        loaded = sorted(p.name for p in (ops_lake / "processed" / dataset).iterdir())
        assert loaded == [f"dt={d}" for d in days], dataset

    for output in P.OUTPUTS:
        partition = _partition(ops_lake, "curated", output, RUN_DS)
        assert (partition / "_SUCCESS").is_file(), partition
        assert _rows(partition) > 0, output
        # Written by the task that produces it, inside that task's run time (not by anything else).
        ti = tis[f"run_{P.PRODUCER[output]}"]
        assert ti["try_number"] == 1
        written = _mtime(partition / "_SUCCESS")
        assert _ts(ti["start_date"]) - SLACK <= written <= _ts(ti["end_date"]) + SLACK, output
    # No other date was produced by this run's batch outputs; the stream took every landing day.
    for output in BATCH_OUTPUTS:
        assert _names(ops_lake, output) == [f"dt={RUN_DS}"]
    assert _names(ops_lake, STREAM) == sorted(
        p.name for p in (ops_lake / "landing" / "clickstream").iterdir()
    )

    # Independent count: one customer_features row per customer with a sale on or before ds.
    sales = pads.dataset(str(ops_lake / "processed" / "sales"), format="parquet", partitioning="hive")
    buyers = set(sales.to_table(columns=["customer_id"]).column("customer_id").to_pylist())
    assert _rows(_partition(ops_lake, "curated", "customer_features", RUN_DS)) == len(buyers)


def _quarantined(lake: Path, dates: list[str]) -> int:
    return sum(
        _rows(_partition(lake, "quarantine", dataset, ds))
        for dataset in ("customers", "sales", "referrals", "stock_ticks", "clickstream")
        for ds in dates
    )


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
    assert {name: s["state"] for name, s in steps.items()} == dict.fromkeys(P.STEPS, "success")
    # Rows out per step = rows in the partitions it wrote, counted here with pyarrow.
    for output in P.OUTPUTS:
        step = steps[P.PRODUCER[output]]
        if output != "clickstream_checkouts":  # the stream counts upserted windows, per window day
            assert step["rows_out_by_output"][output] == _rows(
                _partition(ops_lake, "curated", output, RUN_DS)
            )
    first, last = dt.date.fromisoformat(HISTORY_START), dt.date.fromisoformat(RUN_DS)
    days = [str(first + dt.timedelta(days=k)) for k in range((last - first).days + 1)]
    assert steps["ingest_sales"]["rows_out"] == sum(
        _rows(_partition(ops_lake, "processed", "sales", d)) for d in days
    )
    assert report["totals"]["rows_quarantined"] == _quarantined(ops_lake, days)
    assert all(isinstance(s["duration_seconds"], float) for s in steps.values())
    assert (ops_lake / "_runs" / "reports" / f"dag_id={DAG_ID}" / f"dt={RUN_DS}" / "report.html").is_file()

    log = api.task_log(DAG_ID, nightly_run["dag_run_id"], "run_report", 1)
    assert f"run report: {DAG_ID} {nightly_run['dag_run_id']} (ds {RUN_DS}, local): success" in log


def test_backfill_through_the_scheduler_makes_three_runs_each_writing_its_partitions_once(
    api: AirflowApi, airflow_server, nightly_run: dict, ops_lake: Path
):
    # `airflow backfill create`, as the README says; the scheduler then runs what it created. The
    # schedule's logical dates are 02:00 UTC: a window to 23:59:59 of the last day takes it.
    window = ["--dag-id", DAG_ID, "--from-date", f"{BACKFILL_DATES[0]}T00:00:00+00:00"]
    window += ["--to-date", f"{BACKFILL_DATES[-1]}T23:59:59+00:00", "--reprocess-behavior", "none"]
    window += ["--max-active-runs", "1"]  # each day reads the history the previous day wrote
    planned = airflow_server.cli("backfill", "create", *window, "--dry-run")
    assert re.findall(r"\| (\d{4}-\d{2}-\d{2}) 02:00:00\+00:00", planned) == list(BACKFILL_DATES), planned
    before = {o: _mtime(_partition(ops_lake, "curated", o, RUN_DS) / "_SUCCESS") for o in P.OUTPUTS}
    # The stream already took every landing day in the triggered run (see STREAM).
    stream_before = {p.name: _mtime(p / "_SUCCESS") for p in (ops_lake / "curated" / STREAM).iterdir()}

    airflow_server.cli("backfill", "create", *window)
    created = api.get("/backfills", dag_id=DAG_ID)["backfills"]
    assert len(created) == 1, created
    backfill = created[0]
    assert backfill["max_active_runs"] == 1

    def completed() -> dict | None:
        state = api.get(f"/backfills/{backfill['id']}")
        return state if state["completed_at"] else None

    wait_for(f"backfill {backfill['id']}", completed, timeout=len(BACKFILL_DATES) * RUN_TIMEOUT, interval=15)

    runs = [r for r in api.dag_runs(DAG_ID) if r["run_type"] == "backfill"]
    assert sorted(r["logical_date"][:10] for r in runs) == list(BACKFILL_DATES)
    for run in runs:
        failures = api.failure_report(DAG_ID, run["dag_run_id"])
        assert run["state"] == "success", f"{run['dag_run_id']}: {run['state']}\n{failures}"
    # Three runs, one after another (max_active_runs=1), in date order.
    ordered = sorted(runs, key=lambda r: r["logical_date"])
    for earlier, later in itertools.pairwise(ordered):
        assert _ts(earlier["end_date"]) <= _ts(later["start_date"])

    for run in runs:
        ds = run["logical_date"][:10]
        tis = {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run["dag_run_id"])}
        assert tis["run_clickstream"]["state"] == "success"
        for output in BATCH_OUTPUTS:
            partition = _partition(ops_lake, "curated", output, ds)
            assert _rows(partition) > 0, (output, ds)
            ti = tis[f"run_{P.PRODUCER[output]}"]
            assert ti["state"] == "success"
            assert ti["try_number"] == 1, (output, ds)
            written = _mtime(partition / "_SUCCESS")
            assert _ts(ti["start_date"]) - SLACK <= written <= _ts(ti["end_date"]) + SLACK, (output, ds)
        # A run ingests its own day only (no ingest_start_ds): one processed partition per dataset.
        for dataset in ("customers", "sales", "referrals"):
            written = _newest_file(_partition(ops_lake, "processed", dataset, ds))
            ti = tis[f"run_ingest_{dataset}"]
            assert _ts(ti["start_date"]) - SLACK <= written <= _ts(ti["end_date"]) + SLACK, (dataset, ds)

    # Exactly the three new partitions per output; the triggered run's day was not rewritten.
    for output in BATCH_OUTPUTS:
        assert _names(ops_lake, output) == [f"dt={d}" for d in (RUN_DS, *BACKFILL_DATES)], output
        assert _mtime(_partition(ops_lake, "curated", output, RUN_DS) / "_SUCCESS") == before[output]
    # Exactly once: with no new landing file, the stream rewrote none of its partitions.
    assert {
        p.name: _mtime(p / "_SUCCESS") for p in (ops_lake / "curated" / STREAM).iterdir()
    } == stream_before

    # One report per run, in its date's folder, counting that day only.
    for run in runs:
        ds = run["logical_date"][:10]
        report = _report(ops_lake, ds)
        assert (report["run_id"], report["state"]) == (run["dag_run_id"], "success")
        assert report["totals"]["rows_quarantined"] == _quarantined(ops_lake, [ds])
