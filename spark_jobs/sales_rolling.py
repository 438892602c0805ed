"""Job `sales_rolling`: per-region sales of the run date and of the 30 days ending on it.

Writes `curated/sales_rolling_30d/dt=ds`, one row per region with at least one sale in the window.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.common import (
    JobInputError,
    list_partitions,
    read_history,
    read_partition,
    write_partition,
)
from spark_jobs.features import distinct_sales, region_by_customer  # the same rules in both jobs
from spark_jobs.schemas import CURATED, PROCESSED

log = logging.getLogger("spark_jobs.sales_rolling")

WINDOW_DAYS = 30
OUTPUT = "sales_rolling_30d"


def window_start(ds: dt.date) -> dt.date:
    return ds - dt.timedelta(days=WINDOW_DAYS - 1)


def rolling_sales_by_region(sales: DataFrame, customers: DataFrame, ds: dt.date) -> DataFrame:
    """The sales_rolling_30d rows for ds.

    `sales` is processed sales history with its `dt` column; the sale date is `dt` (the UTC date
    of transaction_ts, by the data contract). Sales outside [ds-29, ds] are ignored. Sales whose
    customer has no region in `customers` (unknown customer or null region) are kept under
    region NULL, their own group: money is never dropped.
    """
    schema = CURATED[OUTPUT]
    money = schema["daily_amount"].dataType
    first, last = F.lit(window_start(ds)), F.lit(ds)
    in_window = distinct_sales(sales.filter(F.col("dt").between(first, last)))
    on_ds = F.col("dt") == last
    by_region = (
        in_window.join(region_by_customer(customers), "customer_id", "left")
        .groupBy("region")
        .agg(
            F.sum(F.when(on_ds, F.col("total_amount"))).alias("daily_amount"),
            F.count(F.when(on_ds, F.lit(1))).alias("daily_count"),
            F.sum("total_amount").alias("rolling_30d_sum"),
            F.count(F.lit(1)).alias("rolling_30d_count"),
        )
    )
    return by_region.select(
        F.col("region").cast(schema["region"].dataType).alias("region"),
        F.lit(ds).cast(schema["date"].dataType).alias("date"),
        F.coalesce(F.col("daily_amount"), F.lit(0)).cast(money).alias("daily_amount"),
        F.col("daily_count").cast(schema["daily_count"].dataType).alias("daily_count"),
        F.col("rolling_30d_sum").cast(schema["rolling_30d_sum"].dataType).alias("rolling_30d_sum"),
        F.col("rolling_30d_count").cast(schema["rolling_30d_count"].dataType).alias("rolling_30d_count"),
        (F.col("rolling_30d_sum").cast("double") / F.col("rolling_30d_count"))
        .cast(schema["rolling_30d_avg"].dataType)
        .alias("rolling_30d_avg"),
    )


def latest_snapshot(spark: SparkSession, lake: str, dataset: str, ds: dt.date) -> tuple[dt.date, DataFrame]:
    dates = [d for d in list_partitions(spark, lake, "processed", dataset) if d <= ds]
    if not dates:
        raise JobInputError(f"no processed {dataset} snapshot on or before {ds}")
    return dates[-1], read_partition(spark, lake, "processed", dataset, dates[-1], PROCESSED[dataset])


def sales_window(spark: SparkSession, lake: str, ds: dt.date) -> DataFrame:
    """Processed sales of [ds-29, ds] with `dt`; a day without a partition is a day without sales.

    Having no sales partition at all on or before ds means ingest never ran: that is an error.
    """
    dates = [d for d in list_partitions(spark, lake, "processed", "sales") if d <= ds]
    if not dates:
        raise JobInputError(f"no partition of {lake}/processed/sales on or before {ds}")
    if dates[-1] < window_start(ds):
        log.warning("no sales partition in [%s, %s]: the output is empty", window_start(ds), ds)
        empty = spark.createDataFrame([], PROCESSED["sales"])
        return empty.withColumn("dt", F.lit(None).cast("date"))
    return read_history(spark, lake, "processed", "sales", ds, PROCESSED["sales"], since=window_start(ds))


def run(spark: SparkSession, args) -> dict:
    ds, lake = args.ds, args.lake
    sales = sales_window(spark, lake, ds)
    snapshot_dt, customers = latest_snapshot(spark, lake, "customers", ds)
    log.warning("sales_rolling %s: customers snapshot dt=%s", ds, snapshot_dt)
    rows = write_partition(
        rolling_sales_by_region(sales, customers, ds), lake, "curated", OUTPUT, ds, coalesce=1
    )
    return {"rows_in": {"sales": sales.count()}, "rows_out": {OUTPUT: rows}, "rows_quarantined": 0}
