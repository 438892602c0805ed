"""Job `segments`: KMeans customer segments on the standardised spend features of ds.

Replaces date ds of `curated.customer_segments` (partitioned by dt and segment). Segment ids are
ordered by the mean total_spent of their customers: segment 0 spends least, segment k-1 most, on
every run.
"""

from __future__ import annotations

import logging

from pyspark.ml.clustering import KMeans
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs import table_reads, table_writes
from spark_jobs.common import JobInputError
from spark_jobs.schemas import CURATED, SEGMENT_FEATURES, SEGMENT_K, SEGMENT_SEED

log = logging.getLogger("spark_jobs.segments")

OUTPUT = "customer_segments"
# Spark's defaults (20 iterations, tol 1e-4) can stop Lloyd's iterations before they settle;
# these are cheap at customer scale and make the result the converged local optimum.
MAX_ITER = 100
TOL = 1e-6
PARTITIONS = 8  # the layout KMeans sees, the same on every target (see segment_inputs)


def segment_inputs(features: DataFrame) -> DataFrame:
    """customer_id and the four segment features, typed as in customer_segments, in a fixed order.

    KMeans' k-means|| initialisation samples per partition, so the same customers in another
    partition layout or row order could give other clusters: hash-partitioning into a fixed
    number of partitions (not the session's shuffle setting, which differs between a laptop and
    a cluster) and sorting by customer_id makes every run on the same data, on either target,
    give the same assignment.
    """
    schema = CURATED[OUTPUT]
    source = {
        "total_spent": "lifetime_value",
        "num_purchases": "purchase_frequency",
        "avg_basket_size": "avg_basket_size",
        "recency_days": "recency_days",
    }
    cols = [F.col("customer_id").cast(schema["customer_id"].dataType).alias("customer_id")]
    cols += [F.col(source[name]).cast(schema[name].dataType).alias(name) for name in SEGMENT_FEATURES]
    return features.select(*cols).repartition(PARTITIONS, "customer_id").sortWithinPartitions("customer_id")


def _ordered_by_spend(assigned: DataFrame) -> DataFrame:
    """cluster -> segment, numbered 0.. by ascending mean total_spent (ties: smallest customer_id)."""
    clusters = assigned.groupBy("cluster").agg(
        F.avg(F.col("total_spent").cast("double")).alias("mean_spent"),
        F.min("customer_id").alias("first_customer"),
    )
    # At most k rows: a window over all of them is fine.
    order = Window.orderBy("mean_spent", "first_customer")
    return clusters.select("cluster", (F.row_number().over(order) - 1).alias("segment"))


def customer_segments(features: DataFrame, k: int = SEGMENT_K, seed: int = SEGMENT_SEED) -> DataFrame:
    """The customer_segments rows: every customer of `features` in exactly one segment.

    KMeans (k, seed) runs on the four SEGMENT_FEATURES standardised to mean 0 and sample
    standard deviation 1 (a feature without variance becomes 0 for everyone, never NaN; a null
    feature counts as 0). Clusters are renumbered by ascending mean total_spent.

    With fewer distinct customers (points) than k there cannot be k clusters: the customers get
    as many segments as there are distinct points (one point: everyone is segment 0). No
    customers at all is bad input (JobInputError): there is nothing to segment.
    """
    inputs = segment_inputs(features)
    as_double = [F.coalesce(F.col(c).cast("double"), F.lit(0.0)).alias(f"_{c}") for c in SEGMENT_FEATURES]
    numeric = inputs.select("*", *as_double)
    points = numeric.select(*[f"_{c}" for c in SEGMENT_FEATURES]).distinct().count()
    if points == 0:
        raise JobInputError("customer_features has no customers: nothing to segment")
    clusters = min(k, points)
    if clusters < k:
        log.warning("segments: only %d distinct customers for k=%d: %d segment(s)", points, k, clusters)

    if clusters == 1:  # Spark's KMeans needs k >= 2; one point is one cluster
        assigned = numeric.withColumn("cluster", F.lit(0))
    else:
        assembler = VectorAssembler(inputCols=[f"_{c}" for c in SEGMENT_FEATURES], outputCol="_raw")
        raw = assembler.transform(numeric)
        scaler = StandardScaler(inputCol="_raw", outputCol="_scaled", withMean=True, withStd=True).fit(raw)
        scaled = scaler.transform(raw)
        kmeans = KMeans(
            k=clusters, seed=seed, maxIter=MAX_ITER, tol=TOL, featuresCol="_scaled", predictionCol="cluster"
        )
        assigned = kmeans.fit(scaled).transform(scaled)

    schema = CURATED[OUTPUT]
    segmented = assigned.join(F.broadcast(_ordered_by_spend(assigned)), "cluster")
    return segmented.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def run(spark: SparkSession, args) -> dict:
    ds = args.ds
    features = table_reads.read_date(spark, "curated", "customer_features", ds)
    rows_in = features.count()
    written = table_writes.replace_date(
        customer_segments(features),
        "curated",
        OUTPUT,
        CURATED[OUTPUT],
        ds,
        job="segments",
        partitioned_by=("dt", "segment"),
    )
    return {
        "rows_in": {"customer_features": rows_in},
        "rows_out": {OUTPUT: written.total},
        "rows_quarantined": 0,
        "tables": {f"curated.{OUTPUT}": written.as_metrics()},
    }
