"""Bad landing data: every row ends up processed, quarantined with a reason, or counted as a duplicate
(rows lost: 0), a file the job cannot read fails it with exit code 2 and one line, and a failed
write commits nothing: both tables read exactly as before."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys

import pytest

from include.settings import PROJECT_ROOT
from spark_jobs import table_reads, tables
from spark_jobs.catalog import CATALOG, CATALOG_FILE
from spark_jobs.cli import main, parse_args
from spark_jobs.ingest import run
from spark_jobs.protocol import EXIT_BAD_INPUT
from spark_jobs.schemas import LANDING_COLUMNS
from tests.harness.lake_files import lake_dir, write_landing_csv, write_landing_jsonl
from tests.harness.lake_tables import fail_table_writes, load, read_table, snapshot_ids, table_exists

DS = "2024-06-30"
SALES = LANDING_COLUMNS["sales"]
TS = "2024-06-30T10:00:00Z"
ZONES = ("processed", "quarantine")


def _ingest(session, lake, dataset, ds=DS):
    """The job in-process, on a session bound to `lake`."""
    return run(session, parse_args(["ingest", "--dataset", dataset, "--ds", ds, "--lake", lake]))


def _rows(lake, zone, dataset, ds=DS):
    """A date's rows of a table, read back through pyiceberg (no Spark)."""
    return list(read_table(lake, zone, dataset, ds).itertuples(index=False))


@pytest.fixture
def cli(spark):
    """spark_jobs.cli.main in-process (same session); restores what get_spark changes."""
    saved = spark.conf.get("spark.sql.shuffle.partitions")
    yield lambda *argv: main(list(argv))
    spark.conf.set("spark.sql.shuffle.partitions", saved)
    spark.sparkContext.setLogLevel("ERROR")


# ---- rows: quarantined with a reason, never lost -------------------------------------------
# (landing row, the reason expected, by hand from the contract; None = a good row)
HOSTILE_SALES = [
    (("t01", "c1", "p1", "2", "10.00", TS), None),
    (("t02", "c1", "p1", "two", "10.00", TS), "quantity: not an integer: 'two'"),
    (("t03", "c1", "p1", "1", "ten", TS), "total_amount: not a decimal number: 'ten'"),
    (("t04", "c1", "p1", "1", "1.005", TS), "total_amount: more than 2 decimal places: '1.005'"),
    (("t05", "c1", "p1", "1", "1.00", "yesterday"), "transaction_ts: not an ISO-8601 timestamp with zone"),
    (("t06", "c1", "p1", "1", "1.00", "2024-06-30T10:00:00"), "transaction_ts: timestamp without zone"),
    (("", "c1", "p1", "1", "1.00", TS), "transaction_id: required"),  # null key
    (("t08", "c1", "p1", "-3", "1.00", TS), "quantity: must be > 0: '-3'"),
    (("t09", "c1", "p1", "0", "1.00", TS), "quantity: must be > 0: '0'"),
    (("t10", "c1", "p1", "1", "-0.01", TS), "total_amount: must be >= 0: '-0.01'"),
    (("t11", "c1", "p1", "99999999999", "1.00", TS), "quantity: out of range for INT"),
    (("t12", "c1", "p1", "1", "1.00", "2024-06-29T23:59:59Z"), "outside partition dt=2024-06-30"),
    (("t13", "c1", "p1", "1", "1.00", TS, "extra"), "malformed CSV row (not 6 fields)"),  # drift in a row
    (("t14", "c1", "p1", "1"), "malformed CSV row (not 6 fields)"),
    (
        ("t15", "c1", "p1", "1", "1.00", "2024-06-30T10:00:00Z; DROP TABLE sales"),
        "transaction_ts: not an ISO",
    ),
    (("t16", "c1", "p1", "3", "5.00", TS), None),
    (("t16", "c1", "p1", "3", "5.00", TS), None),  # exact duplicate
    (("t17", "c2", "p9", "1", "7.50", TS), None),
    (("t17", "c1", "p1", "1", "7.50", TS), None),  # same key, other values: one kept
]


def test_hostile_sales_rows_are_quarantined_with_their_reason_and_none_is_lost(lake_spark, lake):
    write_landing_csv(lake, "sales", DS, SALES, [row for row, _ in HOSTILE_SALES])

    metrics = _ingest(lake_spark, lake, "sales")

    processed = _rows(lake, "processed", "sales")
    quarantine = _rows(lake, "quarantine", "sales")
    # every bad row is in quarantine once, with the reason the contract gives
    expected_bad = [(row, reason) for row, reason in HOSTILE_SALES if reason]
    assert len(quarantine) == len(expected_bad)
    for row, reason in expected_bad:
        found = [q for q in quarantine if _same(q, row)]
        assert len(found) == 1, (row, [q._asdict() for q in quarantine])
        assert reason in found[0].reject_reason, (row, found[0].reject_reason)
    # good rows: one per key; duplicates dropped, counted, not quarantined
    assert sorted(r.transaction_id for r in processed) == ["t01", "t16", "t17"]
    t17 = next(r for r in processed if r.transaction_id == "t17")
    assert t17.customer_id == "c1"  # the row sorting first wins, whatever the file order
    rows_in = len(HOSTILE_SALES)
    assert metrics["rows_in"] == {"sales": rows_in}
    assert metrics["rows_quarantined"] == len(expected_bad)
    assert metrics["duplicates_dropped"] == 2
    # rows lost = in - out - quarantined - duplicates
    assert rows_in - len(processed) - len(quarantine) - metrics["duplicates_dropped"] == 0


def _same(q, row) -> bool:
    if q.raw_record is not None:  # a malformed line is kept verbatim
        return q.raw_record.split(",")[0] == row[0]
    return (q.transaction_id or "") == row[0] and q.transaction_ts == row[5]


def test_malformed_json_lines_and_missing_fields_are_quarantined_and_none_is_lost(lake_spark, lake):
    good = {"event_id": "e1", "user_id": "u1", "page": "home", "event_ts": TS}
    lines = [
        good,
        dict(good),  # duplicate event
        '{"event_id": "e2", "user_id": "u1", "page": "cart", "event_ts": "2024-06-30T10:0',  # truncated
        "[1, 2, 3]",
        "42",
        "not json at all",
        '{"event_id": null, "user_id": "u1", "page": "home", "event_ts": "2024-06-30T10:00:00Z"}',
        {"event_id": "e5", "page": "home", "event_ts": TS},  # no user_id
        {"event_id": "e6", "user_id": "u1", "page": "checkout", "event_ts": TS, "extra": {"nested": 1}},
    ]
    write_landing_jsonl(lake, "clickstream", DS, lines)

    metrics = _ingest(lake_spark, lake, "clickstream")

    processed = sorted(r.event_id for r in _rows(lake, "processed", "clickstream"))
    reasons = sorted(r.reject_reason for r in _rows(lake, "quarantine", "clickstream"))
    assert processed == ["e1", "e6"]  # extra fields are ignored, not a rejection
    assert reasons == sorted(["malformed JSON"] * 4 + ["event_id: required", "user_id: required"])
    assert metrics["rows_in"] == {"clickstream": len(lines)}
    assert len(lines) - len(processed) - len(reasons) - metrics["duplicates_dropped"] == 0


def test_a_file_with_only_a_header_writes_an_empty_day_not_an_error(lake_spark, lake):
    write_landing_csv(lake, "sales", DS, SALES, [])
    metrics = _ingest(lake_spark, lake, "sales")
    assert metrics["rows_in"] == {"sales": 0}
    for zone in ZONES:
        assert _rows(lake, zone, "sales") == []
        # the day is written (with no rows), not missing
        assert table_reads.written_dates(lake_spark, zone, "sales") == {dt.date.fromisoformat(DS)}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty_file", "no header (empty file)"),
        ("empty_dir", "missing landing partition"),
        ("header_missing_a_column", "header mismatch"),
    ],
)
def test_unreadable_partitions_fail_with_exit_2_and_one_line_naming_the_problem(
    lake, cli, capsys, setup, message
):
    folder = lake_dir(lake) / "landing" / "sales" / f"dt={DS}"
    folder.mkdir(parents=True)
    if setup == "empty_file":
        (folder / "part-0000.csv").write_bytes(b"")
    elif setup == "header_missing_a_column":
        write_landing_csv(lake, "sales", DS, SALES[:-1], [("t1", "c1", "p1", "1", "1.00")])
    capsys.readouterr()

    code = cli("ingest", "--dataset", "sales", "--ds", DS, "--lake", lake)

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert message in err
    assert not any(table_exists(lake, zone, "sales") for zone in ZONES)
    assert not (lake_dir(lake) / "warehouse").exists()


# ---- the real command line, as the local runner and EMR start it ----------------------------
def _spark_jobs(*argv: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_MASTER": "local[1]",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "spark_jobs", *argv],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_the_cli_exits_2_with_one_line_for_schema_drift_and_a_missing_partition(tmp_path):
    drift_lake, missing_lake = (tmp_path / "drift").as_uri(), (tmp_path / "missing").as_uri()
    # an upstream system added a column
    write_landing_csv(drift_lake, "sales", DS, (*SALES, "coupon"), [("t1", "c1", "p1", "1", "1.00", TS, "X")])
    # both JVMs start side by side: each is slow to start, neither does much
    procs = {
        "drift": _spark_jobs("ingest", "--dataset", "sales", "--ds", DS, "--lake", drift_lake),
        "missing": _spark_jobs("ingest", "--dataset", "customers", "--ds", DS, "--lake", missing_lake),
        "args": _spark_jobs(
            "ingest", "--dataset", "sales", "--ds", "2024-06-30; rm -rf /", "--lake", drift_lake
        ),
    }
    results = {name: (p.wait(timeout=300), *p.communicate()) for name, p in procs.items()}

    for name, (code, out, err) in results.items():
        lines = [line for line in err.splitlines() if line.startswith("spark_jobs")]
        assert code == EXIT_BAD_INPUT, (name, out[-2000:], err[-2000:])
        assert len(lines) == 1, (name, err[-2000:])
        assert "SPARK_JOBS_METRICS" not in out
    assert "header mismatch" in results["drift"][2]
    assert f"found '{','.join(SALES)},coupon'" in results["drift"][2]
    assert f"missing landing partition {missing_lake}/landing/customers/dt={DS}" in results["missing"][2]
    assert "not YYYY-MM-DD" in results["args"][2]
    assert not table_exists(drift_lake, "processed", "sales")
    assert not (tmp_path / "drift" / "warehouse").exists()


# ---- a failed write commits nothing ---------------------------------------------------------
def _ingest_once(spark, lake):
    """sales for DS ingested once (good t1, rejected t2), then upstream sends a second file (good
    t3): a rerun would change both tables."""
    write_landing_csv(
        lake, "sales", DS, SALES, [("t1", "c1", "p1", "1", "1.00", TS), ("t2", "c1", "p1", "x", "1", TS)]
    )
    _ingest(tables.bind(spark, lake), lake, "sales")
    write_landing_csv(lake, "sales", DS, SALES, [("t3", "c9", "p9", "5", "9.99", TS)], name="part-0001.csv")
    return lake


@pytest.fixture(scope="module")
def ingested_once(spark, tmp_path_factory):
    """A lake after `_ingest_once`, shared by the failure tests that only fail a write: each must
    leave it as it was, and checks so against the rows written by hand."""
    root = tmp_path_factory.mktemp("ingested_once") / "lake"
    root.mkdir()
    return _ingest_once(spark, root.as_uri())


def _seen(lake):
    """What readers see of both tables: the current snapshot, every snapshot, DS's rows."""
    return {
        zone: (
            load(lake, zone, "sales").current_snapshot().snapshot_id,
            snapshot_ids(lake, zone, "sales"),
            sorted(read_table(lake, zone, "sales", DS).astype(str).itertuples(index=False, name=None)),
        )
        for zone in ZONES
    }


def _assert_as_ingested_once(lake):
    """The rows of the first ingest, by hand: t1 processed, t2 quarantined."""
    assert [r.transaction_id for r in _rows(lake, "processed", "sales")] == ["t1"]
    assert [(r.transaction_id, r.reject_reason) for r in _rows(lake, "quarantine", "sales")] == [
        ("t2", "quantity: not an integer: 'x'")
    ]


def test_a_spark_write_that_fails_in_its_tasks_leaves_both_tables_as_they_were(
    spark, ingested_once, monkeypatch
):
    lake = ingested_once
    before = _seen(lake)
    # processed, the first write: its Spark job dies while writing data files
    fail_table_writes(monkeypatch, "processed", in_spark=True)
    with pytest.raises(Exception, match=r"injected: the write of processed\.sales failed"):
        _ingest(tables.bind(spark, lake), lake, "sales")
    monkeypatch.undo()

    assert _seen(lake) == before  # not a snapshot more, in either table
    _assert_as_ingested_once(lake)


def test_a_commit_the_catalog_refuses_leaves_both_tables_as_they_were(spark, lake):
    _ingest_once(spark, lake)  # a lake of its own: a catalog left locked must fail no other test
    before = _seen(lake)
    session = tables.bind(spark, lake)
    # set before the session first uses its catalog: wait 0.3s, not 30, for the catalog's lock
    session.conf.set(f"spark.sql.catalog.{CATALOG}.jdbc.busy_timeout", "300")
    # Another writer holds the catalog's write lock: the data files get written, but the commit
    # (the catalog's pointer to the new metadata) cannot be made.
    holder = sqlite3.connect(lake_dir(lake) / CATALOG_FILE, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Exception, match="database is locked"):
            _ingest(session, lake, "sales")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert _seen(lake) == before
    _assert_as_ingested_once(lake)


def test_a_failed_quarantine_write_leaves_processed_as_it_was(spark, ingested_once, monkeypatch):
    lake = ingested_once
    before = _seen(lake)
    session = tables.bind(spark, lake)
    written = {zone: table_reads.written_dates(session, zone, "sales") for zone in ZONES}
    # quarantine, the second write, dies in Spark after processed was committed
    fail_table_writes(monkeypatch, "quarantine", in_spark=True)
    with pytest.raises(Exception, match=r"injected: the write of quarantine\.sales failed"):
        _ingest(session, lake, "sales")
    monkeypatch.undo()

    after = _seen(lake)
    assert after["quarantine"] == before["quarantine"]
    # processed: its commit was taken back; readers see the snapshot they saw before, its rows
    current, snapshots, rows = after["processed"]
    assert (current, rows) == (before["processed"][0], before["processed"][2])
    assert len(snapshots) == len(before["processed"][1]) + 1  # the commit taken back, kept in history
    assert {zone: table_reads.written_dates(session, zone, "sales") for zone in ZONES} == written
    _assert_as_ingested_once(lake)
