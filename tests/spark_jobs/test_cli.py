"""The job command line: what it accepts, and that bad arguments are one line and exit 2."""

from __future__ import annotations

import datetime as dt

import pytest

from spark_jobs.cli import EXIT_BAD_INPUT, JOBS, main, parse_args
from spark_jobs.common import JobInputError


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
    }
