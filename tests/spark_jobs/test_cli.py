"""The job command line: what it accepts, that bad arguments are one line and exit 2, and what a
run records (its metrics, its run id on every commit)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from spark_jobs.cli import JOBS, main, parse_args
from spark_jobs.common import JobInputError
from spark_jobs.protocol import EXIT_BAD_INPUT, METRICS_PREFIX
from spark_jobs.schemas import LANDING_COLUMNS
from tests.harness.lake_files import lake_dir, write_landing_csv
from tests.harness.lake_tables import load

DS = "2024-06-30"
TS = "2024-06-30T10:00:00Z"
ZONES = ("processed", "quarantine")


def test_ingest_range_expands_to_every_date_inclusive():
    args = parse_args(
        [
            "ingest",
            "--dataset",
            "sales",
            "--start-ds",
            "2024-02-28",
            "--end-ds",
            "2024-03-01",
            "--lake",
            "s3://b/p",
        ]
    )
    assert args.dates == [dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2024, 3, 1)]
    assert args.ds == dt.date(2024, 3, 1)
    assert args.lake == "s3://b/p"


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "--ds", "2024-01-01", "--lake", "s3://b/p"],  # no dataset
        ["ingest", "--dataset", "sales", "--lake", "s3://b/p"],  # no date
        [
            "ingest",
            "--dataset",
            "sales",
            "--ds",
            "2024-01-01",
            "--start-ds",
            "2024-01-01",
            "--lake",
            "s3://b",
        ],
        ["ingest", "--dataset", "sales", "--start-ds", "2024-01-01", "--lake", "s3://b/p"],
        ["ingest", "--dataset", "orders", "--ds", "2024-01-01", "--lake", "s3://b/p"],
        ["graph", "--lake", "s3://b/p"],
        ["graph", "--ds", "2024-01-01", "--start-ds", "2024-01-01", "--lake", "s3://b/p"],
        ["graph", "--ds", "2024-01-32", "--lake", "s3://b/p"],
        ["nope", "--ds", "2024-01-01", "--lake", "s3://b/p"],
    ],
)
def test_bad_arguments_are_refused(argv):
    with pytest.raises(JobInputError):
        parse_args(argv)


def test_main_reports_bad_arguments_in_one_line_with_exit_code_2(capsys):
    code = main(["graph", "--ds", "2024-02-30", "--lake", "s3://b/p"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert "2024-02-30" in err


def test_every_job_named_in_the_contract_is_dispatched():
    assert set(JOBS) == {
        "ingest",
        "graph",
        "sales_rolling",
        "stock_daily",
        "features",
        "segments",
        "clickstream",
        "maintain",  # the tables' upkeep (docs/DATA_CONTRACT.md, job command line)
        "audit",  # write-audit-publish: the checks of a run's branch,
        "publish",  # and making it what readers see
    }


def test_the_run_id_is_optional_and_kept_as_given():
    argv = ["ingest", "--dataset", "sales", "--ds", DS, "--lake", "s3://b/p"]
    run_id = "scheduled__2024-06-30T00:00:00+00:00"
    assert parse_args(argv).run_id is None
    assert parse_args([*argv, "--run-id", run_id]).run_id == run_id


@pytest.fixture
def cli(spark):
    """spark_jobs.cli.main in-process; restores the session settings get_spark changes."""
    saved = spark.conf.get("spark.sql.shuffle.partitions")
    yield lambda *argv: main(list(argv))
    spark.conf.set("spark.sql.shuffle.partitions", saved)
    spark.sparkContext.setLogLevel("ERROR")


def test_a_run_records_its_id_on_every_commit_and_its_metrics_in_the_lake(lake, cli, capsys):
    rows = [("t1", "c1", "p1", "1", "1.00", TS), ("t2", "c1", "p1", "x", "1.00", TS)]
    write_landing_csv(lake, "sales", DS, LANDING_COLUMNS["sales"], rows)
    run_id = "manual__2024-07-01T08:00:00+00:00"
    capsys.readouterr()

    assert cli("ingest", "--dataset", "sales", "--ds", DS, "--lake", lake, "--run-id", run_id) == 0

    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith(METRICS_PREFIX)]
    printed = json.loads(line.removeprefix(METRICS_PREFIX))
    stored = json.loads((lake_dir(lake) / "_runs" / "metrics" / f"dt={DS}" / "ingest-sales.json").read_text())
    assert stored == printed
    commits = {}
    for zone in ZONES:
        snapshot = load(lake, zone, "sales").current_snapshot()
        summary = snapshot.summary
        assert (summary["pipeline.job"], summary["pipeline.dates"], summary["pipeline.run-id"]) == (
            "ingest",
            DS,
            run_id,
        )
        commits[f"{zone}.sales"] = {"snapshot_id": snapshot.snapshot_id, "rows": 1}  # t1; t2 rejected
    total, timings = stored.pop("duration_seconds"), stored.pop("timings")
    # start-up (session, lineage) and the job's own work, apart; no queue outside a Spark server
    assert set(timings) == {"startup_seconds", "spark_seconds"}
    assert timings["startup_seconds"] > 0
    assert timings["spark_seconds"] > 0
    # within the total (each of the three rounded to the millisecond on its own)
    assert timings["startup_seconds"] + timings["spark_seconds"] <= total + 0.002
    assert stored == {
        "job": "ingest",
        "ds": DS,
        "run_id": run_id,
        "dataset": "sales",
        "start_ds": DS,
        "end_ds": DS,
        "rows_in": {"sales": 2},
        "rows_out": {"sales": 1},
        "rows_quarantined": 1,
        "duplicates_dropped": 0,
        "tables": commits,
    }
