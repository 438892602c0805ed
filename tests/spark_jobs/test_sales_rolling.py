"""sales_rolling against a pandas recomputation on random sales, plus the window's edge cases."""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from spark_jobs import table_reads, tables
from spark_jobs.common import JobInputError
from spark_jobs.sales_rolling import OUTPUT, rolling_sales_by_region, run
from spark_jobs.schemas import CURATED, PROCESSED
from tests.harness.lake_tables import load, read_table, seed_rows, table_exists

D0 = dt.date(2024, 5, 1)
DAYS = [D0 + dt.timedelta(days=i) for i in range(40)]
DS = DAYS[34]  # window [DAYS[5], DAYS[34]]; DAYS[35:] are after ds
NOT_WRITTEN_DAY = DAYS[30]  # ingest wrote nothing for it
EMPTY_DAY = DAYS[31]  # written by ingest, without rows
REGIONS = ["EU", "NA", "APAC"]
CUSTOMERS = [f"c{i:02d}" for i in range(12)]


def _ts(day: dt.date, second: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=second)


def _sale(tid, customer, day, cents, second=0):
    return (tid, customer, "p1", 1, Decimal(cents) / 100, _ts(day, second), day)


def _random_sales(rng) -> list[tuple]:
    """Random sales on every day but the two without sales, plus the deliberate edge cases."""
    rows = []
    for day in DAYS:
        if day in (NOT_WRITTEN_DAY, EMPTY_DAY):
            continue
        for _ in range(int(rng.integers(1, 6))):
            rows.append(
                _sale(
                    f"t{len(rows):04d}",
                    CUSTOMERS[int(rng.integers(len(CUSTOMERS)))],
                    day,
                    int(rng.integers(1, 100_000)),
                    int(rng.integers(86_400)),
                )
            )
    # LATAM only bought before the window: absent from the output of DS.
    rows.append(_sale("latam-early", "latam", DAYS[2], 5_000))
    # OCEANIA bought inside the window but not on DS: a row with daily 0 / 0.00.
    rows += [_sale("oce-1", "oceania", DAYS[10], 1_234), _sale("oce-2", "oceania", DAYS[33], 99)]
    # A customer missing from the snapshot: kept, under region NULL.
    rows.append(_sale("ghost-1", "ghost", DS, 700))
    # The same transaction delivered again a day later counts once (the earliest copy).
    rows += [_sale("dup", "c03", DAYS[12], 4_200), _sale("dup", "c03", DAYS[13], 4_200)]
    return rows


def _customer_snapshots() -> dict[dt.date, list[tuple]]:
    """An old snapshot, the latest one on or before DS (regions moved), and one after DS."""
    old = [(c, REGIONS[i % 3], D0) for i, c in enumerate(CUSTOMERS)]
    latest = [(c, REGIONS[(i + 1) % 3], D0) for i, c in enumerate(CUSTOMERS)]
    latest[0] = (CUSTOMERS[0], None, D0)  # known customer, unknown region
    extra = [("latam", "LATAM", D0), ("oceania", "OCEANIA", D0)]
    future = [(c, "FUTURE", D0) for c in CUSTOMERS]
    return {DAYS[0]: old + extra, DAYS[20]: latest + extra, DAYS[36]: future + extra}


def _write_customers(spark, lake: str, snapshots: dict[dt.date, list[tuple]]) -> None:
    seed_rows(
        spark, lake, "processed", "customers", [(*r, day) for day, rows in snapshots.items() for r in rows]
    )


def _write_lake(spark, lake: str, sales: list[tuple]) -> None:
    """Sales in two commits, as two ingest ranges that leave NOT_WRITTEN_DAY out (EMPTY_DAY is in
    the second one, without rows); customer snapshots in one."""
    for first, last in ((DAYS[0], NOT_WRITTEN_DAY - dt.timedelta(days=1)), (EMPTY_DAY, DAYS[-1])):
        days = [d for d in DAYS if first <= d <= last]
        seed_rows(spark, lake, "processed", "sales", [r for r in sales if first <= r[-1] <= last], dates=days)
    _write_customers(spark, lake, _customer_snapshots())


def _oracle(sales: list[tuple], ds: dt.date) -> pd.DataFrame:
    """The contract computed in pandas, money in integer cents."""
    df = pd.DataFrame(sales, columns=[*PROCESSED["sales"].fieldNames(), "dt"])
    df["cents"] = [int(a * 100) for a in df["total_amount"]]
    df = df[(df["dt"] >= ds - dt.timedelta(days=29)) & (df["dt"] <= ds)]
    df = df.sort_values(["dt", "transaction_ts"]).drop_duplicates("transaction_id", keep="first")
    snapshots = _customer_snapshots()
    latest = max(d for d in snapshots if d <= ds)
    customers = pd.DataFrame(snapshots[latest], columns=["customer_id", "region", "signup_date"])
    df = df.merge(customers[["customer_id", "region"]], on="customer_id", how="left")
    df["on_ds"] = df["dt"] == ds
    df["ds_cents"] = df["cents"].where(df["on_ds"], 0)
    out = df.groupby("region", dropna=False).agg(
        daily_cents=("ds_cents", "sum"),
        daily_count=("on_ds", "sum"),
        rolling_cents=("cents", "sum"),
        rolling_30d_count=("cents", "size"),
    )
    return out.reset_index()


def _as_rows(frame: pd.DataFrame) -> dict:
    return {(None if pd.isna(r["region"]) else r["region"]): r for _, r in frame.iterrows()}


def _run(spark, lake, ds):
    return run(tables.bind(spark, lake), argparse.Namespace(ds=ds, lake=lake))


def _read(lake, ds) -> list[dict]:
    """The rows of ds as plain Python values (pandas reads a null string as None)."""
    return read_table(lake, "curated", OUTPUT, ds).to_dict("records")


def _schema(spark, lake) -> str:
    session = tables.bind(spark, lake)
    return session.table(tables.identifier(session, "curated", OUTPUT)).schema.simpleString()


@pytest.fixture(scope="module")
def random_lake(spark, tmp_path_factory):
    lake = (tmp_path_factory.mktemp("sales_rolling") / "lake").as_uri()
    sales = _random_sales(np.random.default_rng(7))
    _write_lake(spark, lake, sales)
    runs = {}

    def result(ds):
        """metrics, the snapshot and the rows by region of the run for ds (once per ds for the module)."""
        if ds not in runs:
            metrics = _run(spark, lake, ds)
            snapshot = load(lake, "curated", OUTPUT).current_snapshot().snapshot_id
            runs[ds] = (metrics, snapshot, {r["region"]: r for r in _read(lake, ds)})
        return runs[ds]

    return lake, sales, result


@pytest.mark.parametrize(
    "ds",
    [DS, NOT_WRITTEN_DAY, EMPTY_DAY, DAYS[5]],
    ids=["ds", "day-never-written", "day-written-empty", "first-days"],
)
def test_every_column_matches_pandas_for_random_sales(spark, random_lake, ds):
    lake, sales, result = random_lake
    metrics, snapshot, rows = result(ds)

    assert _schema(spark, lake) == tables.with_dt(CURATED[OUTPUT]).simpleString()
    want = _as_rows(_oracle(sales, ds))
    assert set(rows) == set(want)
    assert metrics["rows_out"][OUTPUT] == len(want)
    assert metrics["tables"] == {f"curated.{OUTPUT}": {"snapshot_id": snapshot, "rows": len(want)}}
    for region, w in want.items():
        r = rows[region]
        assert r["date"] == ds
        assert r["daily_amount"] == Decimal(int(w["daily_cents"])) / 100
        assert r["daily_count"] == w["daily_count"]
        assert r["rolling_30d_sum"] == Decimal(int(w["rolling_cents"])) / 100
        assert r["rolling_30d_count"] == w["rolling_30d_count"]
        assert r["rolling_30d_avg"] == pytest.approx(w["rolling_cents"] / 100 / w["rolling_30d_count"])


@pytest.mark.parametrize("ds", [NOT_WRITTEN_DAY, EMPTY_DAY], ids=["never-written", "written-empty"])
def test_a_day_without_sales_has_zero_daily_values_but_keeps_the_rolling_ones(spark, random_lake, ds):
    lake, _, result = random_lake
    rows = list(result(ds)[2].values())

    written = table_reads.written_dates(tables.bind(spark, lake), "processed", "sales")
    assert (ds in written) == (ds == EMPTY_DAY)  # the two cases really differ

    assert rows
    assert all(r["daily_count"] == 0 and r["daily_amount"] == Decimal("0.00") for r in rows)
    assert all(r["rolling_30d_count"] > 0 for r in rows)


def test_region_membership_follows_the_window_and_the_latest_snapshot(random_lake):
    _, sales, result = random_lake
    rows = result(DS)[2]

    # LATAM sold only before the window; FUTURE is the region of a snapshot dated after DS.
    assert "LATAM" not in rows
    assert "FUTURE" not in rows
    # OCEANIA sold in the window but not on DS.
    assert (rows["OCEANIA"]["daily_count"], rows["OCEANIA"]["daily_amount"]) == (0, Decimal("0.00"))
    assert (rows["OCEANIA"]["rolling_30d_count"], rows["OCEANIA"]["rolling_30d_sum"]) == (2, Decimal("13.33"))
    # The ghost customer (not in the snapshot) and c00 (null region in the latest one): region NULL.
    unknown = [r for r in sales if r[1] in ("ghost", "c00") and DAYS[5] <= r[6] <= DS]
    assert rows[None]["rolling_30d_count"] == len(unknown)
    assert rows[None]["rolling_30d_sum"] == sum(r[4] for r in unknown)


def test_hand_computed_window_ignores_sales_outside_it_and_customers_without_sales(spark):
    """The rule on in-memory rows (rolling_sales_by_region: sales with `dt`, the customer snapshot
    the job picked); which snapshot the job picks from the lake is the random lake's test above."""
    ds = dt.date(2024, 3, 30)
    sales = [
        _sale("a", "u1", dt.date(2024, 3, 1), 1_000),  # ds-29: first day of the window
        _sale("b", "u1", dt.date(2024, 2, 29), 5_000),  # ds-30: outside
        _sale("c", "u2", ds, 250),
        _sale("d", "u1", ds, 125),
        _sale("e", "u1", dt.date(2024, 3, 31), 9_999),  # after ds
    ]
    customers = [("u1", "EU", D0), ("u2", "NA", D0), ("u3", "APAC", D0)]  # u3 bought nothing

    rows = rolling_sales_by_region(
        spark.createDataFrame(sales, tables.with_dt(PROCESSED["sales"])),
        spark.createDataFrame(customers, PROCESSED["customers"]),
        ds,
    )

    assert [(f.name, f.dataType) for f in rows.schema] == [(f.name, f.dataType) for f in CURATED[OUTPUT]]
    got = sorted((tuple(r) for r in rows.collect()), key=lambda r: r[0])
    assert got == [
        ("EU", ds, Decimal("1.25"), 1, Decimal("11.25"), 2, pytest.approx(5.625)),
        ("NA", ds, Decimal("2.50"), 1, Decimal("2.50"), 1, pytest.approx(2.5)),
    ]


def test_sales_history_only_before_the_window_writes_ds_without_rows(spark, lake):
    old = dt.date(2024, 1, 1)
    seed_rows(spark, lake, "processed", "sales", [_sale("a", "u1", old, 100)])
    _write_customers(spark, lake, {old: [("u1", "EU", old)]})
    ds = dt.date(2024, 3, 1)

    metrics = _run(spark, lake, ds)

    assert metrics["rows_out"][OUTPUT] == 0
    assert _read(lake, ds) == []
    session = tables.bind(spark, lake)
    assert table_reads.written_dates(session, "curated", OUTPUT) == {ds}  # an empty day, not a missing one
    assert _schema(spark, lake) == tables.with_dt(CURATED[OUTPUT]).simpleString()


def test_missing_sales_history_is_an_input_error(spark, lake):
    later = dt.date(2024, 3, 2)
    seed_rows(spark, lake, "processed", "sales", [_sale("a", "u1", later, 100)])
    _write_customers(spark, lake, {later: [("u1", "EU", later)]})

    with pytest.raises(JobInputError, match=r"processed\.sales has nothing written on or before 2024-03-01"):
        _run(spark, lake, dt.date(2024, 3, 1))
    assert not table_exists(lake, "curated", OUTPUT)
