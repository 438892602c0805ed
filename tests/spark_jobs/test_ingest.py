"""The ingest job: landing text -> typed rows in table processed.<dataset>, rejects with their reason
in quarantine.<dataset>, each table one commit for the dates ingested; and the failures the contract
asks for (wrong header, missing partition, a failed write) commit nothing.

The tables are read back through pyiceberg (tests/harness/lake_tables.py), not through the jobs' Spark code.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs import stock_daily, table_reads, tables
from spark_jobs.cli import main, parse_args
from spark_jobs.common import JobInputError
from spark_jobs.ingest import run
from spark_jobs.protocol import EXIT_BAD_INPUT
from spark_jobs.schemas import LANDING_COLUMNS, PROCESSED, QUARANTINE
from spark_jobs.validation import (
    CORRUPT,
    deduplicated_by_key,
    valid_rows,
    with_typed_columns_and_reject_reason,
)
from tests.harness.lake_files import lake_dir, write_landing_csv, write_landing_jsonl
from tests.harness.lake_tables import (
    dates_with_rows,
    fail_table_writes,
    load,
    read_table,
    snapshot_ids,
    table_exists,
)

DS = "2024-06-30"
SALES = LANDING_COLUMNS["sales"]
TICKS = LANDING_COLUMNS["stock_ticks"]
ZONES = ("processed", "quarantine")


def _ingest(session, lake, dataset, *dates):
    """The job in-process, on a session bound to `lake`."""
    dates_args = ["--ds", dates[0]] if len(dates) == 1 else ["--start-ds", dates[0], "--end-ds", dates[-1]]
    return run(session, parse_args(["ingest", "--dataset", dataset, *dates_args, "--lake", lake]))


def _read(lake, zone, dataset, ds=DS):
    """One date's rows of a table, as pandas through pyiceberg."""
    return read_table(lake, zone, dataset, ds)


def _columns(session, zone, dataset):
    """The table's columns as Spark reads them, without dt (to compare with the contract)."""
    return table_reads.read(session, zone, dataset).drop("dt").schema


def _counts(metrics):
    return {k: v for k, v in metrics.items() if k != "tables"}


def _commits(lake, dataset, dates):
    """What the metrics' "tables" entry must say, read back with pyiceberg: each table's current
    snapshot and the rows it holds on the dates ingested."""
    return {
        f"{zone}.{dataset}": {
            "snapshot_id": load(lake, zone, dataset).current_snapshot().snapshot_id,
            "rows": sum(len(read_table(lake, zone, dataset, day)) for day in dates),
        }
        for zone in ZONES
    }


def _rows(lake, zone, dataset):
    """Every row of a table (dt included), in a canonical order."""
    frame = read_table(lake, zone, dataset).astype(str)
    return sorted(frame.itertuples(index=False, name=None))


@pytest.fixture
def cli(spark):
    """spark_jobs.cli.main in-process; restores the session settings get_spark changes."""
    saved = spark.conf.get("spark.sql.shuffle.partitions")

    def call(*argv):
        return main(list(argv))

    yield call
    spark.conf.set("spark.sql.shuffle.partitions", saved)
    spark.sparkContext.setLogLevel("ERROR")


# ---- validation rules, on in-memory landing rows --------------------------------------------
def _checked(spark, dataset, rows, ds=DS):
    schema = StructType(
        [StructField(c, StringType()) for c in LANDING_COLUMNS[dataset]]
        + [StructField(CORRUPT, StringType())]
    )
    landing = spark.createDataFrame([(*row, None) for row in rows], schema)
    return with_typed_columns_and_reject_reason(landing, dataset, dt.date.fromisoformat(ds))


def _reasons_by(checked, key):
    return {r[key]: r["reject_reason"] for r in checked.select(key, "reject_reason").collect()}


def test_each_sales_rule_rejects_with_a_reason_naming_column_and_value(spark):
    ok = ("c1", "p1", "2", "10.50", "2024-06-30T10:00:00Z")

    def row(tid, **changes):
        values = dict(zip(SALES[1:], ok, strict=True)) | changes
        return (tid, *values.values())

    rows = [
        row("ok"),
        row("qty-text", quantity="abc"),
        row("qty-frac", quantity="1.5"),
        row("qty-zero", quantity="0"),
        row("qty-neg", quantity="-3"),
        row("qty-overflow", quantity="3000000000"),
        row("amt-neg", total_amount="-0.01"),
        row("amt-3dp", total_amount="10.505"),
        row("amt-overflow", total_amount="12345678901.00"),
        row("amt-text", total_amount="N/A"),
        row("cust-empty", customer_id=""),
        row("cust-null", customer_id=None),
        row("cust-blank", customer_id="  "),
        row("ts-no-zone", transaction_ts="2024-06-30T10:00:00"),
        row("ts-date-only", transaction_ts="2024-06-30"),
        row("ts-feb-30", transaction_ts="2024-02-30T10:00:00Z"),
        row("ts-day-before", transaction_ts="2024-06-29T23:59:59Z"),
    ]
    got = _reasons_by(_checked(spark, "sales", rows), "transaction_id")

    assert got == {
        "ok": None,
        "qty-text": "quantity: not an integer: 'abc'",
        "qty-frac": "quantity: not an integer: '1.5'",
        "qty-zero": "quantity: must be > 0: '0'",
        "qty-neg": "quantity: must be > 0: '-3'",
        "qty-overflow": "quantity: out of range for INT: '3000000000'",
        "amt-neg": "total_amount: must be >= 0: '-0.01'",
        "amt-3dp": "total_amount: more than 2 decimal places: '10.505'",
        "amt-overflow": "total_amount: out of range for DECIMAL(12,2): '12345678901.00'",
        "amt-text": "total_amount: not a decimal number: 'N/A'",
        "cust-empty": "customer_id: required",
        "cust-null": "customer_id: required",
        "cust-blank": "customer_id: required",
        "ts-no-zone": "transaction_ts: timestamp without zone (Z or +HH:MM): '2024-06-30T10:00:00'",
        "ts-date-only": "transaction_ts: not an ISO-8601 timestamp with zone: '2024-06-30'",
        "ts-feb-30": "transaction_ts: not a calendar date and time: '2024-02-30T10:00:00Z'",
        "ts-day-before": "transaction_ts: 2024-06-29 is outside partition dt=2024-06-30",
    }


def test_a_row_with_several_problems_gets_every_reason_joined_in_column_order(spark):
    rows = [(None, "", "p1", "abc", "1.234", "2024-06-30T10:00:00")]
    (reason,) = _reasons_by(_checked(spark, "sales", rows), "product_id").values()
    assert reason == (
        "transaction_id: required; customer_id: required; quantity: not an integer: 'abc'; "
        "total_amount: more than 2 decimal places: '1.234'; "
        "transaction_ts: timestamp without zone (Z or +HH:MM): '2024-06-30T10:00:00'"
    )


def test_a_zone_offset_is_converted_to_utc_and_judged_by_its_utc_date(spark):
    rows = [
        # 23:30 at -02:00 is 01:30 UTC on July 1st: outside dt=2024-06-30
        ("late-evening-west", "c1", "p1", "1", "1.00", "2024-06-30T23:30:00-02:00"),
        # 01:30 at +02:00 is 23:30 UTC on June 30th: inside, though its local date is July 1st
        ("early-morning-east", "c1", "p1", "1", "1.00", "2024-07-01T01:30:00+02:00"),
    ]
    checked = _checked(spark, "sales", rows)

    assert _reasons_by(checked, "transaction_id") == {
        "late-evening-west": "transaction_ts: 2024-07-01 is outside partition dt=2024-06-30",
        "early-morning-east": None,
    }
    (kept,) = valid_rows(checked, "sales").select(F.unix_micros("transaction_ts").alias("us")).collect()
    assert kept.us == pd.Timestamp("2024-06-30T23:30:00Z").value // 1000


def test_a_self_referral_is_rejected(spark):
    rows = [("c1", "c1", "2024-06-30T10:00:00Z"), ("c1", "c2", "2024-06-30T10:00:00Z")]
    got = _reasons_by(_checked(spark, "referrals", rows), "referred_id")
    assert got == {"c1": "referred_id: self-referral (referrer_id == referred_id): 'c1'", "c2": None}


def test_prices_must_be_finite_numbers_and_volumes_fit_bigint(spark):
    ts = "2024-06-30T14:00:00.250Z"
    rows = [
        ("OK", ts, "1.5e2", "9223372036854775807"),
        ("TEXT", ts, "n/a", "1"),
        ("NAN", ts, "NaN", "1"),
        ("INF", ts, "1e999", "1"),
        ("BIG", ts, "1.0", "9223372036854775808"),
    ]
    checked = _checked(spark, "stock_ticks", rows)

    assert _reasons_by(checked, "ticker") == {
        "OK": None,
        "TEXT": "close_price: not a number: 'n/a'",
        "NAN": "close_price: not a number: 'NaN'",
        "INF": "close_price: not a finite number: '1e999'",
        "BIG": "volume: out of range for BIGINT: '9223372036854775808'",
    }
    (ok,) = valid_rows(checked, "stock_ticks").collect()
    assert (ok.close_price, ok.volume) == (150.0, 2**63 - 1)


def test_customer_dates_must_be_real_yyyy_mm_dd_dates(spark):
    rows = [
        ("a", "EU", "2024-01-31"),
        ("b", "EU", "2024-13-01"),
        ("c", "EU", "2024/01/01"),
        ("d", " ", "2024-01-01"),
    ]
    got = _reasons_by(_checked(spark, "customers", rows), "customer_id")
    assert got == {
        "a": None,
        "b": "signup_date: not a calendar date: '2024-13-01'",
        "c": "signup_date: not a date (YYYY-MM-DD): '2024/01/01'",
        "d": "region: required",
    }


def test_deduplication_keeps_the_row_sorting_first_whatever_the_input_order(spark):
    ts = dt.datetime(2024, 6, 30, 10)
    rows = [
        ("t1", "c2", "p1", 1, Decimal("5.00"), ts),
        ("t1", "c1", "p9", 3, Decimal("7.00"), ts),
        ("t1", "c1", "p1", 2, Decimal("6.00"), ts),
        ("t2", "c3", "p1", 1, Decimal("1.00"), ts),
        ("t2", "c3", "p1", 1, Decimal("1.00"), ts),
        ("t3", "c4", "p2", 4, Decimal("2.50"), ts),
    ]
    frame = pd.DataFrame(rows, columns=SALES)
    expected = frame.sort_values(list(SALES)).drop_duplicates(subset=["transaction_id"], keep="first")

    results = []
    for order in (rows, rows[::-1], rows[2:] + rows[:2]):
        df = spark.createDataFrame(order, PROCESSED["sales"]).repartition(3)
        results.append(sorted(deduplicated_by_key(df, ["transaction_id"]).collect()))

    assert results[0] == results[1] == results[2]
    assert [tuple(r) for r in results[0]] == [tuple(r) for r in expected.itertuples(index=False)]


# ---- the job, on landing files ---------------------------------------------------------------
def test_good_rows_are_typed_as_pandas_parses_the_same_csv(lake_spark, lake):
    rows = [
        ("t1", "c1", "p1", "2", "10.50", "2024-06-30T10:00:00Z"),
        ("t2", "c2", "p2", "+7", "0", "2024-06-30T00:00:00.123456Z"),
        ("t3", "c3", "p3", "1", "12.500", "2024-07-01T01:30:00+02:00"),
        ("t4", "c4", "p4", "12", "99.9", "2024-06-29T22:00:00-05:30"),
        ("t5", "c5", "p5", "3", "1234567890.99", "2024-06-30T23:59:59.5Z"),
    ]
    path = write_landing_csv(lake, "sales", DS, SALES, rows)

    metrics = _ingest(lake_spark, lake, "sales", DS)

    oracle = pd.read_csv(path, dtype=str)
    oracle["quantity"] = oracle["quantity"].astype(int)
    oracle["total_amount"] = [Decimal(v).quantize(Decimal("0.01")) for v in oracle["total_amount"]]
    oracle["transaction_ts"] = pd.to_datetime(oracle["transaction_ts"], utc=True, format="ISO8601")
    processed = _read(lake, "processed", "sales")
    for frame in (oracle, processed):  # instants as microseconds since the epoch, UTC
        frame["us"] = frame["transaction_ts"].map(lambda t: t.value // 1000)
    columns = ["transaction_id", "customer_id", "product_id", "quantity", "total_amount", "us"]

    assert sorted(processed[columns].itertuples(index=False, name=None)) == sorted(
        oracle[columns].itertuples(index=False, name=None)
    )
    # the table's types, as any Iceberg reader sees them (by hand, from the contract)
    assert {f.name: str(f.field_type) for f in load(lake, "processed", "sales").schema().fields} == {
        "transaction_id": "string",
        "customer_id": "string",
        "product_id": "string",
        "quantity": "int",
        "total_amount": "decimal(12, 2)",
        "transaction_ts": "timestamptz",
        "dt": "date",
    }
    assert _columns(lake_spark, "processed", "sales") == PROCESSED["sales"]
    assert len(_read(lake, "quarantine", "sales")) == 0
    assert dt.date.fromisoformat(DS) in table_reads.written_dates(lake_spark, "quarantine", "sales")
    assert metrics == {
        "rows_in": {"sales": 5},
        "rows_out": {"sales": 5},
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
        "tables": _commits(lake, "sales", [DS]),
    }
    assert metrics["tables"]["processed.sales"]["rows"] == 5


def test_rejects_go_to_quarantine_as_text_and_duplicates_are_dropped_not_quarantined(lake_spark, lake):
    good = ("t1", "c1", "p1", "2", "10.50", "2024-06-30T10:00:00Z")
    write_landing_csv(
        lake, "sales", DS, SALES, [good, ("t2", "c1", "p1", "-1", "5.00", "2024-06-30T11:00:00Z")]
    )
    # the second file re-sends t1 (same key, other values), and holds a line with a missing field
    with write_landing_csv(
        lake,
        "sales",
        DS,
        SALES,
        [("t1", "c0", "p1", "2", "10.50", "2024-06-30T10:00:00Z")],
        name="part-0001.csv",
    ).open("a") as fh:
        fh.write("t3,c1,p1,1,2.00\n")

    metrics = _ingest(lake_spark, lake, "sales", DS)

    kept = _read(lake, "processed", "sales")
    assert list(zip(kept.transaction_id, kept.customer_id, strict=True)) == [("t1", "c0")]  # "c0" < "c1"
    assert _columns(lake_spark, "quarantine", "sales") == QUARANTINE["sales"]
    quarantine = _read(lake, "quarantine", "sales")
    got = sorted(
        quarantine[["transaction_id", "quantity", "reject_reason", "raw_record"]].itertuples(
            index=False, name=None
        )
    )
    assert got == [
        ("t2", "-1", "quantity: must be > 0: '-1'", None),
        ("t3", "1", "malformed CSV row (not 6 fields)", "t3,c1,p1,1,2.00"),
    ]
    assert _counts(metrics) == {
        "rows_in": {"sales": 4},
        "rows_out": {"sales": 1},
        "rows_quarantined": 2,
        "duplicates_dropped": 1,
    }
    assert metrics["tables"] == _commits(lake, "sales", [DS])


def test_malformed_json_lines_are_quarantined_verbatim_and_extra_fields_are_ignored(lake_spark, lake):
    good = {
        "event_id": "e1",
        "user_id": "u1",
        "page": "home",
        "event_ts": "2024-06-30T08:00:00.5Z",
        "referrer": "x",
    }
    truncated = '{"event_id": "e2", "user_id": "u1", "pa'
    records = [
        good,
        truncated,
        "[1, 2]",
        {"event_id": "e3", "page": "cart", "event_ts": "2024-06-30T09:00:00Z"},
    ]
    write_landing_jsonl(lake, "clickstream", DS, records)

    metrics = _ingest(lake_spark, lake, "clickstream", DS)

    assert _columns(lake_spark, "processed", "clickstream") == PROCESSED["clickstream"]
    processed = _read(lake, "processed", "clickstream")
    assert list(processed[["event_id", "user_id", "page"]].itertuples(index=False, name=None)) == [
        ("e1", "u1", "home")
    ]
    quarantine = _read(lake, "quarantine", "clickstream")
    got = sorted(
        (r.event_id or "", r.reject_reason, r.raw_record or "") for r in quarantine.itertuples(index=False)
    )
    assert got == [
        ("", "malformed JSON", "[1, 2]"),
        ("", "malformed JSON", truncated),
        ("e3", "user_id: required", ""),
    ]
    assert metrics["rows_in"] == {"clickstream": 4}
    assert metrics["rows_quarantined"] == 3


def test_a_wrong_header_exits_2_with_one_line_and_writes_nothing(lake_spark, lake, cli, capsys):
    other_day = "2024-06-29"
    write_landing_csv(
        lake, "sales", other_day, SALES, [("t0", "c1", "p1", "1", "1.00", f"{other_day}T10:00:00Z")]
    )
    _ingest(lake_spark, lake, "sales", other_day)
    write_landing_csv(lake, "sales", DS, SALES, [("t1", "c1", "p1", "1", "1.00", "2024-06-30T10:00:00Z")])
    _ingest(lake_spark, lake, "sales", DS)
    before = {zone: (snapshot_ids(lake, zone, "sales"), _rows(lake, zone, "sales")) for zone in ZONES}
    # the second file of the partition has its columns swapped
    swapped = ("transaction_id", "customer_id", "product_id", "total_amount", "quantity", "transaction_ts")
    bad_file = write_landing_csv(
        lake,
        "sales",
        DS,
        swapped,
        [("t2", "c1", "p1", "1.00", "1", "2024-06-30T10:00:00Z")],
        name="part-0001.csv",
    )
    capsys.readouterr()

    code = cli("ingest", "--dataset", "sales", "--start-ds", other_day, "--end-ds", DS, "--lake", lake)

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert bad_file.name in err
    assert "transaction_id,customer_id,product_id,total_amount,quantity,transaction_ts" in err
    assert ",".join(SALES) in err
    # no commit to either table, though 2024-06-29's own header is fine
    assert {zone: (snapshot_ids(lake, zone, "sales"), _rows(lake, zone, "sales")) for zone in ZONES} == before
    assert _read(lake, "processed", "sales").transaction_id.tolist() == ["t1"]


def test_a_missing_landing_partition_fails_with_a_clear_message(lake, cli, capsys):
    code = cli("ingest", "--dataset", "sales", "--ds", DS, "--lake", lake)

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert f"missing landing partition {lake}/landing/sales/dt={DS}" in err
    assert not any(table_exists(lake, zone, "sales") for zone in ZONES)
    assert not (lake_dir(lake) / "warehouse").exists()


def test_a_day_without_stock_ticks_is_written_empty_and_says_so(lake_spark, lake, caplog):
    with caplog.at_level(logging.WARNING, logger="spark_jobs.ingest"):
        metrics = _ingest(lake_spark, lake, "stock_ticks", DS)

    assert "no landing data for stock_ticks dt=2024-06-30 (market closed / no traffic)" in caplog.text
    for zone, schema in (("processed", PROCESSED), ("quarantine", QUARANTINE)):
        assert len(_read(lake, zone, "stock_ticks")) == 0
        assert dates_with_rows(lake, zone, "stock_ticks") == []
        # written with no rows: a day without data, not a day ingest has not run for
        assert table_reads.written_dates(lake_spark, zone, "stock_ticks") == {dt.date.fromisoformat(DS)}
        assert load(lake, zone, "stock_ticks").current_snapshot().summary["pipeline.dates"] == DS
        assert _columns(lake_spark, zone, "stock_ticks") == schema["stock_ticks"]
    assert metrics == {
        "rows_in": {"stock_ticks": 0},
        "rows_out": {"stock_ticks": 0},
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
        "tables": _commits(lake, "stock_ticks", [DS]),
    }


def _data_files(lake, zone, dataset, day):
    """The data files holding a date's rows in the table's current snapshot."""
    scan = load(lake, zone, dataset).scan(row_filter=f"dt = '{day}'")
    return sorted(task.file.file_path for task in scan.plan_files())


def test_a_rerun_replaces_its_own_date_clears_stale_rejects_and_leaves_other_dates(lake_spark, lake):
    other = "2024-06-29"
    write_landing_csv(lake, "stock_ticks", other, TICKS, [("ACME", f"{other}T14:00:00Z", "10.0", "5")])
    write_landing_csv(lake, "stock_ticks", DS, TICKS, [("ACME", "2024-06-30T14:00:00Z", "n/a", "5")])
    _ingest(lake_spark, lake, "stock_ticks", other, DS)
    assert len(_read(lake, "quarantine", "stock_ticks")) == 1
    other_files = _data_files(lake, "processed", "stock_ticks", other)
    other_rows = _read(lake, "processed", "stock_ticks", other)
    assert len(other_files) == 1

    # upstream fixed the file; run ds again, twice
    write_landing_csv(lake, "stock_ticks", DS, TICKS, [("ACME", "2024-06-30T14:00:00Z", "11.0", "5")])
    first = _ingest(lake_spark, lake, "stock_ticks", DS)
    first_rows = _rows(lake, "processed", "stock_ticks")
    second = _ingest(lake_spark, lake, "stock_ticks", DS)

    assert _counts(first) == _counts(second)
    assert _rows(lake, "processed", "stock_ticks") == first_rows
    ds_rows = _read(lake, "processed", "stock_ticks")
    assert list(zip(ds_rows.ticker, ds_rows.close_price, strict=True)) == [("ACME", 11.0)]
    assert len(_read(lake, "quarantine", "stock_ticks")) == 0
    # the other date: its very data files, untouched by either rerun
    assert _data_files(lake, "processed", "stock_ticks", other) == other_files
    pd.testing.assert_frame_equal(_read(lake, "processed", "stock_ticks", other), other_rows)
    # each run is one commit per table: the range, then the two reruns
    assert [len(snapshot_ids(lake, zone, "stock_ticks")) for zone in ZONES] == [3, 3]


def test_a_range_ingests_every_day_including_a_day_without_traffic(lake_spark, lake):
    days = ["2024-06-28", "2024-06-29", "2024-06-30"]
    for day, n in ((days[0], 2), (days[2], 3)):
        events = [
            {"event_id": f"{day}-{i}", "user_id": "u", "page": "home", "event_ts": f"{day}T10:00:0{i}Z"}
            for i in range(n)
        ]
        write_landing_jsonl(lake, "clickstream", day, events)

    metrics = _ingest(lake_spark, lake, "clickstream", days[0], days[-1])

    assert [len(_read(lake, "processed", "clickstream", day)) for day in days] == [2, 0, 3]
    assert len(_read(lake, "quarantine", "clickstream", days[1])) == 0
    dates = [dt.date.fromisoformat(day) for day in days]
    assert dates_with_rows(lake, "processed", "clickstream") == [dates[0], dates[2]]
    for zone in ZONES:
        # one commit for the whole range, and the day without traffic reads as written
        (snapshot,) = load(lake, zone, "clickstream").snapshots()
        assert (snapshot.summary["pipeline.job"], snapshot.summary["pipeline.dates"]) == (
            "ingest",
            f"{days[0]}..{days[-1]}",
        )
        assert table_reads.written_dates(lake_spark, zone, "clickstream") == set(dates)
    assert metrics["rows_in"] == {"clickstream": 5}
    assert metrics["rows_out"] == {"clickstream": 5}
    assert metrics["tables"] == _commits(lake, "clickstream", days)


# ---- a range in one pass: the same rows per date as one day at a time -------------------------
def _sales_landing_over_three_days(lake):
    """Per-day rules that a single pass over a range could get wrong, each on its own day."""
    a, b, c = "2024-06-28", "2024-06-29", "2024-06-30"
    with write_landing_csv(
        lake,
        "sales",
        a,
        SALES,
        [
            ("t1", "c1", "p1", "1", "5.00", f"{a}T09:00:00Z"),
            ("t1", "c0", "p1", "1", "5.00", f"{a}T09:00:00Z"),  # same key, same day: one kept
            ("t2", "c2", "p2", "3", "7.25", f"{a}T23:59:59Z"),
            ("t9", "c2", "p2", "1", "1.00", f"{b}T00:00:00Z"),  # filed under a, dated b (in range)
        ],
    ).open("a") as fh:
        fh.write("t8,c1,p1,1\n")
    write_landing_csv(
        lake,
        "sales",
        b,
        SALES,
        [
            ("t1", "c1", "p1", "2", "9.00", f"{b}T10:00:00Z"),  # key of day a again: a new day's row
            ("t3", "c3", "p3", "1", "0.00", f"{b}T12:00:00Z"),
            ("t4", "c3", "p3", "0", "1.00", f"{b}T12:00:00Z"),
        ],
    )
    write_landing_csv(lake, "sales", c, SALES, [("t5", "c1", "p1", "1", "-1.00", f"{c}T01:00:00Z")])
    return [a, b, c]


def _day_frame(lake, zone, day):
    """A date's rows of a table as pandas (pyiceberg, no Spark), in a canonical order."""
    frame = read_table(lake, zone, "sales", day)
    return frame.sort_values(list(frame.columns), na_position="first").reset_index(drop=True)


def _day_counts(caplog):
    """The per-day count lines ingest logged."""
    return sorted(r.getMessage() for r in caplog.records if " rows in, " in r.getMessage())


def test_a_range_writes_exactly_the_rows_of_each_day_ingested_alone_in_one_commit(
    spark, lake_spark, lake, tmp_path, caplog
):
    alone = (tmp_path / "alone").as_uri()
    days = _sales_landing_over_three_days(lake)
    _sales_landing_over_three_days(alone)

    with caplog.at_level(logging.INFO, logger="spark_jobs.ingest"):
        ranged = _ingest(lake_spark, lake, "sales", days[0], days[-1])
        ranged_counts = _day_counts(caplog)
        caplog.clear()
        alone_session = tables.bind(spark, alone)
        each = [_ingest(alone_session, alone, "sales", day) for day in days]
        each_counts = _day_counts(caplog)

    for zone in ZONES:
        for day in days:
            # values and pandas dtypes alike
            pd.testing.assert_frame_equal(_day_frame(lake, zone, day), _day_frame(alone, zone, day))
        # the range: one commit per table, recording the whole range; the days alone: one each
        (snapshot,) = load(lake, zone, "sales").snapshots()
        assert snapshot.summary["pipeline.dates"] == f"{days[0]}..{days[-1]}"
        assert len(snapshot_ids(alone, zone, "sales")) == 3
    # and what those rows are, by hand: keys are unique within a day, not across days
    ids = {day: sorted(_day_frame(lake, "processed", day).transaction_id) for day in days}
    assert ids == {days[0]: ["t1", "t2"], days[1]: ["t1", "t3"], days[2]: []}
    assert _day_frame(lake, "processed", days[0]).customer_id.tolist() == ["c0", "c2"]
    reasons = {day: sorted(_day_frame(lake, "quarantine", day).reject_reason) for day in days}
    assert reasons == {
        days[0]: [
            "malformed CSV row (not 6 fields)",
            f"transaction_ts: {days[1]} is outside partition dt={days[0]}",
        ],
        days[1]: ["quantity: must be > 0: '0'"],
        days[2]: ["total_amount: must be >= 0: '-1.00'"],
    }
    # per-day counts: the range's are each day's alone; totals too
    assert ranged_counts == each_counts
    assert len(ranged_counts) == 3
    assert _counts(ranged) == {
        "rows_in": {"sales": sum(m["rows_in"]["sales"] for m in each)},
        "rows_out": {"sales": sum(m["rows_out"]["sales"] for m in each)},
        "rows_quarantined": sum(m["rows_quarantined"] for m in each),
        "duplicates_dropped": sum(m["duplicates_dropped"] for m in each),
    }
    assert ranged["rows_in"] == {"sales": 9}
    assert ranged["duplicates_dropped"] == 1
    assert f"sales dt={days[0]}: 5 rows in, 2 out, 2 quarantined, 1 duplicates dropped" in ranged_counts
    assert f"sales dt={days[2]}: 1 rows in, 0 out, 1 quarantined, 0 duplicates dropped" in ranged_counts
    assert ranged["tables"] == _commits(lake, "sales", days)


# ---- a failed write commits nothing ----------------------------------------------------------
def test_a_range_whose_quarantine_write_fails_leaves_both_tables_as_they_were(lake_spark, lake, monkeypatch):
    days = _sales_landing_over_three_days(lake)
    _ingest(lake_spark, lake, "sales", days[0], days[-1])
    snapshots = {zone: snapshot_ids(lake, zone, "sales") for zone in ZONES}
    rows = {zone: _rows(lake, zone, "sales") for zone in ZONES}
    written = {zone: table_reads.written_dates(lake_spark, zone, "sales") for zone in ZONES}
    # new data for every day: the failed run would change every date of both tables
    for day in days:
        write_landing_csv(
            lake,
            "sales",
            day,
            SALES,
            [(f"n-{day}", "c1", "p1", "1", "1.00", f"{day}T08:00:00Z")],
            name="b.csv",
        )
    fail_table_writes(monkeypatch, "quarantine")
    with pytest.raises(OSError, match="injected"):
        _ingest(lake_spark, lake, "sales", days[0], days[-1])
    monkeypatch.undo()

    # quarantine: no commit at all; processed: its commit was taken back (rolled back to the
    # snapshot it had, which readers see again)
    assert snapshot_ids(lake, "quarantine", "sales") == snapshots["quarantine"]
    assert load(lake, "processed", "sales").current_snapshot().snapshot_id == snapshots["processed"][-1]
    assert {zone: _rows(lake, zone, "sales") for zone in ZONES} == rows
    assert {zone: table_reads.written_dates(lake_spark, zone, "sales") for zone in ZONES} == written


@pytest.mark.parametrize("earlier_day", [True, False], ids=["table-had-a-day", "first-run"])
def test_a_failed_ingest_is_not_mistaken_for_a_day_without_data(lake_spark, lake, monkeypatch, earlier_day):
    """A taken-back commit must not leave its dates recorded as written (empty): stock_daily
    would then publish "market closed" for a day whose ticks were never ingested."""
    other = "2024-06-29"
    if earlier_day:
        write_landing_csv(lake, "stock_ticks", other, TICKS, [("ACME", f"{other}T14:00:00Z", "10.0", "5")])
        _ingest(lake_spark, lake, "stock_ticks", other)
    write_landing_csv(lake, "stock_ticks", DS, TICKS, [("ACME", "2024-06-30T14:00:00Z", "11.0", "5")])
    fail_table_writes(monkeypatch, "quarantine")
    with pytest.raises(OSError, match="injected"):
        _ingest(lake_spark, lake, "stock_ticks", DS)
    monkeypatch.undo()

    expected = {dt.date.fromisoformat(other)} if earlier_day else set()
    assert table_exists(lake, "processed", "stock_ticks")  # the failed run did commit, then took it back
    assert set(dates_with_rows(lake, "processed", "stock_ticks")) == expected
    for zone in ZONES:
        assert table_reads.written_dates(lake_spark, zone, "stock_ticks") == expected
    with pytest.raises(JobInputError, match=f"nothing written for {DS}"):
        table_reads.read_date(lake_spark, "processed", "stock_ticks", dt.date.fromisoformat(DS))
    with pytest.raises(JobInputError, match=f"has nothing written for {DS}"):
        stock_daily.run(lake_spark, parse_args(["stock_daily", "--ds", DS, "--lake", lake]))
    assert not table_exists(lake, "curated", "stock_daily")
