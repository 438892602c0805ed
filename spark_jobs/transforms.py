"""Transforms more than one job applies, defined once so the jobs agree (no job imports another)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def distinct_sales(sales: DataFrame) -> DataFrame:
    """One row per transaction_id of sales history (rows carry `dt`).

    Ingest deduplicates within a day only; a sale replayed on a later day must not count twice.
    The copy on the earliest day is kept; the other sort keys only make the choice
    deterministic when copies differ.
    """
    order = Window.partitionBy("transaction_id").orderBy(
        "dt", "transaction_ts", "total_amount", "customer_id", "product_id", "quantity"
    )
    return sales.withColumn("_n", F.row_number().over(order)).filter("_n = 1").drop("_n")


def region_by_customer(customers: DataFrame) -> DataFrame:
    """customer_id -> region, exactly one row per customer so a join can never duplicate a customer."""
    return customers.groupBy("customer_id").agg(F.min("region").alias("region"))
