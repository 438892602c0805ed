"""Job `sales_rolling`: per-region sales of the run date and of the 30 days ending on it.

Replaces date ds of `curated.sales_rolling_30d`: one row per region with at least one sale in the window.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import table_reads, table_writes
from spark_jobs.schemas import CURATED
from spark_jobs.transforms import distinct_sales, region_by_customer

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


def sales_window(spark: SparkSession, ds: dt.date) -> DataFrame:
    """Processed sales of [ds-29, ds] with `dt`; a day without rows is a day without sales.

    Nothing written on or before ds at all means ingest never ran: that is an error.
    """
    history = table_reads.read_history(spark, "processed", "sales", ds)  # JobInputError without any
    return history.filter(F.col("dt") >= F.lit(window_start(ds)))


def run(spark: SparkSession, args) -> dict:
    ds = args.ds
    sales = sales_window(spark, ds)
    snapshot_dt, customers = table_reads.read_latest(spark, "processed", "customers", ds)
    log.warning("sales_rolling %s: customers snapshot dt=%s", ds, snapshot_dt)
    written = table_writes.replace_date(
        rolling_sales_by_region(sales, customers, ds),
        "curated",
        OUTPUT,
        CURATED[OUTPUT],
        ds,
        job="sales_rolling",
    )
    return {
        "rows_in": {"sales": sales.count()},
        "rows_out": {OUTPUT: written.total},
        "rows_quarantined": 0,
        "tables": {f"curated.{OUTPUT}": written.as_metrics()},
    }
