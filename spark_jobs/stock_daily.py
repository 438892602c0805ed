"""Job `stock_daily`: daily OHLC-style bars per ticker with 1-day return, 20-day SMA and volatility.

Replaces date ds of `curated.stock_daily`: one row per ticker that traded on ds (none when the market
was closed).
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs import table_reads, table_writes, tables
from spark_jobs.common import JobInputError
from spark_jobs.schemas import CURATED

log = logging.getLogger("spark_jobs.stock_daily")

OUTPUT = "stock_daily"
TRADING_DAYS = 20
# 20 trading days plus the one before them (for the first day's return) span about 29 calendar
# days; 60 leaves room for holidays and short trading halts. A ticker with fewer trading days in
# the look-back gets sma_20/volatility_20d over the days it has, and return_1d is null when its
# previous trading day is older than the look-back.
LOOKBACK_DAYS = 60


def daily_bars(ticks: DataFrame) -> DataFrame:
    """One row per (ticker, dt) the ticker traded, from ticks carrying their `dt`.

    The trading day of a tick is its partition `dt` (the UTC date of trade_ts, by the data
    contract). Open/close are the first/last tick by trade_ts; ticks sharing a trade_ts (ingest
    keeps one per ticker and trade_ts, so only in hand-made input) are ordered by close_price
    then volume, which makes the choice deterministic.
    """
    tick = F.struct("trade_ts", "close_price", "volume")
    return ticks.groupBy("ticker", "dt").agg(
        F.min(tick)["close_price"].alias("open_price"),
        F.max(tick)["close_price"].alias("close_price"),
        F.avg("close_price").alias("avg_close_price"),
        F.max("close_price").alias("high"),
        F.min("close_price").alias("low"),
        F.sum("volume").alias("total_volume"),
        F.max("volume").alias("max_volume"),
    )


def stock_daily(ticks: DataFrame, ds: dt.date) -> DataFrame:
    """The stock_daily rows for ds from tick history ending on ds.

    Trading days are the days a ticker has ticks. return_1d compares with the ticker's previous
    trading day; sma_20 and volatility_20d (sample stddev of return_1d, nulls skipped, null with
    fewer than two returns) cover the ticker's last 20 trading days including ds.
    """
    schema = CURATED[OUTPUT]
    by_day = Window.partitionBy("ticker").orderBy("dt")
    last_20 = by_day.rowsBetween(-(TRADING_DAYS - 1), Window.currentRow)
    bars = daily_bars(ticks.filter(F.col("dt") <= F.lit(ds)))
    with_return = bars.withColumn(
        "return_1d", F.col("close_price") / F.lag("close_price").over(by_day) - F.lit(1.0)
    )
    enriched = with_return.withColumns(
        {
            "sma_20": F.avg("close_price").over(last_20),
            "volatility_20d": F.stddev_samp("return_1d").over(last_20),
        }
    )
    return enriched.filter(F.col("dt") == F.lit(ds)).select(
        *[
            (F.col("dt") if field.name == "date" else F.col(field.name))
            .cast(field.dataType)
            .alias(field.name)
            for field in schema.fields
        ]
    )


def lookback_start(ds: dt.date) -> dt.date:
    return ds - dt.timedelta(days=LOOKBACK_DAYS - 1)


def run(spark: SparkSession, args) -> dict:
    ds = args.ds
    # Ingest records a day even when the market was closed (no rows); a day it never wrote means
    # ingest has not run for ds, and a result computed without it would be wrong.
    if not table_reads.is_written(spark, "processed", "stock_ticks", ds):
        raise JobInputError(
            f"{tables.identifier(spark, 'processed', 'stock_ticks')} has nothing written for {ds}"
        )
    ticks = table_reads.read(spark, "processed", "stock_ticks", since=lookback_start(ds), upto=ds)
    written = table_writes.replace_date(
        stock_daily(ticks, ds), "curated", OUTPUT, CURATED[OUTPUT], ds, job="stock_daily"
    )
    if written.total == 0:
        log.warning("stock_daily %s: no ticks on %s (market closed): the day is written empty", ds, ds)
    ticks_today = ticks.filter(F.col("dt") == F.lit(ds)).count()
    return {
        "rows_in": {"stock_ticks": ticks_today},
        "rows_out": {OUTPUT: written.total},
        "rows_quarantined": 0,
        "tables": {f"curated.{OUTPUT}": written.as_metrics()},
    }
