"""Job `features`: per-customer features of the sales history up to ds, and how they correlate.

Replaces date ds of `curated.customer_features` (the SageMaker input; needs `referral_graph` of ds,
so the graph job runs first) and of `curated.feature_correlation`.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import table_reads, table_writes
from spark_jobs.common import JobInputError, utc_date
from spark_jobs.schemas import CURATED, FEATURE_COLUMNS
from spark_jobs.transforms import distinct_sales, region_by_customer

log = logging.getLogger("spark_jobs.features")

OUTPUT = "customer_features"
CORRELATION = "feature_correlation"


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

    Per unordered pair, over the customers where both sides are non-null: the sample covariance
    over the product of the sample deviations (what `corr` computes), divided with `try_divide`:
    null below two customers (the sample moments are null there) and null when a side has zero
    variance (its central moment of equal values is exactly 0). `corr` itself divides by that 0
    too, and under ANSI SQL (on for every job, as on EMR) that raises instead of giving NaN.
    One pass computes every pair.
    """
    x = {c: F.col(c).cast("double") for c in FEATURE_COLUMNS}
    aggregates, pearson = [], {}
    for i, a in enumerate(FEATURE_COLUMNS):
        for b in FEATURE_COLUMNS[i:]:
            both = x[a].isNotNull() & x[b].isNotNull()
            xa, xb = F.when(both, x[a]), F.when(both, x[b])
            r = F.try_divide(F.covar_samp(xa, xb), F.sqrt(F.var_samp(xa) * F.var_samp(xb)))
            aggregates.append(r.alias(f"r_{a}__{b}"))
            pearson[a, b] = pearson[b, a] = F.col(f"r_{a}__{b}")
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


def run(spark: SparkSession, args) -> dict:
    ds = args.ds
    try:
        graph = table_reads.read_date(spark, "curated", "referral_graph", ds)
    except JobInputError as exc:
        raise JobInputError(f"{exc} (the graph job of the same ds writes it)") from None
    sales = table_reads.read_history(spark, "processed", "sales", ds)
    snapshot_dt, customers = table_reads.read_latest(spark, "processed", "customers", ds)
    log.warning("features %s: customers snapshot dt=%s", ds, snapshot_dt)

    # Cached while it is written (one row per customer), so the correlation is computed from
    # exactly the rows written, without recomputing them or reading them back.
    features = customer_features(sales, customers, graph, ds).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written, correlation = table_writes.replace_all_or_none(
            spark,
            [
                lambda: table_writes.replace_date(
                    features, "curated", OUTPUT, CURATED[OUTPUT], ds, job="features"
                ),
                lambda: table_writes.replace_date(
                    feature_correlation(features),
                    "curated",
                    CORRELATION,
                    CURATED[CORRELATION],
                    ds,
                    job="features",
                ),
            ],
        )
    finally:
        features.unpersist()
    return {
        "rows_in": {"sales": sales.count(), "customers": customers.count(), "referral_graph": graph.count()},
        "rows_out": {OUTPUT: written.total, CORRELATION: correlation.total},
        "rows_quarantined": 0,
        "tables": {
            f"curated.{OUTPUT}": written.as_metrics(),
            f"curated.{CORRELATION}": correlation.as_metrics(),
        },
    }
