"""Job `clickstream`: checkout events per user per 1-minute event-time window, as a stream.

Reads every `landing/clickstream/dt=*/` JSON file not seen by earlier runs (Structured Streaming,
Trigger.AvailableNow, so the run ends when the backlog is done) and maintains
`curated/clickstream_checkouts/dt=<date of window_start>/`.

Exactly once across reruns and crashes: the stream runs in update mode, so each micro-batch
carries the *full* current count of every (user_id, window_start) it touched, never a delta. The
sink replaces those rows in their dt partitions (read, replace by key, atomic write_partition).
Applying a batch twice therefore gives the same partitions; on top of that the last applied
batchId is recorded next to the checkpoint and a batch Spark replays after a crash is skipped
when it was already applied. The marker lives inside the checkpoint directory on purpose:
deleting the checkpoint to reprocess also forgets the marker, and batchIds restart at 0.

Late data: the watermark is 1 hour behind the latest event time seen. A checkout arriving in a
later file or run whose event_ts is within that hour is counted in its window; an event older
than the watermark (and a duplicate whose first copy has been forgotten) is dropped and counted
in the `rows_dropped_late` metric. Duplicated event_ids count once: checkout events are
deduplicated by event_id within the watermark (copies of an event are assumed identical; if not,
the first copy to arrive counts).

Malformed JSON lines and rows without event_id or a parseable event_ts are dropped here (ingest
quarantines them) and counted in `rows_dropped_invalid`. The output of a run is not a function of
ds alone: the stream processes whatever files have arrived, whatever their dt, and updates the
partitions of the windows it touched (several dates when events are late). ds only names the
partition that must exist afterwards: the run writes an empty `dt=ds` when it has no checkout
for that date, so a day without traffic is visible.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs.common import (
    _fs_path,
    dataset_path,
    partition_path,
    path_exists,
    write_partition,
)
from spark_jobs.schemas import CURATED, PROCESSED

log = logging.getLogger("spark_jobs.clickstream")

OUTPUT = "clickstream_checkouts"
KEY = ("user_id", "window_start")
WINDOW = "1 minute"
WATERMARK = "1 hour"
CORRUPT = "_corrupt_record"
LANDING_SCHEMA = StructType([*PROCESSED["clickstream"].fields, StructField(CORRUPT, StringType())])
OBSERVATION = "clickstream_input"


# ---- transforms (work on streaming and batch DataFrames alike) ------------------------------
def is_valid_event() -> F.Column:
    return F.col("event_id").isNotNull() & F.col("event_ts").isNotNull()


def checkout_events(raw: DataFrame) -> DataFrame:
    """Valid checkout events, one per event_id (within the watermark when streaming).

    Filtering on page before deduplicating keeps the dedup state to checkout events only.
    """
    return (
        raw.filter(is_valid_event() & (F.col("page") == F.lit("checkout")))
        .select("event_id", "user_id", "event_ts")
        .withWatermark("event_ts", WATERMARK)
        .dropDuplicatesWithinWatermark(["event_id"])
    )


def checkouts_per_user_minute(events: DataFrame) -> DataFrame:
    """user_id, window_start, window_end, checkout_count per 1-minute tumbling event-time window."""
    schema = CURATED[OUTPUT]
    counts = events.groupBy(F.window("event_ts", WINDOW), "user_id").agg(
        F.count(F.lit(1)).alias("checkout_count")
    )
    return counts.select(
        F.col("user_id").cast(schema["user_id"].dataType).alias("user_id"),
        F.col("window.start").cast(schema["window_start"].dataType).alias("window_start"),
        F.col("window.end").cast(schema["window_end"].dataType).alias("window_end"),
        F.col("checkout_count").cast(schema["checkout_count"].dataType).alias("checkout_count"),
    )


def with_window_date(counts: DataFrame) -> DataFrame:
    """Adds `dt`, the (UTC session) date of window_start: the output partition of the row."""
    return counts.withColumn("dt", F.to_date("window_start"))


def merged_counts(existing: DataFrame, updates: DataFrame) -> DataFrame:
    """existing with the rows of every key in updates replaced by the updated rows."""
    columns = CURATED[OUTPUT].fieldNames()
    kept = existing.join(updates.select(*KEY), list(KEY), "left_anti")
    return kept.select(*columns).unionByName(updates.select(*columns))


# ---- the sink ------------------------------------------------------------------------------
class CheckoutSink:
    """foreachBatch sink: merge each batch's updated counts into their dt partitions, once."""

    def __init__(self, lake: str, checkpoint: str):
        self.lake = lake
        self.marker_dir = f"{checkpoint}/sink_applied"
        self.rows_upserted = 0
        self.partitions: set[dt.date] = set()

    def last_applied(self, spark: SparkSession) -> int:
        fs, path = _fs_path(spark, self.marker_dir)
        if not fs.exists(path):
            return -1
        ids = [int(s.getPath().getName()[len("batch=") :]) for s in fs.listStatus(path)]
        return max(ids, default=-1)

    def record(self, spark: SparkSession, batch_id: int) -> None:
        """Marks batch_id applied (a directory per batch; older markers are then removed)."""
        fs, path = _fs_path(spark, f"{self.marker_dir}/batch={batch_id}")
        fs.mkdirs(path)
        for status in fs.listStatus(path.getParent()):
            if int(status.getPath().getName()[len("batch=") :]) < batch_id:
                fs.delete(status.getPath(), True)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        if batch_id <= self.last_applied(spark):
            log.warning("clickstream: batch %d was already applied before a restart; skipped", batch_id)
            return
        updates = with_window_date(batch).persist()
        try:
            days = sorted(r.dt for r in updates.select("dt").distinct().collect())
            for day in days:
                self.rows_upserted += self._merge_day(spark, updates, day)
                self.partitions.add(day)
        finally:
            updates.unpersist()
        self.record(spark, batch_id)

    def _merge_day(self, spark: SparkSession, updates: DataFrame, day: dt.date) -> int:
        schema = CURATED[OUTPUT]
        target = partition_path(self.lake, "curated", OUTPUT, day)
        if path_exists(spark, target):
            existing = spark.read.schema(schema).parquet(target)
        else:
            existing = spark.createDataFrame([], schema)
        day_updates = updates.filter(F.col("dt") == F.lit(day)).drop("dt")
        write_partition(merged_counts(existing, day_updates), self.lake, "curated", OUTPUT, day, coalesce=1)
        return day_updates.count()


# ---- the run -------------------------------------------------------------------------------
def _progress_metrics(progress: list[dict]) -> dict:
    totals = {"rows": 0, "invalid": 0, "late": 0, "batches": len(progress)}
    for p in progress:
        observed = (p.get("observedMetrics") or {}).get(OBSERVATION) or {}
        totals["rows"] += int(observed.get("rows") or 0)
        totals["invalid"] += int(observed.get("invalid") or 0)
        totals["late"] += sum(
            int(op.get("numRowsDroppedByWatermark") or 0) for op in p.get("stateOperators", [])
        )
    return totals


def run(spark: SparkSession, args) -> dict:
    ds, lake = args.ds, args.lake
    checkpoint = getattr(args, "checkpoint", None) or f"{lake}/_checkpoints/{OUTPUT}"
    landing = dataset_path(lake, "landing", "clickstream")
    sink = CheckoutSink(lake, checkpoint)
    totals = {"rows": 0, "invalid": 0, "late": 0, "batches": 0}
    if path_exists(spark, landing):
        raw = (
            spark.readStream.schema(LANDING_SCHEMA)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .json(landing)
        )
        observed = raw.observe(
            OBSERVATION,
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(is_valid_event(), 0).otherwise(1)).alias("invalid"),
        )
        query = (
            checkouts_per_user_minute(checkout_events(observed))
            .writeStream.queryName(f"clickstream_checkouts_{ds}")
            .outputMode("update")
            .foreachBatch(sink)
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        try:
            query.awaitTermination()
        finally:
            query.stop()
        totals = _progress_metrics(query.recentProgress)
    else:
        log.warning("clickstream %s: %s does not exist yet: no traffic to process", ds, landing)

    if not path_exists(spark, partition_path(lake, "curated", OUTPUT, ds)):
        log.warning("clickstream %s: no checkout on %s: writing an empty partition", ds, ds)
        write_partition(spark.createDataFrame([], CURATED[OUTPUT]), lake, "curated", OUTPUT, ds)
        sink.partitions.add(ds)
    if totals["invalid"]:
        log.warning("clickstream %s: dropped %d malformed or incomplete events", ds, totals["invalid"])
    if totals["late"]:
        log.warning(
            "clickstream %s: dropped %d events older than the %s watermark", ds, totals["late"], WATERMARK
        )
    return {
        "rows_in": {"clickstream": totals["rows"]},
        "rows_out": {OUTPUT: sink.rows_upserted},
        "rows_quarantined": 0,
        "rows_dropped_invalid": totals["invalid"],
        "rows_dropped_late": totals["late"],
        "micro_batches": totals["batches"],
        "partitions_written": sorted(str(d) for d in sink.partitions),
    }
