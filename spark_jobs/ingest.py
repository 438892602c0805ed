"""The `ingest` job: landing CSV / JSON lines -> the typed, deduplicated `processed.<dataset>` table,
plus `quarantine.<dataset>` holding every rejected row as text with the reason it was rejected.

Validation is plain column expressions (regexes and try_cast, no Python UDFs). A date range
is one pass: every day's landing files are read as one DataFrame (each row keeps its landing
day in `dt`), cached, and each table gets one commit for the whole range: a backfill of a month
is visible all at once or not at all, never as some days new and some old, and a rerun of the
range replaces it exactly. (One commit per date would leave a failed range half replaced.)
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from spark_jobs import tables
from spark_jobs.common import JobInputError, hadoop_fs, landing_path, utc_date
from spark_jobs.schemas import KEYS, LANDING_COLUMNS, LANDING_FORMAT, OPTIONAL_DAYS, PROCESSED, QUARANTINE

log = logging.getLogger(__name__)

# The event timestamp whose UTC date must equal the partition's dt (customers are snapshots).
EVENT_TS = {
    "sales": "transaction_ts",
    "referrals": "referral_ts",
    "stock_ticks": "trade_ts",
    "clickstream": "event_ts",
}

DT = "dt"  # the landing day of a row (DATE), the partition it is written to
CORRUPT = "_corrupt_record"
REASON = "reject_reason"
RAW = "raw_record"
_TYPED = "__typed_"  # prefix of the typed twin of each landing column while validating
_PROBLEM = "__problem_"  # prefix of the per-column reason while validating

_INT_RE = r"^[+-]?[0-9]+$"
_NUMBER_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
_FLOAT_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_LOCAL_TS = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
_TS_RE = rf"^{_LOCAL_TS}(Z|[+-][0-9]{{2}}:[0-9]{{2}})$"
_TS_NO_ZONE_RE = rf"^{_LOCAL_TS}$"
_LISTING_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"


# ---- validation (pure column expressions) --------------------------------------------------
def _quoted(value: Column) -> Column:
    return F.concat(F.lit("'"), value, F.lit("'"))


def _says(column: str, message: str, value: Column | None = None) -> Column:
    """`column: message: 'value'` (the value only when given)."""
    parts = [F.lit(f"{column}: {message}")]
    if value is not None:
        parts += [F.lit(": "), _quoted(value)]
    return F.concat(*parts)


def _typed_value_and_problem(name: str, dtype: DataType) -> tuple[Column, Column]:
    """The typed value of landing column `name`, and why it cannot be typed (null if it can).

    STRING values are kept exactly; other types ignore surrounding spaces. Nothing is rounded:
    a DECIMAL with more places than its scale, or out of range, is a problem, not a new value.
    """
    raw = F.col(name)
    missing = raw.isNull() | (F.trim(raw) == "")
    problem = F.when(missing, _says(name, "required"))
    if isinstance(dtype, StringType):
        return raw, problem

    text = F.trim(raw)
    typed = F.expr(f"try_cast(trim(`{name}`) AS {dtype.simpleString()})")
    if isinstance(dtype, (IntegerType, LongType)):
        invalid = f"out of range for {dtype.simpleString().upper()}"
        problem = problem.when(~text.rlike(_INT_RE), _says(name, "not an integer", raw))
    elif isinstance(dtype, DecimalType):
        invalid = f"out of range for {dtype.simpleString().upper()}"
        places = rf"^[+-]?([0-9]+(\.[0-9]{{0,{dtype.scale}}}0*)?|\.[0-9]{{1,{dtype.scale}}}0*)$"
        problem = problem.when(~text.rlike(_NUMBER_RE), _says(name, "not a decimal number", raw)).when(
            ~text.rlike(places), _says(name, f"more than {dtype.scale} decimal places", raw)
        )
    elif isinstance(dtype, DoubleType):
        invalid = "not a finite number"
        problem = problem.when(~text.rlike(_FLOAT_RE), _says(name, "not a number", raw))
        # 1e999 casts to Infinity: refuse it rather than store a non-number.
        typed = F.when(typed.isNull() | F.isnan(typed) | (F.abs(typed) == float("inf")), None).otherwise(
            typed
        )
    elif isinstance(dtype, DateType):
        invalid = "not a calendar date"
        problem = problem.when(~text.rlike(_DATE_RE), _says(name, "not a date (YYYY-MM-DD)", raw))
    elif isinstance(dtype, TimestampType):
        invalid = "not a calendar date and time"
        problem = problem.when(
            text.rlike(_TS_NO_ZONE_RE), _says(name, "timestamp without zone (Z or +HH:MM)", raw)
        ).when(~text.rlike(_TS_RE), _says(name, "not an ISO-8601 timestamp with zone", raw))
    else:  # pragma: no cover - the contract has no other types
        raise TypeError(f"no landing parser for {dtype}")
    # Well-formed but still not a value: 2024-02-30, an INT overflow, DECIMAL(12,2) > 10 digits.
    problem = problem.when(typed.isNull(), _says(name, invalid, raw))
    return typed, problem


def _rule_problems(dataset: str, ds: dt.date | Column) -> list[Column]:
    """The contract's rules on typed values, each null when the row keeps it (or cannot be typed)."""
    t = lambda name: F.col(_TYPED + name)  # noqa: E731
    partition_day = ds if isinstance(ds, Column) else F.lit(ds)
    rules: list[Column] = []
    if dataset == "sales":
        rules.append(F.when(t("quantity") <= 0, _says("quantity", "must be > 0", F.col("quantity"))))
        rules.append(
            F.when(t("total_amount") < 0, _says("total_amount", "must be >= 0", F.col("total_amount")))
        )
    if dataset == "referrals":
        rules.append(
            F.when(
                t("referrer_id") == t("referred_id"),
                _says("referred_id", "self-referral (referrer_id == referred_id)", F.col("referred_id")),
            )
        )
    if dataset in EVENT_TS:
        name = EVENT_TS[dataset]
        day = utc_date(t(name))
        rules.append(
            F.when(
                day != partition_day,
                F.concat(
                    F.lit(f"{name}: "),
                    day.cast("string"),
                    F.lit(" is outside partition dt="),
                    partition_day.cast("string"),
                ),
            )
        )
    return rules


def with_typed_columns_and_reject_reason(landing: DataFrame, dataset: str, ds: dt.date | Column) -> DataFrame:
    """Landing text rows -> the same rows plus a typed twin of every column and `reject_reason`.

    `reject_reason` is null for a good row, otherwise every problem of the row joined with "; "
    (a malformed line has just that one). `landing` holds the landing columns as strings and
    `_corrupt_record`, set when the line could not be split into those columns; any other column
    (such as `dt`) is passed through. `ds` is the partition date the event timestamps must fall
    on: one date, or a column holding each row's date (a range read at once).
    """
    columns = LANDING_COLUMNS[dataset]
    passed = [c for c in landing.columns if c not in (*columns, CORRUPT)]
    types = {f.name: f.dataType for f in PROCESSED[dataset].fields}
    typed_and_problems = {c: _typed_value_and_problem(c, types[c]) for c in columns}
    staged = landing.select(
        *passed,
        *columns,
        F.col(CORRUPT).alias(RAW),
        *[typed.alias(_TYPED + c) for c, (typed, _) in typed_and_problems.items()],
        *[problem.alias(_PROBLEM + c) for c, (_, problem) in typed_and_problems.items()],
    )
    # A value with a problem has no typed value (try_cast would round 1.234 to 1.23), so the
    # rules below judge only values that typed cleanly.
    staged = staged.select(
        *passed,
        *columns,
        RAW,
        *[F.when(F.col(_PROBLEM + c).isNull(), F.col(_TYPED + c)).alias(_TYPED + c) for c in columns],
        *[_PROBLEM + c for c in columns],
    )
    if LANDING_FORMAT[dataset] == "json":
        malformed = "malformed JSON"
    else:
        malformed = f"malformed CSV row (not {len(columns)} fields)"
    joined = F.concat_ws("; ", *[F.col(_PROBLEM + c) for c in columns], *_rule_problems(dataset, ds))
    # A malformed line has just that one reason: its columns are not what they claim to be.
    reason = F.when(F.col(RAW).isNotNull(), F.lit(malformed)).when(joined != "", joined)
    return staged.select(*passed, *columns, RAW, *[_TYPED + c for c in columns], reason.alias(REASON))


def valid_rows(checked: DataFrame, dataset: str, keep: Sequence[str] = ()) -> DataFrame:
    """The typed rows without a reject reason, in the processed schema (duplicates still in),
    plus the columns named in `keep`."""
    return checked.filter(F.col(REASON).isNull()).select(
        *[F.col(_TYPED + f.name).cast(f.dataType).alias(f.name) for f in PROCESSED[dataset].fields], *keep
    )


def quarantined_rows(checked: DataFrame, dataset: str, keep: Sequence[str] = ()) -> DataFrame:
    """The rejected rows as landing text, with `reject_reason` and `raw_record`, plus `keep`."""
    return checked.filter(F.col(REASON).isNotNull()).select(*QUARANTINE[dataset].fieldNames(), *keep)


def deduplicated_by_key(rows: DataFrame, keys: Sequence[str]) -> DataFrame:
    """One row per key: the row that sorts first by all its columns (nulls first).

    Deterministic whatever the file order or partitioning; rows tied on every column are
    identical, so which of them survives cannot show.
    """
    order = [F.col(c).asc_nulls_first() for c in rows.columns]
    window = Window.partitionBy(*keys).orderBy(*order)
    return rows.withColumn("__rank", F.row_number().over(window)).filter("__rank = 1").drop("__rank")


# ---- landing files -------------------------------------------------------------------------
def landing_files(spark: SparkSession, uri: str) -> list[str]:
    """The data files of a landing partition, sorted; [] when it is missing or holds none."""
    fs, path = hadoop_fs(spark, uri)
    if not fs.exists(path):
        return []
    files = [
        status.getPath().toString()
        for status in fs.listStatus(path)
        if status.isFile() and not status.getPath().getName().startswith(("_", "."))
    ]
    return sorted(files)


def csv_header(spark: SparkSession, uri: str) -> tuple[str, ...] | None:
    """The column names on the first non-blank line of a CSV file (as Spark reads it), or None."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    fs, path = hadoop_fs(spark, uri)
    stream = fs.open(path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
    try:
        line = reader.readLine()
        while line is not None and not line.strip():
            line = reader.readLine()
    finally:
        reader.close()
    if line is None:
        return None
    return tuple(next(csv.reader([line.lstrip("\ufeff")])))


@dataclass(frozen=True)
class LandingDay:
    ds: dt.date
    files: tuple[str, ...]  # empty: an optional day without data


def checked_landing_days(
    spark: SparkSession, lake: str, dataset: str, dates: Sequence[dt.date]
) -> list[LandingDay]:
    """Every date's landing files, after checking all of them: JobInputError before any write.

    Checks that each partition exists (unless the dataset may skip days) and that every CSV
    file's header is exactly the contract's columns, in order.
    """
    expected = LANDING_COLUMNS[dataset]
    days = []
    for ds in dates:
        where = landing_path(lake, dataset, ds)
        files = landing_files(spark, where)
        if not files and dataset not in OPTIONAL_DAYS:
            raise JobInputError(f"missing landing partition {where} (no data files)")
        if LANDING_FORMAT[dataset] == "csv":
            for uri in files:
                found = csv_header(spark, uri)
                if found != expected:
                    shown = "no header (empty file)" if found is None else ",".join(found)
                    raise JobInputError(
                        f"header mismatch in {uri}: found {shown!r}, expected {','.join(expected)!r}"
                    )
        days.append(LandingDay(ds, tuple(files)))
    return days


def read_landing(spark: SparkSession, dataset: str, files: Sequence[str]) -> DataFrame:
    """The landing files as text columns plus `_corrupt_record` (the line, when malformed)."""
    columns = LANDING_COLUMNS[dataset]
    schema = StructType(
        [StructField(c, StringType(), True) for c in columns] + [StructField(CORRUPT, StringType(), True)]
    )
    if LANDING_FORMAT[dataset] == "csv":
        # The header was checked file by file; enforceSchema then just skips it. A line with too
        # few or too many fields lands in _corrupt_record.
        return spark.read.csv(
            list(files),
            schema=schema,
            header=True,
            enforceSchema=True,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT,
        )
    # JSON lines go through text + from_json so that any line that is not one JSON object
    # (truncated, an array, a bare number) is kept verbatim. Fields outside the contract are
    # ignored; blank lines are skipped like Spark's JSON reader does.
    lines = spark.read.text(list(files)).filter(F.trim("value") != "")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    return lines.select(F.from_json("value", schema, options).alias("record")).select("record.*")


def read_landing_days(spark: SparkSession, dataset: str, days: Sequence[LandingDay]) -> DataFrame:
    """Every day's landing files as one DataFrame (one scan), plus `dt`: the day of the row's file.

    The day comes from the file's directory, `.../dt=YYYY-MM-DD/<file>` (checked_landing_days
    lists the files of each day's directory, and nothing deeper).
    """
    files = [uri for day in days for uri in day.files]
    # Past this many paths Spark lists them in a Spark job (seconds on a busy machine, for files
    # checked_landing_days has just listed): list on the driver instead. The listing happens
    # when the reader is created, so the setting is restored right after.
    saved = spark.conf.get(_LISTING_THRESHOLD)
    spark.conf.set(_LISTING_THRESHOLD, str(max(int(saved), len(files) + 1)))
    try:
        landing = read_landing(spark, dataset, files)
    finally:
        spark.conf.set(_LISTING_THRESHOLD, saved)
    day = F.regexp_extract(F.input_file_name(), r"/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/[^/]+$", 1)
    return landing.withColumn(DT, F.to_date(day, "yyyy-MM-dd"))


def _write_both(
    spark: SparkSession, valid: DataFrame, rejects: DataFrame, dataset: str, dates: Sequence[dt.date]
) -> tuple[tables.Written, tables.Written]:
    """processed then quarantine, one commit each for the whole range; if the second fails the
    first is taken back, so the job commits nothing."""
    processed, quarantine = tables.replace_all_or_none(
        spark,
        [
            lambda: tables.replace_dates(
                valid, "processed", dataset, PROCESSED[dataset], dates, job="ingest"
            ),
            # Always written, even empty: a rerun must clear the rejects of an earlier run.
            lambda: tables.replace_dates(
                rejects, "quarantine", dataset, QUARANTINE[dataset], dates, job="ingest"
            ),
        ],
    )
    return processed, quarantine


def ingest_days(
    spark: SparkSession, lake: str, dataset: str, days: Sequence[LandingDay]
) -> tuple[dict[dt.date, dict[str, int]], tuple[tables.Written, tables.Written]]:
    """Replace processed + quarantine for every day at once; return each day's counts and the commits."""
    dates = [day.ds for day in days]
    for day in days:
        if not day.files:
            log.warning(
                "no landing data for %s dt=%s (market closed / no traffic): the day is written empty",
                dataset,
                day.ds,
            )
    if not any(day.files for day in days):
        empty = lambda schema: spark.createDataFrame([], tables.with_dt(schema))  # noqa: E731
        written = _write_both(spark, empty(PROCESSED[dataset]), empty(QUARANTINE[dataset]), dataset, dates)
        rows_in = dict.fromkeys(dates, 0)
    else:
        checked = with_typed_columns_and_reject_reason(
            read_landing_days(spark, dataset, days), dataset, F.col(DT)
        )
        # One pass over the landing files: the processed write fills the cache; the quarantine
        # write and the per-day input counts read the cache. (Not `observe`: an Observation whose
        # metrics never arrive blocks `get` forever; a run of the suite hung there once.)
        checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            # Duplicates are duplicates within a day: the day is part of the key.
            valid = deduplicated_by_key(valid_rows(checked, dataset, keep=[DT]), (DT, *KEYS[dataset]))
            # No coalesce: only input splits that hold rejects write files.
            rejects = quarantined_rows(checked, dataset, keep=[DT])
            written = _write_both(spark, valid, rejects, dataset, dates)
            per_day = {row[DT]: row["count"] for row in checked.groupBy(DT).count().collect()}
            rows_in = {ds: int(per_day.get(ds, 0)) for ds in dates}
        finally:
            checked.unpersist()

    processed, quarantine = written
    counts = {}
    for ds in dates:
        rows_out, rejected = processed.rows[ds], quarantine.rows[ds]
        duplicates = rows_in[ds] - rejected - rows_out
        if duplicates:
            # Duplicates are not errors (re-sent records): dropped, counted, not quarantined.
            log.info("%s dt=%s: dropped %d duplicate rows (same %s)", dataset, ds, duplicates, KEYS[dataset])
        log.info(
            "%s dt=%s: %d rows in, %d out, %d quarantined, %d duplicates dropped",
            dataset,
            ds,
            rows_in[ds],
            rows_out,
            rejected,
            duplicates,
        )
        counts[ds] = {
            "rows_in": rows_in[ds],
            "rows_out": rows_out,
            "rows_quarantined": rejected,
            "duplicates_dropped": duplicates,
        }
    return counts, written


def run(spark: SparkSession, args) -> dict:
    """Ingest `args.dataset` for every date of `args.dates` (one date, or a range) in one pass."""
    dataset = args.dataset
    days = checked_landing_days(spark, args.lake, dataset, args.dates)
    totals = {"rows_in": 0, "rows_out": 0, "rows_quarantined": 0, "duplicates_dropped": 0}
    per_day, (processed, quarantine) = ingest_days(spark, args.lake, dataset, days)
    for day_counts in per_day.values():
        for name, value in day_counts.items():
            totals[name] += value
    return {
        "rows_in": {dataset: totals["rows_in"]},
        "rows_out": {dataset: totals["rows_out"]},
        "rows_quarantined": totals["rows_quarantined"],
        "duplicates_dropped": totals["duplicates_dropped"],
        "tables": {
            f"processed.{dataset}": processed.as_metrics(),
            f"quarantine.{dataset}": quarantine.as_metrics(),
        },
    }
