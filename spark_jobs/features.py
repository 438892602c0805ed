"""Job `features`: per-customer features of the sales history up to ds, and how they correlate.

Writes `curated/customer_features/dt=ds` (the SageMaker input; needs `referral_graph` of ds, so
the graph job runs first) and `curated/feature_correlation/dt=ds`.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs.common import JobInputError, list_partitions, read_history, read_partition, write_partition
from spark_jobs.schemas import CURATED, FEATURE_COLUMNS, PROCESSED

log = logging.getLogger("spark_jobs.features")

OUTPUT = "customer_features"
CORRELATION = "feature_correlation"


def utc_date(ts: Column) -> Column:
    """The UTC calendar date of a timestamp, whatever the session time zone."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(ts) / F.lit(86_400)).cast("int"))


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


def customer_features(sales: DataFrame, customers: DataFrame, graph: DataFrame, ds: dt.date) -> DataFrame:
    """The customer_features rows for ds, in the column order of schemas.CURATED.

    `sales` is processed sales history with `dt`; only sales whose UTC date of transaction_ts is
    on or before ds count (a sale needs a customer_id to belong to anyone). `customers` is the
    snapshot to take regions from (a customer missing there gets region null); `graph` is
    referral_graph of ds (a customer missing there gets null pagerank and community_id). In the
    `features` vector a null feature is 0.0, because the model input must be dense.
    """
    schema = CURATED[OUTPUT]
    day = utc_date(F.col("transaction_ts"))
    valid = distinct_sales(sales).filter(F.col("customer_id").isNotNull() & (day <= F.lit(ds)))
    per_customer = valid.groupBy("customer_id").agg(
        F.sum("total_amount").alias("lifetime_value"),
        F.count("transaction_id").alias("purchase_frequency"),
        F.avg("quantity").alias("avg_basket_size"),
        # stddev_samp is null for a single sale (Spark 3 default), as the contract wants.
        F.stddev_samp(F.col("total_amount").cast("double")).alias("spend_volatility"),
        F.max(day).alias("last_purchase_date"),
    )
    joined = (
        per_customer.withColumn("recency_days", F.datediff(F.lit(ds), F.col("last_purchase_date")))
        .join(region_by_customer(customers), "customer_id", "left")
        .join(graph.select("customer_id", "pagerank", "community_id"), "customer_id", "left")
    )
    dense = [F.coalesce(F.col(c).cast("double"), F.lit(0.0)) for c in FEATURE_COLUMNS]
    joined = joined.withColumn("features", F.array(*dense))
    return joined.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def feature_correlation(features: DataFrame) -> DataFrame:
    """feature_a, feature_b, pearson for every ordered pair of FEATURE_COLUMNS, diagonal included.

    Each pair uses the customers where both features are non-null; pearson is null when that
    leaves fewer than two customers or either feature has zero variance there. One pass over
    `features` computes every pair; the single result row is then unfolded into long form.

    One `corr` per unordered pair is all it takes: corr skips rows where either side is null,
    is null below two rows, and is NaN (0/0) exactly when a side has zero variance there (its
    central moments of equal values are exactly 0). Fewer aggregates keep the plan small:
    this job's fixed cost was mostly planning and code generation for 84 aggregates.
    """
    x = {c: F.col(c).cast("double") for c in FEATURE_COLUMNS}
    aggregates, pearson = [], {}
    for i, a in enumerate(FEATURE_COLUMNS):
        for b in FEATURE_COLUMNS[i:]:
            r = F.col(f"r_{a}__{b}")
            aggregates.append(F.corr(x[a], x[b]).alias(f"r_{a}__{b}"))
            pearson[a, b] = pearson[b, a] = F.when(~F.isnan(r), r)
    schema = CURATED[CORRELATION]
    pairs = [
        F.struct(
            F.lit(a).cast(schema["feature_a"].dataType).alias("feature_a"),
            F.lit(b).cast(schema["feature_b"].dataType).alias("feature_b"),
            pearson[a, b].cast(schema["pearson"].dataType).alias("pearson"),
        )
        for a in FEATURE_COLUMNS
        for b in FEATURE_COLUMNS
    ]
    return features.agg(*aggregates).select(F.explode(F.array(*pairs)).alias("p")).select("p.*")


def latest_customers(spark: SparkSession, lake: str, ds: dt.date) -> tuple[dt.date, DataFrame]:
    """The latest processed customers snapshot on or before ds (each partition is a full snapshot)."""
    dates = [d for d in list_partitions(spark, lake, "processed", "customers") if d <= ds]
    if not dates:
        raise JobInputError(f"no partition of {lake}/processed/customers on or before {ds}")
    return dates[-1], read_partition(spark, lake, "processed", "customers", dates[-1], PROCESSED["customers"])


def run(spark: SparkSession, args) -> dict:
    ds, lake = args.ds, args.lake
    try:
        graph = read_partition(spark, lake, "curated", "referral_graph", ds, CURATED["referral_graph"])
    except JobInputError as exc:
        raise JobInputError(f"{exc} (the graph job of the same ds writes it)") from None
    sales = read_history(spark, lake, "processed", "sales", ds, PROCESSED["sales"])
    snapshot_dt, customers = latest_customers(spark, lake, ds)
    log.warning("features %s: customers snapshot dt=%s", ds, snapshot_dt)

    # Cached while it is written (one row per customer), so the correlation is computed from
    # exactly the rows written, without recomputing them or reading them back.
    features = customer_features(sales, customers, graph, ds).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = write_partition(features, lake, "curated", OUTPUT, ds)
        pairs = write_partition(feature_correlation(features), lake, "curated", CORRELATION, ds, coalesce=1)
    finally:
        features.unpersist()
    return {
        "rows_in": {"sales": sales.count(), "customers": customers.count(), "referral_graph": graph.count()},
        "rows_out": {OUTPUT: rows, CORRELATION: pairs},
        "rows_quarantined": 0,
    }
