"""stock_daily against a pandas recomputation on random ticks with weekends, gaps and ties."""

from __future__ import annotations

import argparse
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from spark_jobs import table_reads, tables
from spark_jobs.common import JobInputError
from spark_jobs.schemas import CURATED
from spark_jobs.stock_daily import OUTPUT, run
from tests.harness.lake_tables import load, read_table, seed_rows, table_exists

D0 = dt.date(2024, 4, 29)  # a Monday
DAYS = [D0 + dt.timedelta(days=i) for i in range(37)]  # .. Tuesday 2024-06-04
WEEKDAYS = [d for d in DAYS if d.weekday() < 5]
SATURDAY = dt.date(2024, 6, 1)
LAST = DAYS[-1]
GAP = {dt.date(2024, 5, 13) + dt.timedelta(days=i) for i in range(5)} | {LAST}
CCC_FIRST = dt.date(2024, 5, 20)
COLUMNS = CURATED[OUTPUT].fieldNames()


def _ts(day: dt.date, second: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=second)


def _trading_days(ticker: str) -> list[dt.date]:
    if ticker == "BBB":  # a week without trading, and no trade on LAST
        return [d for d in WEEKDAYS if d not in GAP]
    if ticker == "CCC":  # listed late: fewer than 20 trading days
        return [d for d in WEEKDAYS if d >= CCC_FIRST]
    return WEEKDAYS


def _random_ticks(rng) -> list[tuple]:
    rows = []
    for ticker, price in [("AAA", 100.0), ("BBB", 20.0), ("CCC", 5.0)]:
        for day in _trading_days(ticker):
            seconds = rng.choice(86_400, size=int(rng.integers(1, 5)), replace=False)
            for second in seconds:
                price *= float(np.exp(rng.normal(0, 0.02)))
                rows.append(
                    (ticker, _ts(day, int(second)), round(price, 4), int(rng.integers(1, 10_000)), day)
                )
    rng.shuffle(rows)  # ticks arrive in any order
    return rows


def _write_ticks(spark, lake: str, ticks: list[tuple]) -> None:
    """Processed stock_ticks of every day from the first tick's to the last one's, in one commit
    as an ingest of the range writes them: a day without ticks (weekend) is written without rows."""
    seed_rows(spark, lake, "processed", "stock_ticks", ticks)


def _oracle(ticks: list[tuple], ds: dt.date) -> pd.DataFrame:
    df = pd.DataFrame(ticks, columns=["ticker", "trade_ts", "close_price", "volume", "dt"])
    df = df[df["dt"] <= ds].sort_values(["ticker", "dt", "trade_ts"])
    daily = (
        df.groupby(["ticker", "dt"])
        .agg(
            open_price=("close_price", "first"),
            close_price=("close_price", "last"),
            avg_close_price=("close_price", "mean"),
            high=("close_price", "max"),
            low=("close_price", "min"),
            total_volume=("volume", "sum"),
            max_volume=("volume", "max"),
        )
        .reset_index()
    )
    by_ticker = daily.groupby("ticker")["close_price"]
    daily["return_1d"] = by_ticker.pct_change(fill_method=None)
    daily["sma_20"] = by_ticker.transform(lambda s: s.rolling(20, min_periods=1).mean())
    daily["volatility_20d"] = daily.groupby("ticker")["return_1d"].transform(
        lambda s: s.rolling(20, min_periods=2).std(ddof=1)
    )
    return daily[daily["dt"] == ds].rename(columns={"dt": "date"})[COLUMNS]


def _run(spark, lake, ds):
    return run(tables.bind(spark, lake), argparse.Namespace(ds=ds, lake=lake))


def _read(lake, ds) -> pd.DataFrame:
    return read_table(lake, "curated", OUTPUT, ds)


def _schema(spark, lake) -> str:
    session = tables.bind(spark, lake)
    return session.table(tables.identifier(session, "curated", OUTPUT)).schema.simpleString()


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_values("ticker").reset_index(drop=True)
    want = want.sort_values("ticker").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def random_lake(spark, tmp_path_factory):
    lake = (tmp_path_factory.mktemp("stock_daily") / "lake").as_uri()
    ticks = _random_ticks(np.random.default_rng(11))
    _write_ticks(spark, lake, ticks)
    runs = {}

    def result(ds):
        """metrics, the snapshot and the output of the run for ds (once per ds for the whole module)."""
        if ds not in runs:
            metrics = _run(spark, lake, ds)
            runs[ds] = (
                metrics,
                load(lake, "curated", OUTPUT).current_snapshot().snapshot_id,
                _read(lake, ds),
            )
        return runs[ds]

    return lake, ticks, result


@pytest.mark.parametrize(
    "ds",
    [LAST, CCC_FIRST, CCC_FIRST + dt.timedelta(days=1), dt.date(2024, 5, 31)],
    ids=["last-day", "ccc-first-day", "ccc-second-day", "friday"],
)
def test_every_column_matches_pandas(spark, random_lake, ds):
    lake, ticks, result = random_lake
    metrics, snapshot, got = result(ds)

    assert _schema(spark, lake) == tables.with_dt(CURATED[OUTPUT]).simpleString()
    want = _oracle(ticks, ds)
    _assert_same(got, want)
    assert metrics["rows_out"][OUTPUT] == len(want)
    assert metrics["rows_in"]["stock_ticks"] == sum(1 for t in ticks if t[4] == ds)
    assert metrics["tables"] == {f"curated.{OUTPUT}": {"snapshot_id": snapshot, "rows": len(want)}}


def test_twenty_day_statistics_cover_only_the_last_twenty_trading_days(random_lake):
    _, ticks, result = random_lake
    got = result(LAST)[2]
    aaa = got[got["ticker"] == "AAA"].iloc[0]
    closes = pd.DataFrame(ticks, columns=["ticker", "trade_ts", "close_price", "volume", "dt"])
    closes = closes[closes["ticker"] == "AAA"].sort_values("trade_ts").groupby("dt")["close_price"].last()
    assert len(closes) > 21  # more trading days than the window
    assert aaa["sma_20"] == pytest.approx(float(np.mean(closes.to_numpy()[-20:])))
    returns = closes.to_numpy()[-21:]
    assert aaa["volatility_20d"] == pytest.approx(float(np.std(returns[1:] / returns[:-1] - 1, ddof=1)))


def test_a_ticker_that_did_not_trade_on_ds_has_no_row(random_lake):
    _, _, result = random_lake
    assert sorted(result(LAST)[2]["ticker"]) == ["AAA", "CCC"]


def test_a_closed_market_day_is_written_without_rows(spark, random_lake):
    lake, _, result = random_lake
    metrics, snapshot, got = result(SATURDAY)

    assert got.empty
    assert list(got.columns) == COLUMNS
    assert metrics["rows_out"][OUTPUT] == 0
    # the run's commit names the day it replaced: a day without rows, not a missing day
    assert load(lake, "curated", OUTPUT).snapshot_by_id(snapshot).summary["pipeline.dates"] == str(SATURDAY)
    assert SATURDAY in table_reads.written_dates(tables.bind(spark, lake), "curated", OUTPUT)


def test_hand_computed_day_with_tied_ticks_and_a_return_beyond_the_lookback(spark, lake):
    ds = dt.date(2024, 3, 1)
    t = dt.datetime(2024, 3, 1, 14, 30, tzinfo=dt.UTC)
    ticks = [
        ("XYZ", t + dt.timedelta(hours=1), 11.0, 5, ds),
        ("XYZ", t, 12.0, 1, ds),  # same trade_ts: ordered by close_price, so 10.0 opens
        ("XYZ", t, 10.0, 7, ds),
        ("XYZ", t - dt.timedelta(days=1), 8.0, 3, ds - dt.timedelta(days=1)),
        ("OLD", t - dt.timedelta(days=61), 50.0, 1, ds - dt.timedelta(days=61)),  # before the look-back
        ("OLD", t, 55.0, 2, ds),
    ]
    _write_ticks(spark, lake, ticks)

    _run(spark, lake, ds)

    # pandas reads a null double as NaN: back to None
    rows = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in _read(lake, ds).to_dict("records")
    ]
    got = {r["ticker"]: r for r in rows}
    assert got["XYZ"] == {
        "ticker": "XYZ",
        "date": ds,
        "open_price": 10.0,
        "close_price": 11.0,
        "avg_close_price": pytest.approx(11.0),
        "high": 12.0,
        "low": 10.0,
        "total_volume": 13,
        "max_volume": 7,
        "return_1d": pytest.approx(11.0 / 8.0 - 1),
        "sma_20": pytest.approx(9.5),
        "volatility_20d": None,  # a single return
    }
    assert (got["OLD"]["return_1d"], got["OLD"]["sma_20"], got["OLD"]["volatility_20d"]) == (None, 55.0, None)


def test_missing_tick_history_for_ds_is_an_input_error(spark, lake):
    day = dt.date(2024, 3, 1)
    _write_ticks(spark, lake, [("XYZ", _ts(day, 1), 1.0, 1, day)])

    with pytest.raises(JobInputError, match=r"processed\.stock_ticks has nothing written for 2024-03-02"):
        _run(spark, lake, dt.date(2024, 3, 2))
    assert not table_exists(lake, "curated", OUTPUT)
