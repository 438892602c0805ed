"""Job `audit`: the checks of a run's outputs, on the run's branch, before anyone can read them.

    python -m spark_jobs audit --ds DS --lake LAKE --branch BRANCH --checks-uri URI
        [--warnings-block] (or --start-ds A --end-ds B for a backfill's range)

`--checks-uri` names the declaration of include/checks.py as the run's plan wrote it (JSON, with
the settings applied; a file, so the command line stays a list of plain tokens): for each table
(`zone.name`) a list of {name, kind, severity, params}. Only tables the run wrote (those with
the branch) are checked, each on each date the branch's commits replaced. Every check ends
`pass`, `fail` or `skipped` (with why), with its numbers and up to 10 offending rows; a failed
check of severity `error` fails the audit (exit code 3), one of severity `warn` only reports
(with --warnings-block it fails the audit too). The results go to the metrics line and to
`LAKE/_runs/audits/dt=<ds>/<branch>.results.json`, where the run report reads them.

History is what readers see: main, the published dates (the last HISTORY_DAYS with rows before
the date checked).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import table_history, table_reads, tables
from spark_jobs.common import JobInputError, path_exists, read_text, write_text
from spark_jobs.paths import audit_uri
from spark_jobs.protocol import EXIT_AUDIT_FAILED

log = logging.getLogger("spark_jobs.audit")

OFFENDING_ROWS = 10
HISTORY_DAYS = 7


@dataclass
class Result:
    table: str
    check: str
    severity: str  # error | warn
    ds: str
    status: str  # pass | fail | skipped
    numbers: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)  # up to OFFENDING_ROWS

    @property
    def blocks(self) -> bool:
        return self.status == "fail" and self.severity == "error"

    def line(self) -> str:
        numbers = ", ".join(f"{k}={v}" for k, v in self.numbers.items())
        why = f" ({self.note})" if self.note else ""
        return (
            f"{self.status.upper():7} {self.severity:5} {self.table} {self.ds} {self.check}: {numbers}{why}"
        )


class TableStats:
    """What several checks of one table need on every audited date, computed once per table:
    rows per date from the table's metadata (no data file read), what main published per date,
    and the key check's numbers in one pass over the audited dates."""

    def __init__(self, spark: SparkSession, zone: str, name: str, dates: list[dt.date]) -> None:
        self.spark, self.zone, self.name, self.dates = spark, zone, name, dates
        self.table = tables.identifier(spark, zone, name)
        self._keys: dict[tuple, dict[dt.date, tuple[int, int]]] = {}
        self._published: dict[dt.date, int] | None = None
        self._quarantined: dict[dt.date, int] | None = None
        self.rows = self._rows_per_date(table_history.head(spark, self.table))

    def _rows_per_date(self, snapshot: int | None) -> dict[dt.date, int]:
        if snapshot is None:
            return {}
        parts = table_history.partitions_at(self.spark, self.table, snapshot)
        per_date = parts.groupBy(F.col("partition.dt").alias("dt")).agg(F.sum("record_count").alias("n"))
        return {r.dt: int(r.n) for r in per_date.collect() if r.dt is not None}

    def published(self) -> dict[dt.date, int]:
        """Rows per date on main (what readers see)."""
        if self._published is None:
            self._published = self._rows_per_date(table_history.current_snapshot_id(self.spark, self.table))
        return self._published

    def quarantined(self) -> dict[dt.date, int]:
        """Rows per date of the dataset's quarantine table (as this session reads it)."""
        if self._quarantined is None:
            self._quarantined = {}
            if self.spark.catalog.tableExists(tables.identifier(self.spark, "quarantine", self.name)):
                self._quarantined = TableStats(self.spark, "quarantine", self.name, self.dates).rows
        return self._quarantined

    def keys(self, columns: tuple[str, ...], required: tuple[str, ...]) -> dict[dt.date, tuple[int, int]]:
        """date -> (rows with a null required key column, keys held by more than one row)."""
        if (columns, required) not in self._keys:
            rows = table_reads.read(
                self.spark, self.zone, self.name, since=min(self.dates), upto=max(self.dates)
            )
            null = " OR ".join(f"`{c}` IS NULL" for c in required) if required else "false"
            nulls = rows.groupBy(tables.DT).agg(
                F.sum(F.expr(f"CASE WHEN {null} THEN 1 ELSE 0 END")).alias("n")
            )
            dupes = rows.groupBy(tables.DT, *columns).count().filter("count > 1").groupBy(tables.DT).count()
            found = {r.dt: (int(r.n), 0) for r in nulls.collect()}
            for r in dupes.collect():
                found[r.dt] = (found.get(r.dt, (0, 0))[0], int(r["count"]))
            self._keys[(columns, required)] = found
        return self._keys[(columns, required)]


@dataclass
class Context:
    """What a check looks at: the table's rows of ds on the branch, and what main holds."""

    spark: SparkSession
    zone: str
    name: str
    ds: dt.date
    stats: TableStats | None = None

    def rows(self, zone: str | None = None, name: str | None = None) -> DataFrame:
        return table_reads.read(self.spark, zone or self.zone, name or self.name, since=self.ds, upto=self.ds)

    def table_stats(self) -> TableStats:
        if self.stats is None:
            self.stats = TableStats(self.spark, self.zone, self.name, [self.ds])
        return self.stats

    def row_count(self) -> int:
        return self.table_stats().rows.get(self.ds, 0)

    def published_counts(self) -> dict[dt.date, int]:
        """Rows per date on main (what readers see), dates before ds."""
        return {d: n for d, n in self.table_stats().published().items() if d < self.ds}


def _offending(df: DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (str(v) if v is not None else None) for k, v in r.asDict().items()}
        for r in df.limit(OFFENDING_ROWS).collect()
    ]


# ---- the checks --------------------------------------------------------------------------------
def key_unique_not_null(
    ctx: Context, columns: list[str], nullable: list[str] = ()
) -> tuple[bool, dict, list, str]:
    required = tuple(c for c in columns if c not in nullable)
    n_nulls, n_dupes = ctx.table_stats().keys(tuple(columns), required).get(ctx.ds, (0, 0))
    numbers = {"rows": ctx.row_count(), "null_keys": n_nulls, "duplicated_keys": n_dupes}
    if n_nulls == 0 and n_dupes == 0:
        return True, numbers, [], ""
    rows = ctx.rows()  # only a failed check reads its date's rows again, for the offending ones
    nulls = rows.filter(" OR ".join(f"`{c}` IS NULL" for c in required)) if required else rows.limit(0)
    dupes = rows.groupBy(*columns).count().filter("count > 1")
    bad = _offending(nulls.select(*columns)) + _offending(dupes)
    return False, numbers, bad[:OFFENDING_ROWS], ""


def row_count_vs_history(ctx: Context, band: list[float], allow_empty: bool = False, min_history: int = 3):
    today = ctx.row_count()
    history = ctx.published_counts()
    recent = [history[d] for d in sorted(history)[-HISTORY_DAYS:] if history[d] > 0 or not allow_empty]
    if allow_empty:
        recent = [n for n in recent if n > 0]
        if today == 0:
            return None, {"rows": 0}, [], "a day without data is allowed for this table"
    if len(recent) < min_history:
        return (
            None,
            {"rows": today, "history_days": len(recent)},
            [],
            f"fewer than {min_history} published dates",
        )
    median = statistics.median(recent)
    low, high = band[0] * median, band[1] * median
    numbers = {"rows": today, "median_last_7": median, "low": round(low, 3), "high": round(high, 3)}
    return low <= today <= high, numbers, [], ""


def pagerank_sums_to_one(ctx: Context, tolerance: float):
    total = ctx.rows().agg(F.sum("pagerank")).first()[0] or 0.0
    return abs(total - 1.0) <= tolerance, {"sum": total, "tolerance": tolerance}, [], ""


def rolling_avg_is_sum_over_count(ctx: Context, tolerance: float):
    rows = ctx.rows()
    expected = F.col("rolling_30d_sum").cast("double") / F.col("rolling_30d_count")
    bad = rows.filter(
        (F.col("rolling_30d_count") == 0)
        | (F.abs(F.col("rolling_30d_avg") - expected) > F.lit(tolerance) * F.abs(expected))
    )
    n = bad.count()
    cols = ["region", "rolling_30d_sum", "rolling_30d_count", "rolling_30d_avg"]
    return n == 0, {"rows": rows.count(), "wrong": n}, _offending(bad.select(*cols)), ""


def k_segments_none_empty(ctx: Context, k: int):
    sizes = {r.segment: int(r["count"]) for r in ctx.rows().groupBy("segment").count().collect()}
    numbers = {"segments": len(sizes), "k": k, "sizes": {str(s): n for s, n in sorted(sizes.items())}}
    ok = sorted(sizes) == list(range(k)) and all(n > 0 for n in sizes.values())
    return ok, numbers, [], ""


def return_1d_finite(ctx: Context):
    rows = ctx.rows()
    value = F.col("return_1d")
    bad = rows.filter(value.isNotNull() & (F.isnan(value) | (F.abs(value) == float("inf"))))
    n = bad.count()
    return n == 0, {"rows": rows.count(), "not_finite": n}, _offending(bad.select("ticker", "return_1d")), ""


def customers_in_features(ctx: Context):
    segments = ctx.rows().select("customer_id")
    features = ctx.rows("curated", "customer_features").select("customer_id")
    missing = segments.join(features, "customer_id", "left_anti")
    n = missing.count()
    return n == 0, {"customers": segments.count(), "missing_from_features": n}, _offending(missing), ""


def quarantine_share(ctx: Context, warn: float, error: float):
    kept = ctx.row_count()
    rejected = ctx.table_stats().quarantined().get(ctx.ds, 0) if ctx.zone == "processed" else 0
    total = kept + rejected
    share = rejected / total if total else 0.0
    numbers = {
        "rows": total,
        "quarantined": rejected,
        "share": round(share, 6),
        "warn_above": warn,
        "error_above": error,
    }
    if share > error:
        return False, numbers, [], "error"
    if share > warn:
        return False, numbers, [], "warn"
    return True, numbers, [], ""


KINDS: dict[str, Callable[..., tuple]] = {
    "key_unique_not_null": key_unique_not_null,
    "row_count_vs_history": row_count_vs_history,
    "pagerank_sums_to_one": pagerank_sums_to_one,
    "rolling_avg_is_sum_over_count": rolling_avg_is_sum_over_count,
    "k_segments_none_empty": k_segments_none_empty,
    "return_1d_finite": return_1d_finite,
    "customers_in_features": customers_in_features,
    "quarantine_share": quarantine_share,
}


def run_check(ctx: Context, check: dict[str, Any]) -> Result:
    result = Result(f"{ctx.zone}.{ctx.name}", check["name"], check["severity"], str(ctx.ds), "pass")
    passed, numbers, rows, note = KINDS[check["kind"]](ctx, **check.get("params", {}))
    result.numbers, result.rows = numbers, rows
    if passed is None:
        result.status, result.note = "skipped", note
    elif not passed:
        result.status = "fail"
        if note in ("warn", "error"):  # a check with its own thresholds says how bad it is
            result.severity = note if check["severity"] == "error" else check["severity"]
        else:
            result.note = note
    return result


def audit(spark: SparkSession, spec: dict[str, list[dict[str, Any]]]) -> list[Result]:
    """Every check of every table the branch holds, on each date the branch's commits replaced
    (a nightly run's history ingest and a backfill's range included)."""
    branch = table_history.wap_branch(spark)
    results = []
    for table_name, checks in sorted(spec.items()):
        zone, name = table_name.split(".", 1)
        ident = tables.identifier(spark, zone, name)
        if not spark.catalog.tableExists(ident):
            continue  # this run did not write it
        dates = table_history.branch_dates(spark, ident, branch)
        stats = TableStats(spark, zone, name, dates) if dates else None
        for ds in dates:
            ctx = Context(spark, zone, name, ds, stats)
            for check in checks:
                result = run_check(ctx, check)
                log.warning("audit: %s", result.line())
                for row in result.rows if result.status == "fail" else ():
                    log.warning("audit:   offending row: %s", json.dumps(row, sort_keys=True))
                results.append(result)
    return results


def run(spark: SparkSession, args) -> dict:
    branch = table_history.wap_branch(spark)
    if not branch:
        raise JobInputError("audit needs --branch (the run's branch holds what it checks)")
    if not path_exists(spark, args.checks_uri):
        raise JobInputError(f"--checks-uri {args.checks_uri}: cannot read the run's checks (no such file)")
    try:
        spec = json.loads(read_text(spark, args.checks_uri))
        unknown = {c["kind"] for checks in spec.values() for c in checks} - set(KINDS)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise JobInputError(f"{args.checks_uri} is not the checks' JSON: {exc}") from None
    if unknown:
        raise JobInputError(f"{args.checks_uri} names unknown kinds of check: {sorted(unknown)}")
    results = audit(spark, spec)
    record = [asdict(r) | {"blocks": r.blocks} for r in results]
    write_text(
        spark,
        audit_uri(args.lake, args.ds, branch),
        json.dumps(record, indent=2, sort_keys=True, default=str),
    )
    strict = bool(getattr(args, "warnings_block", False))
    failed = [r for r in results if r.blocks or (strict and r.status == "fail")]
    summary = {
        "checks": len(results),
        "passed": sum(r.status == "pass" for r in results),
        "warnings": sum(r.status == "fail" and r.severity == "warn" for r in results),
        "errors": len(failed),
        "skipped": sum(r.status == "skipped" for r in results),
    }
    metrics = {"rows_in": {}, "rows_out": {}, "rows_quarantined": 0, "audit": summary, "branch": branch}
    if failed:
        metrics["failed_checks"] = [r.line() for r in failed]
        metrics["exit_code"] = EXIT_AUDIT_FAILED
    return metrics
