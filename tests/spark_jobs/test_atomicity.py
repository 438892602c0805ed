"""A date's replacement is atomic for readers: whole snapshots only, and a killed job changes nothing.

A separate process (its own JVM, as a job on a cluster) replaces date D of a table, slowed down
on purpose so the write lasts seconds; meanwhile this process reads the table again and again
with pyiceberg, an independent reader. Every read must be all of the old rows or all of the new
ones. Then the same write is killed (SIGKILL) after its data files have started to land: the table
must still be exactly at its previous snapshot, and the next write must go through.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.settings import PROJECT_ROOT
from tests.harness.lake_files import lake_dir
from tests.harness.lake_tables import catalog, seed_rows

D = dt.date(2024, 6, 28)
OLD_ROWS, NEW_ROWS = 400, 1000

# The writer: every row of the new version in one commit of date D, each of its 8 tasks sleeping
# so that the write lasts several seconds (the reader polls meanwhile).
WRITER = """
import datetime as dt, sys, time
from pyspark.sql import functions as F
from spark_jobs import table_writes, tables
from spark_jobs.session import local_builder
from spark_jobs.schemas import PROCESSED

lake, rows, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
spark = tables.bind(local_builder("writer", master="local[2]").getOrCreate(), lake)
spark.sparkContext.setLogLevel("ERROR")

def slow(batches):
    for batch in batches:
        time.sleep(pause)
        yield batch

D = dt.date(2024, 6, 28)
df = (spark.range(rows).repartition(8)
      .select(F.format_string("c%05d", "id").alias("customer_id"), F.lit("new").alias("region"),
              F.lit(D).alias("signup_date"), F.lit(D).alias("dt"))
      .mapInPandas(slow, "customer_id string, region string, signup_date date, dt date"))
print("WRITING", flush=True)
table_writes.replace_dates(df, "processed", "customers", PROCESSED["customers"], [D], job="writer")
print("COMMITTED", flush=True)
"""


def _writer(lake: str, pause: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, lake, str(NEW_ROWS), str(pause)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _read(lake: str) -> tuple[int, frozenset[str]]:
    """(rows of date D, the region values among them), read afresh from the catalog."""
    table = catalog(lake).load_table("processed.customers")
    rows = table.scan(row_filter=f"dt = '{D}'", selected_fields=("region",)).to_arrow()
    return rows.num_rows, frozenset(rows.column("region").to_pylist())


@pytest.fixture
def old_version(spark, lake):
    rows = [(f"c{i:05d}", "old", D, D) for i in range(OLD_ROWS)]
    seed_rows(spark, lake, "processed", "customers", rows)
    return catalog(lake).load_table("processed.customers").current_snapshot().snapshot_id


@pytest.mark.slow
def test_a_reader_polling_during_the_write_sees_only_whole_snapshots(lake, old_version):
    writer = _writer(lake, pause=1.0)
    assert writer.stdout.readline().strip() == "WRITING"
    seen: list[tuple[int, frozenset[str]]] = []
    while writer.poll() is None or len(seen) < 50:
        seen.append(_read(lake))
        if writer.poll() is not None and len(seen) >= 50:
            break
    assert writer.wait(timeout=300) == 0
    whole = {(OLD_ROWS, frozenset({"old"})), (NEW_ROWS, frozenset({"new"}))}
    partial = [s for s in seen if s not in whole]
    assert len(seen) >= 50
    assert partial == []
    assert seen[0][1] == frozenset({"old"})  # the reads began before the commit ...
    assert _read(lake) == (NEW_ROWS, frozenset({"new"}))  # ... and the commit landed


@pytest.mark.ops  # a real spark-submit killed mid-write, then read back: make test-ops
def test_a_job_killed_mid_write_leaves_the_table_at_its_previous_snapshot(lake, old_version):
    data = lake_dir(lake) / "warehouse" / "processed" / "customers" / "data" / f"dt={D}"
    before = set(data.glob("*.parquet"))
    writer = _writer(lake, pause=4.0)
    assert writer.stdout.readline().strip() == "WRITING"
    deadline = time.monotonic() + 240
    while not (set(data.glob("*.parquet")) - before) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the job's first data files are on disk
    assert set(data.glob("*.parquet")) - before, "the writer wrote no data file in time"
    os.killpg(writer.pid, signal.SIGKILL)  # the driver and its JVM, mid-write
    writer.wait(timeout=60)

    table = catalog(lake).load_table("processed.customers")
    assert table.current_snapshot().snapshot_id == old_version
    assert _read(lake) == (OLD_ROWS, frozenset({"old"}))
    # the catalog is not left locked: the next write commits
    rerun = _writer(lake, pause=0.0)
    assert rerun.wait(timeout=300) == 0
    assert _read(lake) == (NEW_ROWS, frozenset({"new"}))
    assert Path(lake_dir(lake) / "_catalog" / "iceberg.db").is_file()
