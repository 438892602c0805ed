"""sales_rolling against a pandas recomputation on random sales, plus the window's edge cases."""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from pyspark.sql.types import DateType, StructField, StructType

from spark_jobs.common import JobInputError, dataset_path, partition_path, write_partition
from spark_jobs.sales_rolling import OUTPUT, run
from spark_jobs.schemas import CURATED, PROCESSED

D0 = dt.date(2024, 5, 1)
DAYS = [D0 + dt.timedelta(days=i) for i in range(40)]
DS = DAYS[34]  # window [DAYS[5], DAYS[34]]; DAYS[35:] are after ds
NO_PARTITION_DAY = DAYS[30]  # no sales partition at all
EMPTY_PARTITION_DAY = DAYS[31]  # a partition without rows
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
        if day in (NO_PARTITION_DAY, EMPTY_PARTITION_DAY):
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


def _write_processed(spark, lake: str, dataset: str, rows: list[tuple], empty_days=()) -> None:
    """Processed partitions as ingest lays them out (dt=YYYY-MM-DD/ Parquet); rows end with dt.

    The days with rows go in one partitioned write (one write_partition per day costs about a
    second each on a busy machine); the empty days, which only write_partition can produce, use it.
    """
    schema = PROCESSED[dataset]
    with_dt = StructType([*schema.fields, StructField("dt", DateType())])
    spark.createDataFrame(rows, with_dt).write.partitionBy("dt").parquet(
        dataset_path(lake, "processed", dataset)
    )
    for day in empty_days:
        write_partition(spark.createDataFrame([], schema), lake, "processed", dataset, day)


def _write_customers(spark, lake: str, snapshots: dict[dt.date, list[tuple]]) -> None:
    _write_processed(spark, lake, "customers", [(*r, day) for day, rows in snapshots.items() for r in rows])


def _write_lake(spark, lake: str, sales: list[tuple]) -> None:
    _write_processed(spark, lake, "sales", sales, empty_days=[EMPTY_PARTITION_DAY])
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
    return run(spark, argparse.Namespace(ds=ds, lake=lake))


def _read(spark, lake, ds):
    return spark.read.parquet(partition_path(lake, "curated", OUTPUT, ds))


@pytest.fixture(scope="module")
def random_lake(spark, tmp_path_factory):
    lake = (tmp_path_factory.mktemp("sales_rolling") / "lake").as_uri()
    sales = _random_sales(np.random.default_rng(7))
    _write_lake(spark, lake, sales)
    runs = {}

    def result(ds):
        """The job's metrics and output rows by region for ds, run once per ds for the module."""
        if ds not in runs:
            metrics = _run(spark, lake, ds)
            got = _read(spark, lake, ds)
            runs[ds] = (metrics, got.schema, {r["region"]: r for r in got.collect()})
        return runs[ds]

    return sales, result


@pytest.mark.parametrize(
    "ds",
    [DS, NO_PARTITION_DAY, EMPTY_PARTITION_DAY, DAYS[5]],
    ids=["ds", "day-without-partition", "day-with-empty-partition", "first-days"],
)
def test_every_column_matches_pandas_for_random_sales(random_lake, ds):
    sales, result = random_lake
    metrics, schema, rows = result(ds)

    assert schema == CURATED[OUTPUT]
    want = _as_rows(_oracle(sales, ds))
    assert set(rows) == set(want)
    assert metrics["rows_out"][OUTPUT] == len(want)
    for region, w in want.items():
        r = rows[region]
        assert r["date"] == ds
        assert r["daily_amount"] == Decimal(int(w["daily_cents"])) / 100
        assert r["daily_count"] == w["daily_count"]
        assert r["rolling_30d_sum"] == Decimal(int(w["rolling_cents"])) / 100
        assert r["rolling_30d_count"] == w["rolling_30d_count"]
        assert r["rolling_30d_avg"] == pytest.approx(w["rolling_cents"] / 100 / w["rolling_30d_count"])


def test_a_day_without_sales_has_zero_daily_values_but_keeps_the_rolling_ones(random_lake):
    _, result = random_lake
    rows = list(result(NO_PARTITION_DAY)[2].values())

    assert rows
    assert all(r["daily_count"] == 0 and r["daily_amount"] == Decimal("0.00") for r in rows)
    assert all(r["rolling_30d_count"] > 0 for r in rows)


def test_region_membership_follows_the_window_and_the_latest_snapshot(random_lake):
    sales, result = random_lake
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


def test_hand_computed_window_ignores_later_sales_and_uses_the_latest_snapshot(spark, lake):
    ds = dt.date(2024, 3, 30)
    sales = [
        _sale("a", "u1", dt.date(2024, 3, 1), 1_000),  # ds-29: first day of the window
        _sale("b", "u1", dt.date(2024, 2, 29), 5_000),  # ds-30: outside
        _sale("c", "u2", ds, 250),
        _sale("d", "u1", ds, 125),
        _sale("e", "u1", dt.date(2024, 3, 31), 9_999),  # after ds
    ]
    _write_processed(spark, lake, "sales", sales)
    snapshots = {
        dt.date(2024, 1, 1): [("u1", "OLD", D0), ("u2", "OLD", D0)],
        dt.date(2024, 3, 15): [("u1", "EU", D0), ("u2", "NA", D0)],
        dt.date(2024, 3, 31): [("u1", "NEW", D0), ("u2", "NEW", D0)],
    }
    _write_customers(spark, lake, snapshots)

    _run(spark, lake, ds)

    got = sorted((tuple(r) for r in _read(spark, lake, ds).collect()), key=lambda r: r[0])
    assert got == [
        ("EU", ds, Decimal("1.25"), 1, Decimal("11.25"), 2, pytest.approx(5.625)),
        ("NA", ds, Decimal("2.50"), 1, Decimal("2.50"), 1, pytest.approx(2.5)),
    ]


def test_sales_history_only_before_the_window_gives_an_empty_partition(spark, lake):
    old = dt.date(2024, 1, 1)
    _write_processed(spark, lake, "sales", [_sale("a", "u1", old, 100)])
    _write_customers(spark, lake, {old: [("u1", "EU", old)]})

    metrics = _run(spark, lake, dt.date(2024, 3, 1))

    assert metrics["rows_out"][OUTPUT] == 0
    assert _read(spark, lake, dt.date(2024, 3, 1)).schema == CURATED[OUTPUT]


def test_missing_sales_history_is_an_input_error(spark, lake):
    later = dt.date(2024, 3, 2)
    _write_processed(spark, lake, "sales", [_sale("a", "u1", later, 100)])

    with pytest.raises(JobInputError, match="processed/sales on or before 2024-03-01"):
        _run(spark, lake, dt.date(2024, 3, 1))
