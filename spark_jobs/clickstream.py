"""Job `clickstream`: checkout events per user per 1-minute event-time window, as a stream.

Reads `landing/clickstream/dt=ds/` with Structured Streaming (Trigger.AvailableNow: the run ends
when the day's backlog is done) and maintains date ds of `curated.clickstream_checkouts`. The
output for ds is a function of that day's landing files alone, whatever later days have landed:
each date has its own checkpoint (`LAKE/_checkpoints/clickstream_checkouts/dt=ds`), and events
whose UTC date is not ds are dropped (ingest quarantines them) and counted.

Exactly once across reruns and crashes: the stream runs in update mode, so each micro-batch
carries the *full* current count of every (user_id, window_start) it touched, never a delta. The
sink replaces those rows of date ds in one Iceberg commit (read the day, replace by key, write
the day). Applying a batch twice therefore gives the same table; a rerun whose checkpoint has
seen every file commits nothing; a rerun after deleting the checkpoint recounts the day from
its files, and its first batch replaces the day instead of merging into it.

Late data: the watermark is 1 hour behind the latest event time seen. A checkout arriving in a
later file whose event_ts is within that hour is counted in its window; an event older than the
watermark (and a duplicate whose first copy has been forgotten) is dropped and counted in the
`rows_dropped_late` metric. Duplicated event_ids count once: checkout events are deduplicated
by event_id within the watermark (copies of an event are assumed identical; if not, the first
copy to arrive counts). Malformed JSON lines and rows without event_id or a parseable event_ts
are dropped here (ingest quarantines them) and counted in `rows_dropped_invalid`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs import lineage, table_history, table_reads, table_writes, tables
from spark_jobs.common import landing_path, path_exists, utc_date
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


def is_on(ds: dt.date) -> F.Column:
    """The event happened on ds (UTC): the only events a dt=ds file may hold."""
    return utc_date(F.col("event_ts")) == F.lit(ds)


def checkout_events(raw: DataFrame, ds: dt.date) -> DataFrame:
    """Valid checkout events of ds, one per event_id (within the watermark when streaming).

    Filtering on page before deduplicating keeps the dedup state to checkout events only.
    """
    return (
        raw.filter(is_valid_event() & is_on(ds) & (F.col("page") == F.lit("checkout")))
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


def merged_counts(existing: DataFrame, updates: DataFrame) -> DataFrame:
    """existing with the rows of every key in updates replaced by the updated rows."""
    columns = CURATED[OUTPUT].fieldNames()
    kept = existing.join(updates.select(*KEY), list(KEY), "left_anti")
    return kept.select(*columns).unionByName(updates.select(*columns))


# ---- the sink ------------------------------------------------------------------------------
class CheckoutSink:
    """foreachBatch sink: merge each batch's updated counts into date ds, one commit per batch."""

    def __init__(self, ds: dt.date):
        self.ds = ds
        self.rows_upserted = 0
        self.snapshot_id: int | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        lineage.present_catalog_to_listener(spark)  # the stream's own session (a clone)
        updates = batch.persist()
        try:
            n = updates.count()
            if n == 0:
                return
            table = tables.identifier(spark, "curated", OUTPUT)
            if batch_id > 0 and spark.catalog.tableExists(table):
                existing = table_reads.read(spark, "curated", OUTPUT, since=self.ds, upto=self.ds).drop("dt")
            else:
                # The first batch of a checkpoint counts the day from its files: it replaces the
                # day rather than merging into it (after a deleted checkpoint, a full recount).
                existing = spark.createDataFrame([], CURATED[OUTPUT])
            written = table_writes.replace_date(
                merged_counts(existing, updates),
                "curated",
                OUTPUT,
                CURATED[OUTPUT],
                self.ds,
                job="clickstream",
            )
            self.rows_upserted += n
            self.snapshot_id = written.snapshot_id
            log.info("clickstream %s: batch %d updated %d windows", self.ds, batch_id, n)
        finally:
            updates.unpersist()


# ---- the run -------------------------------------------------------------------------------
def _as_json(progress: dict) -> dict:
    """One progress update as plain JSON data. Spark 3.5 gives it so; Spark 4 gives a
    StreamingQueryProgress (a dict whose observed metrics are Rows), whose `json` says the same."""
    text = getattr(progress, "json", None)
    return json.loads(text) if isinstance(text, str) else progress


def _progress_metrics(progress: list[dict]) -> dict:
    totals = {"rows": 0, "invalid": 0, "other_day": 0, "late": 0, "batches": len(progress)}
    for p in map(_as_json, progress):
        observed = (p.get("observedMetrics") or {}).get(OBSERVATION) or {}
        totals["rows"] += int(observed.get("rows") or 0)
        totals["invalid"] += int(observed.get("invalid") or 0)
        totals["other_day"] += int(observed.get("other_day") or 0)
        totals["late"] += sum(
            int(op.get("numRowsDroppedByWatermark") or 0) for op in p.get("stateOperators", [])
        )
    return totals


def run(spark: SparkSession, args) -> dict:
    ds, lake = args.ds, args.lake
    checkpoint = getattr(args, "checkpoint", None) or f"{lake}/_checkpoints/{OUTPUT}/dt={ds}"
    landing = landing_path(lake, "clickstream", ds)
    sink = CheckoutSink(ds)
    totals = {"rows": 0, "invalid": 0, "other_day": 0, "late": 0, "batches": 0}
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
            F.sum(F.when(is_valid_event() & ~is_on(ds), 1).otherwise(0)).alias("other_day"),
        )
        with lineage.catalog_settings_for_clones(spark):  # start() clones the session
            query = (
                checkouts_per_user_minute(checkout_events(observed, ds))
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
        log.warning("clickstream %s: %s does not exist: no traffic that day", ds, landing)

    if not table_reads.is_written(spark, "curated", OUTPUT, ds):
        log.warning("clickstream %s: no checkout on %s: the day is written empty", ds, ds)
        empty = table_writes.replace_date(
            spark.createDataFrame([], CURATED[OUTPUT]),
            "curated",
            OUTPUT,
            CURATED[OUTPUT],
            ds,
            job="clickstream",
        )
        sink.snapshot_id = empty.snapshot_id
    if totals["invalid"]:
        log.warning("clickstream %s: dropped %d malformed or incomplete events", ds, totals["invalid"])
    if totals["other_day"]:
        log.warning(
            "clickstream %s: dropped %d events dated another day than %s", ds, totals["other_day"], ds
        )
    if totals["late"]:
        log.warning(
            "clickstream %s: dropped %d events older than the %s watermark", ds, totals["late"], WATERMARK
        )
    table = tables.identifier(spark, "curated", OUTPUT)
    metrics = {
        "rows_in": {"clickstream": totals["rows"]},
        "rows_out": {OUTPUT: sink.rows_upserted},
        "rows_quarantined": 0,
        "rows_dropped_invalid": totals["invalid"] + totals["other_day"],
        "rows_dropped_late": totals["late"],
        "micro_batches": totals["batches"],
    }
    snapshot = sink.snapshot_id or table_history.current_snapshot_id(spark, table)
    metrics["tables"] = {f"curated.{OUTPUT}": {"snapshot_id": snapshot, "rows": sink.rows_upserted}}
    return metrics
