"""The ingest's validation, as plain column expressions (regexes and try_cast, no Python UDFs):
each landing column typed, the reason a row is rejected (its first problem, one line naming the
column), the valid and the quarantined rows, and the deduplication by the dataset's key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
)

from spark_jobs.common import utc_date
from spark_jobs.schemas import LANDING_COLUMNS, LANDING_FORMAT, PROCESSED, QUARANTINE

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
