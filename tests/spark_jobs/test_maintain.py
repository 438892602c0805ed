"""The `maintain` job: old snapshots expired, small files compacted, orphan files removed, rows unchanged.

The table is made the way the jobs make it (spark_jobs.tables), then grown with pyiceberg appends
(each one small file and one snapshot) and a stray file no snapshot knows; what maintain leaves
is read back with pyiceberg.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

import pandas as pd
import pyarrow as pa

from spark_jobs import maintain, tables
from tests.harness.lake_files import lake_dir
from tests.harness.lake_tables import load, seed_rows

DS = dt.date(2024, 6, 28)
FAR = dt.date(2099, 1, 1)  # a run date long after every commit of the test


def _grow(lake: str, appends: int) -> None:
    table = load(lake, "curated", "stock_daily")
    schema = table.schema().as_arrow()
    for i in range(appends):
        rows = pd.DataFrame([{f.name: None for f in schema}]).assign(ticker=f"T{i}", dt=DS)
        table.append(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
        table = load(lake, "curated", "stock_daily")


def test_maintain_expires_old_snapshots_compacts_small_files_and_removes_orphans(spark, lake):
    seed_rows(spark, lake, "curated", "stock_daily", [("T", DS, *[None] * 10, DS)])
    _grow(lake, 7)  # 8 snapshots, 8 one-row files on dt=DS
    data = lake_dir(lake) / "warehouse" / "curated" / "stock_daily" / "data"
    stray = data / f"dt={DS}" / "written-by-a-failed-job.parquet"
    stray.write_bytes(b"PAR1 not referenced by any snapshot")
    old = time.time() - 10 * 86400
    os.utime(stray, (old, old))
    before = load(lake, "curated", "stock_daily")
    rows_before = before.scan().to_pandas().sort_values("ticker").reset_index(drop=True)
    assert len(before.inspect.files()) == 8

    metrics = maintain.run(tables.bind(spark, lake), argparse.Namespace(ds=FAR, keep_days=14, lake=lake))

    after = load(lake, "curated", "stock_daily")
    done = metrics["tables_maintained"]["curated.stock_daily"]
    # 8 snapshots older than the cut-off: the newest RETAIN_LAST stay, then compaction adds one
    assert len(after.snapshots()) == maintain.RETAIN_LAST + 1
    assert (done["rewritten_data_files"], done["added_data_files"]) == (8, 1)
    assert len(after.inspect.files()) == 1
    assert done["orphan_files_removed"] == 1
    assert not stray.exists()
    rows_after = after.scan().to_pandas().sort_values("ticker").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows_after, rows_before)


def test_maintain_run_for_an_early_date_expires_nothing_newer_than_that_date(spark, lake):
    """Cut-offs come from the run's date: a run for a date before the commits keeps them all."""
    seed_rows(spark, lake, "curated", "stock_daily", [("T", DS, *[None] * 10, DS)])
    _grow(lake, 6)
    maintain.run(tables.bind(spark, lake), argparse.Namespace(ds=DS, keep_days=14, lake=lake))
    assert len(load(lake, "curated", "stock_daily").snapshots()) >= 7


def test_maintain_drops_kept_audit_branches_older_than_the_cut_off_and_keeps_recent_ones(spark, lake):
    seed_rows(spark, lake, "curated", "stock_daily", [("T", DS, *[None] * 10, DS)])
    table = load(lake, "curated", "stock_daily")
    snapshot = table.current_snapshot().snapshot_id
    table.manage_snapshots().create_branch(snapshot, "audit_failed_run").create_branch(
        snapshot, "someone_elses_branch"
    ).commit()
    committed = dt.datetime.fromtimestamp(table.current_snapshot().timestamp_ms / 1000, dt.UTC).date()

    # a run 14 days after the branch's last commit keeps it; one 15 days after drops it
    maintain.run(
        tables.bind(spark, lake),
        argparse.Namespace(ds=committed + dt.timedelta(days=14), keep_days=14, lake=lake),
    )
    assert {"audit_failed_run", "someone_elses_branch"} <= set(
        load(lake, "curated", "stock_daily").metadata.refs
    )
    metrics = maintain.run(
        tables.bind(spark, lake),
        argparse.Namespace(ds=committed + dt.timedelta(days=15), keep_days=14, lake=lake),
    )
    refs = set(load(lake, "curated", "stock_daily").metadata.refs)
    assert "audit_failed_run" not in refs
    assert "someone_elses_branch" in refs  # only the pipeline's own audit branches
    assert metrics["tables_maintained"]["curated.stock_daily"]["audit_branches_dropped"] == 1
