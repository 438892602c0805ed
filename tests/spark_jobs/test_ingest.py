"""The ingest job: landing text -> typed processed rows, quarantined rejects with reasons, and
the failures the contract asks for (wrong header, missing partition) before anything is written."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs.cli import EXIT_BAD_INPUT, main, parse_args
from spark_jobs.common import partition_path
from spark_jobs.ingest import (
    CORRUPT,
    deduplicated_by_key,
    run,
    valid_rows,
    with_typed_columns_and_reject_reason,
)
from spark_jobs.schemas import LANDING_COLUMNS, PROCESSED, QUARANTINE
from tests.conftest import lake_dir
from tests.helpers import fail_parquet_writes_to, write_landing_csv, write_landing_jsonl

DS = "2024-06-30"
SALES = LANDING_COLUMNS["sales"]
TICKS = LANDING_COLUMNS["stock_ticks"]


def _ingest(spark, lake, dataset, *dates):
    dates_args = ["--ds", dates[0]] if len(dates) == 1 else ["--start-ds", dates[0], "--end-ds", dates[-1]]
    return run(spark, parse_args(["ingest", "--dataset", dataset, *dates_args, "--lake", lake]))


def _read(spark, lake, zone, dataset, ds=DS):
    return spark.read.parquet(partition_path(lake, zone, dataset, ds))


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
def test_good_rows_are_typed_as_pandas_parses_the_same_csv(spark, lake):
    rows = [
        ("t1", "c1", "p1", "2", "10.50", "2024-06-30T10:00:00Z"),
        ("t2", "c2", "p2", "+7", "0", "2024-06-30T00:00:00.123456Z"),
        ("t3", "c3", "p3", "1", "12.500", "2024-07-01T01:30:00+02:00"),
        ("t4", "c4", "p4", "12", "99.9", "2024-06-29T22:00:00-05:30"),
        ("t5", "c5", "p5", "3", "1234567890.99", "2024-06-30T23:59:59.5Z"),
    ]
    path = write_landing_csv(lake, "sales", DS, SALES, rows)

    metrics = _ingest(spark, lake, "sales", DS)

    oracle = pd.read_csv(path, dtype=str)
    oracle["quantity"] = oracle["quantity"].astype(int)
    oracle["total_amount"] = [Decimal(v).quantize(Decimal("0.01")) for v in oracle["total_amount"]]
    oracle["transaction_ts"] = pd.to_datetime(oracle["transaction_ts"], utc=True, format="ISO8601")
    oracle["us"] = oracle["transaction_ts"].map(lambda t: t.value // 1000)
    expected = sorted(
        oracle[["transaction_id", "customer_id", "product_id", "quantity", "total_amount", "us"]].itertuples(
            index=False, name=None
        )
    )
    processed = _read(spark, lake, "processed", "sales")
    got = processed.select(*SALES[:5], F.unix_micros("transaction_ts").alias("us")).collect()

    assert sorted(tuple(r) for r in got) == expected
    assert processed.schema == PROCESSED["sales"]
    assert _read(spark, lake, "quarantine", "sales").count() == 0
    assert metrics == {
        "rows_in": {"sales": 5},
        "rows_out": {"sales": 5},
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
    }


def test_rejects_go_to_quarantine_as_text_and_duplicates_are_dropped_not_quarantined(spark, lake):
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

    metrics = _ingest(spark, lake, "sales", DS)

    kept = _read(spark, lake, "processed", "sales").collect()
    assert [(r.transaction_id, r.customer_id) for r in kept] == [("t1", "c0")]  # "c0" < "c1"
    quarantine = _read(spark, lake, "quarantine", "sales")
    assert quarantine.schema == QUARANTINE["sales"]
    got = sorted((r.transaction_id, r.quantity, r.reject_reason, r.raw_record) for r in quarantine.collect())
    assert got == [
        ("t2", "-1", "quantity: must be > 0: '-1'", None),
        ("t3", "1", "malformed CSV row (not 6 fields)", "t3,c1,p1,1,2.00"),
    ]
    assert metrics == {
        "rows_in": {"sales": 4},
        "rows_out": {"sales": 1},
        "rows_quarantined": 2,
        "duplicates_dropped": 1,
    }


def test_malformed_json_lines_are_quarantined_verbatim_and_extra_fields_are_ignored(spark, lake):
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

    metrics = _ingest(spark, lake, "clickstream", DS)

    processed = _read(spark, lake, "processed", "clickstream")
    assert processed.schema == PROCESSED["clickstream"]
    assert [(r.event_id, r.user_id, r.page) for r in processed.collect()] == [("e1", "u1", "home")]
    got = sorted(
        (r.event_id or "", r.reject_reason, r.raw_record or "")
        for r in _read(spark, lake, "quarantine", "clickstream").collect()
    )
    assert got == [
        ("", "malformed JSON", "[1, 2]"),
        ("", "malformed JSON", truncated),
        ("e3", "user_id: required", ""),
    ]
    assert metrics["rows_in"] == {"clickstream": 4}
    assert metrics["rows_quarantined"] == 3


def test_a_wrong_header_exits_2_with_one_line_and_writes_nothing(spark, lake, cli, capsys):
    other_day = "2024-06-29"
    write_landing_csv(
        lake, "sales", other_day, SALES, [("t0", "c1", "p1", "1", "1.00", f"{other_day}T10:00:00Z")]
    )
    _ingest(spark, lake, "sales", other_day)
    write_landing_csv(lake, "sales", DS, SALES, [("t1", "c1", "p1", "1", "1.00", "2024-06-30T10:00:00Z")])
    _ingest(spark, lake, "sales", DS)
    before = sorted(
        p.relative_to(lake_dir(lake)) for p in lake_dir(lake).rglob("*") if "landing" not in p.parts
    )
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
    after = sorted(
        p.relative_to(lake_dir(lake)) for p in lake_dir(lake).rglob("*") if "landing" not in p.parts
    )
    assert after == before  # neither date was rewritten, though 2024-06-29's own header is fine
    assert [r.transaction_id for r in _read(spark, lake, "processed", "sales").collect()] == ["t1"]


def test_a_missing_landing_partition_fails_with_a_clear_message(lake, cli, capsys):
    code = cli("ingest", "--dataset", "sales", "--ds", DS, "--lake", lake)

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert f"missing landing partition {lake}/landing/sales/dt={DS}" in err
    assert not (lake_dir(lake) / "processed").exists()


def test_a_day_without_stock_ticks_writes_empty_partitions_and_says_so(spark, lake, caplog):
    with caplog.at_level(logging.WARNING, logger="spark_jobs.ingest"):
        metrics = _ingest(spark, lake, "stock_ticks", DS)

    assert "no landing data for stock_ticks dt=2024-06-30 (market closed / no traffic)" in caplog.text
    processed = _read(spark, lake, "processed", "stock_ticks")
    quarantine = _read(spark, lake, "quarantine", "stock_ticks")
    assert (processed.count(), quarantine.count()) == (0, 0)
    assert processed.schema == PROCESSED["stock_ticks"]
    assert quarantine.schema == QUARANTINE["stock_ticks"]
    assert metrics == {
        "rows_in": {"stock_ticks": 0},
        "rows_out": {"stock_ticks": 0},
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
    }


def test_a_rerun_replaces_its_own_date_clears_stale_rejects_and_leaves_other_dates(spark, lake):
    other = "2024-06-29"
    write_landing_csv(lake, "stock_ticks", other, TICKS, [("ACME", f"{other}T14:00:00Z", "10.0", "5")])
    write_landing_csv(lake, "stock_ticks", DS, TICKS, [("ACME", "2024-06-30T14:00:00Z", "n/a", "5")])
    _ingest(spark, lake, "stock_ticks", other, DS)
    assert _read(spark, lake, "quarantine", "stock_ticks").count() == 1
    other_files = sorted((lake_dir(lake) / "processed" / "stock_ticks" / f"dt={other}").iterdir())

    # upstream fixed the file; run ds again, twice
    write_landing_csv(lake, "stock_ticks", DS, TICKS, [("ACME", "2024-06-30T14:00:00Z", "11.0", "5")])
    first = _ingest(spark, lake, "stock_ticks", DS)
    first_rows = _read(spark, lake, "processed", "stock_ticks").collect()
    second = _ingest(spark, lake, "stock_ticks", DS)

    assert first == second
    assert _read(spark, lake, "processed", "stock_ticks").collect() == first_rows
    assert [(r.ticker, r.close_price) for r in first_rows] == [("ACME", 11.0)]
    assert _read(spark, lake, "quarantine", "stock_ticks").count() == 0
    assert sorted((lake_dir(lake) / "processed" / "stock_ticks" / f"dt={other}").iterdir()) == other_files


def test_a_range_ingests_every_day_including_a_day_without_traffic(spark, lake):
    days = ["2024-06-28", "2024-06-29", "2024-06-30"]
    for day, n in ((days[0], 2), (days[2], 3)):
        events = [
            {"event_id": f"{day}-{i}", "user_id": "u", "page": "home", "event_ts": f"{day}T10:00:0{i}Z"}
            for i in range(n)
        ]
        write_landing_jsonl(lake, "clickstream", day, events)

    metrics = _ingest(spark, lake, "clickstream", days[0], days[-1])

    counts = [_read(spark, lake, "processed", "clickstream", day).count() for day in days]
    assert counts == [2, 0, 3]
    assert _read(spark, lake, "quarantine", "clickstream", days[1]).count() == 0
    assert metrics["rows_in"] == {"clickstream": 5}
    assert metrics["rows_out"] == {"clickstream": 5}


# ---- a range in one pass: the same partitions as one day at a time ---------------------------
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


def _partition_frame(lake, zone, day):
    """A partition as pandas (read without Spark), rows in a canonical order."""
    frame = pd.read_parquet(lake_dir(lake) / zone / "sales" / f"dt={day}")
    return frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True), frame.dtypes


def test_a_range_writes_exactly_the_partitions_of_each_day_ingested_alone(spark, lake, tmp_path, caplog):
    alone = (tmp_path / "alone").as_uri()
    days = _sales_landing_over_three_days(lake)
    _sales_landing_over_three_days(alone)

    with caplog.at_level(logging.INFO, logger="spark_jobs.ingest"):
        ranged = _ingest(spark, lake, "sales", days[0], days[-1])
    each = [_ingest(spark, alone, "sales", day) for day in days]

    for zone in ("processed", "quarantine"):
        for day in days:
            (got, got_types), (want, want_types) = (_partition_frame(x, zone, day) for x in (lake, alone))
            pd.testing.assert_frame_equal(got, want)
            assert (got_types == want_types).all(), (zone, day)
    # and what those partitions are, by hand: keys are unique within a day, not across days
    ids = {day: sorted(_partition_frame(lake, "processed", day)[0].transaction_id) for day in days}
    assert ids == {days[0]: ["t1", "t2"], days[1]: ["t1", "t3"], days[2]: []}
    assert _partition_frame(lake, "processed", days[0])[0].customer_id.tolist() == ["c0", "c2"]
    reasons = {
        day: sorted(_partition_frame(lake, "quarantine", day)[0].reject_reason.tolist()) for day in days
    }
    assert reasons == {
        days[0]: [
            "malformed CSV row (not 6 fields)",
            f"transaction_ts: {days[1]} is outside partition dt={days[0]}",
        ],
        days[1]: ["quantity: must be > 0: '0'"],
        days[2]: ["total_amount: must be >= 0: '-1.00'"],
    }
    assert ranged == {
        "rows_in": {"sales": sum(m["rows_in"]["sales"] for m in each)},
        "rows_out": {"sales": sum(m["rows_out"]["sales"] for m in each)},
        "rows_quarantined": sum(m["rows_quarantined"] for m in each),
        "duplicates_dropped": sum(m["duplicates_dropped"] for m in each),
    }
    assert ranged["rows_in"] == {"sales": 9}
    assert ranged["duplicates_dropped"] == 1
    assert f"sales dt={days[0]}: 5 rows in, 2 out, 2 quarantined, 1 duplicates dropped" in caplog.text
    assert f"sales dt={days[2]}: 1 rows in, 0 out, 1 quarantined, 0 duplicates dropped" in caplog.text


def _lake_files(lake, zone):
    root = lake_dir(lake) / zone
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_range_whose_quarantine_write_fails_leaves_every_partition_as_it_was(spark, lake, monkeypatch):
    days = _sales_landing_over_three_days(lake)
    _ingest(spark, lake, "sales", days[0], days[-1])
    before = {zone: _lake_files(lake, zone) for zone in ("processed", "quarantine")}
    # new data for every day: the failed run would change every partition of both zones
    for day in days:
        write_landing_csv(
            lake,
            "sales",
            day,
            SALES,
            [(f"n-{day}", "c1", "p1", "1", "1.00", f"{day}T08:00:00Z")],
            name="b.csv",
        )
    fail_parquet_writes_to(monkeypatch, "/quarantine/")
    with pytest.raises(OSError, match="injected"):
        _ingest(spark, lake, "sales", days[0], days[-1])
    monkeypatch.undo()

    assert {zone: _lake_files(lake, zone) for zone in ("processed", "quarantine")} == before
    staging = lake_dir(lake) / "_staging"
    assert [p for p in staging.rglob("*") if p.is_file() or p.name.startswith("dt")] == []
