"""include/lake.py: a table's commits as readers saw them, and rolling a table back to before a run.

The tables here are made with pyiceberg alone (no Spark), with the snapshot properties the jobs
write (pipeline.run-id, .job, .dates), so the tests run in a second and read back independently.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from include import lake as L
from scripts.manage_lake_tables import main as lake_tables_main
from tests.harness.lake_tables import catalog

RUNS = ("manual__2024-06-01T02:00:00+00:00", "scheduled__2024-06-02T02:00:00+00:00", "manual__late")


@pytest.fixture
def three_runs(lake):
    """curated.stock_daily with one commit per run, each adding the rows of its date."""
    cat = catalog(lake)
    cat.create_namespace("curated")
    schema = pa.schema([("ticker", pa.string()), ("close_price", pa.float64()), ("dt", pa.date32())])
    table = cat.create_table("curated.stock_daily", schema=schema)
    for i, run in enumerate(RUNS):
        day = pd.Timestamp(f"2024-06-0{i + 1}").date()
        frame = pd.DataFrame({"ticker": [f"T{i}"], "close_price": [float(i)], "dt": [day]})
        rows = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        props = {"pipeline.run-id": run, "pipeline.job": "stock_daily", "pipeline.dates": str(day)}
        table.append(rows, snapshot_properties=props)
    return cat.load_table("curated.stock_daily")


def _tickers(lake) -> list[str]:
    return sorted(catalog(lake).load_table("curated.stock_daily").scan().to_pandas()["ticker"])


def test_the_history_is_main_lineage_with_each_commits_job_dates_and_run(three_runs):
    history = L.main_history(three_runs)
    assert [c.run_id for c in history] == list(RUNS)
    assert [c.dates for c in history] == ["2024-06-01", "2024-06-02", "2024-06-03"]
    assert {c.job for c in history} == {"stock_daily"}
    assert [c.parent_id for c in history[1:]] == [c.snapshot_id for c in history[:-1]]


def test_a_rollback_plan_names_the_snapshot_before_the_run_and_every_commit_it_takes_away(three_runs):
    history = L.main_history(three_runs)
    plan = L.plan_rollback(three_runs, "curated.stock_daily", RUNS[1])
    assert plan.target == history[0].snapshot_id
    assert [c.snapshot_id for c in plan.undone] == [history[1].snapshot_id, history[2].snapshot_id]
    assert plan.later_runs == [RUNS[2]]  # a later run's commit goes too, and the plan says so
    assert RUNS[2] in plan.describe()
    with pytest.raises(SystemExit, match="no commit of run 'nope'"):
        L.plan_rollback(three_runs, "curated.stock_daily", "nope")


def test_the_command_only_describes_without_apply_and_rolls_back_with_it(three_runs, lake, capsys):
    args = ["--lake", lake, "rollback", "curated.stock_daily", "--before-run", RUNS[1]]
    assert lake_tables_main(args) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert _tickers(lake) == ["T0", "T1", "T2"]

    assert lake_tables_main([*args, "--apply"]) == 0
    assert _tickers(lake) == ["T0"]
    table = catalog(lake).load_table("curated.stock_daily")
    assert table.current_snapshot().snapshot_id == L.main_history(three_runs)[0].snapshot_id


def test_rolling_back_the_run_that_created_the_table_is_refused(three_runs, lake):
    with pytest.raises(SystemExit, match="created by that run"):
        lake_tables_main(
            ["--lake", lake, "rollback", "curated.stock_daily", "--before-run", RUNS[0], "--apply"]
        )
    assert _tickers(lake) == ["T0", "T1", "T2"]


def test_the_snapshots_command_lists_the_commits_oldest_first(three_runs, lake, capsys):
    assert lake_tables_main(["--lake", lake, "snapshots", "curated.stock_daily"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[-1] for line in lines] == list(RUNS)


def test_a_lake_without_a_catalog_or_a_table_gives_a_clear_answer(lake, capsys):
    assert lake_tables_main(["--lake", lake, "snapshots", "curated.stock_daily"]) == 2
    assert "nothing has been written yet" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"<zone>\.<name>"):
        L.table_id(lake, "stock_daily")


def test_read_date_tells_a_date_never_written_from_an_empty_one(three_runs, lake):
    assert list(L.read_date(lake, "curated", "stock_daily", "2024-06-02")["ticker"]) == ["T1"]
    assert L.read_date(lake, "curated", "stock_daily", "2024-06-09") is None
    assert L.read_date(lake, "curated", "no_such_output", "2024-06-02") is None


BRANCH = "audit_manual__2024-06-04"


def _branch_with_a_commit(table, lake):
    """A run's kept branch: made at main, with one commit of its own (as a failed audit leaves it)."""
    table.manage_snapshots().create_branch(table.current_snapshot().snapshot_id, BRANCH).commit()
    table = catalog(lake).load_table("curated.stock_daily")
    frame = pd.DataFrame({"ticker": ["T9"], "close_price": [9.0], "dt": [pd.Timestamp("2024-06-04").date()]})
    table.append(
        pa.Table.from_pandas(frame, schema=table.schema().as_arrow(), preserve_index=False), branch=BRANCH
    )
    return catalog(lake).load_table("curated.stock_daily").metadata.refs[BRANCH].snapshot_id


def test_publishing_a_kept_branch_by_hand_describes_first_then_fast_forwards_and_records(
    three_runs, lake, capsys
):
    import json
    from pathlib import Path

    from include.lake_files import report_uri

    head = _branch_with_a_commit(three_runs, lake)
    report = Path(report_uri(lake, "customer_analytics_nightly", "2024-06-04").removeprefix("file://"))
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"state": "failed"}))
    args = ["--lake", lake, "publish", "--branch", BRANCH, "--ds", "2024-06-04"]

    assert lake_tables_main(args) == 0
    assert f"curated.stock_daily: main -> {head}" in capsys.readouterr().out
    assert _tickers(lake) == ["T0", "T1", "T2"]  # nothing changed

    assert lake_tables_main([*args, "--apply"]) == 0
    table = catalog(lake).load_table("curated.stock_daily")
    assert table.current_snapshot().snapshot_id == head
    assert _tickers(lake) == ["T0", "T1", "T2", "T9"]
    assert BRANCH not in table.metadata.refs
    [entry] = json.loads(report.read_text())["published_by_hand"]
    assert (entry["branch"], entry["tables"]) == (BRANCH, {"curated.stock_daily": head})


def test_publishing_by_hand_is_refused_when_main_moved_since_the_branch(three_runs, lake):
    _branch_with_a_commit(three_runs, lake)
    table = catalog(lake).load_table("curated.stock_daily")
    frame = pd.DataFrame({"ticker": ["T5"], "close_price": [5.0], "dt": [pd.Timestamp("2024-06-05").date()]})
    table.append(pa.Table.from_pandas(frame, schema=table.schema().as_arrow(), preserve_index=False))
    main = catalog(lake).load_table("curated.stock_daily").current_snapshot().snapshot_id

    with pytest.raises(SystemExit, match="moved since audit_manual__2024-06-04 was made"):
        lake_tables_main(["--lake", lake, "publish", "--branch", BRANCH, "--ds", "2024-06-04", "--apply"])
    table = catalog(lake).load_table("curated.stock_daily")
    assert table.current_snapshot().snapshot_id == main
    assert BRANCH in table.metadata.refs


def test_publishing_a_branch_no_table_has_says_so(three_runs, lake, capsys):
    assert (
        lake_tables_main(["--lake", lake, "publish", "--branch", "audit_nothing", "--ds", "2024-06-04"]) == 2
    )
    assert "no table of" in capsys.readouterr().err
