"""The audit job: each declared check catches what it is for on the run's branch, passes good
output, and never looks at what readers see except as history.

Through the job, every table is written the way the jobs write it (spark_jobs.tables, to the
branch when the session has one); the checks file is what the plan writes (include/checks.py);
what the audit decided is read back from its results file and compared with numbers worked
out here. The invariant checks (PageRank's sum, the rolling average, the segments, finite
returns), which read nothing but their date's rows, are also held on small in-memory rows,
declared as the plan declares them: the rule without a lake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from include.checks import AuditSettings, checks_json, tables_of
from spark_jobs import audit, tables
from spark_jobs.common import JobInputError
from spark_jobs.paths import audit_uri
from spark_jobs.schemas import CURATED
from tests.harness.lake_tables import read_table, seed_rows

BRANCH = "audit_manual__2024-06-04"
D1, D2, D3, D4 = (dt.date(2024, 6, d) for d in (1, 2, 3, 4))


@pytest.fixture
def session(lake_spark):
    """The lake's session; each test writes main first, then the run's branch (see `on_branch`)."""
    yield lake_spark
    lake_spark.conf.unset(tables.WAP_BRANCH)


def on_branch(spark) -> None:
    spark.conf.set(tables.WAP_BRANCH, BRANCH)


def run_audit(spark, lake, steps, *, dates=(D4,), settings=None, warnings_block=False):
    """The audit as its step runs it: the plan's checks file, then the job; (metrics, results)."""
    uri = audit_uri(lake, dates[-1], BRANCH, "checks")
    path = Path(uri.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(checks_json(settings or AuditSettings(), tables_of(steps)))
    on_branch(spark)
    args = argparse.Namespace(
        lake=lake, ds=dates[-1], dates=list(dates), checks_uri=uri, warnings_block=warnings_block
    )
    metrics = audit.run(spark, args)
    results = json.loads(Path(audit_uri(lake, dates[-1], BRANCH).removeprefix("file://")).read_text())
    return metrics, results


def result(results, table, check, ds=D4):
    [found] = [r for r in results if (r["table"], r["check"], r["ds"]) == (table, check, str(ds))]
    return found


def graph_rows(ranks, ds=D4):
    return [(f"c{i}", rank, "c0", ds) for i, rank in enumerate(ranks)]


def test_good_output_passes_every_check_and_the_audit_does_not_fail(session, lake):
    for day in (D1, D2, D3):  # three published dates of history
        seed_rows(session, lake, "curated", "referral_graph", graph_rows([0.25] * 4, day))
    on_branch(session)
    seed_rows(session, lake, "curated", "referral_graph", graph_rows([0.4, 0.3, 0.2, 0.1]))

    metrics, results = run_audit(session, lake, ["graph"])

    assert {r["check"]: r["status"] for r in results} == {
        "key_unique_not_null": "pass",
        "row_count_vs_history": "pass",
        "pagerank_sums_to_one": "pass",
    }
    assert result(results, "curated.referral_graph", "row_count_vs_history")["numbers"] == {
        "rows": 4, "median_last_7": 4, "low": 2.0, "high": 8.0,
    }  # fmt: skip
    assert "exit_code" not in metrics
    assert metrics["audit"] == {"checks": 3, "passed": 3, "warnings": 0, "errors": 0, "skipped": 0}


def test_duplicated_and_null_keys_fail_with_the_offending_keys(session, lake):
    on_branch(session)
    rows = [*graph_rows([0.25, 0.25, 0.25]), ("c1", 0.25, "c0", D4), (None, 0.0, "c0", D4)]
    seed_rows(session, lake, "curated", "referral_graph", rows)

    metrics, results = run_audit(session, lake, ["graph"])

    found = result(results, "curated.referral_graph", "key_unique_not_null")
    assert (found["status"], found["severity"]) == ("fail", "error")
    assert found["numbers"] == {"rows": 5, "null_keys": 1, "duplicated_keys": 1}
    assert {"customer_id": None} in found["rows"]
    assert {"customer_id": "c1", "count": "2"} in found["rows"]
    assert metrics["exit_code"] == audit.EXIT_AUDIT_FAILED
    assert any("key_unique_not_null" in line for line in metrics["failed_checks"])


@dataclass
class _Rows(audit.Context):
    """A check's view of its date's rows, given in memory instead of read from the run's branch:
    the invariant checks read nothing else (spark_jobs.audit.Context.rows)."""

    frames: dict[tuple[str, str], Any] = field(default_factory=dict)

    def rows(self, zone: str | None = None, name: str | None = None):
        return self.frames[(zone or self.zone, name or self.name)]


def check_rows(
    spark, table: str, check: str, rows: dict[str, list[tuple] | Any], settings=None
) -> audit.Result:
    """One declared check of `table` (as the plan declares it) on in-memory rows of D4 per table
    (tuples, or a DataFrame of them from `frame`)."""
    frames = {
        tuple(t.split(".")): r if not isinstance(r, list) else frame(spark, t, r) for t, r in rows.items()
    }
    zone, name = table.split(".")
    return audit.run_check(_Rows(spark, zone, name, D4, frames=frames), _declared(table, check, settings))


def frame(spark, table: str, rows: list[tuple]):
    """Rows of a curated table (its contract's columns, then dt) as an in-memory DataFrame."""
    return spark.createDataFrame(rows, tables.with_dt(CURATED[table.split(".")[1]])).cache()


def test_pagerank_that_does_not_sum_to_one_fails(spark):
    found = check_rows(spark, "curated.referral_graph", "pagerank_sums_to_one", {
        "curated.referral_graph": graph_rows([0.5, 0.3]),
    })  # fmt: skip
    passed = check_rows(spark, "curated.referral_graph", "pagerank_sums_to_one", {
        "curated.referral_graph": graph_rows([0.5, 0.3, 0.2]),
    })  # fmt: skip

    assert (found.status, found.severity, found.blocks) == ("fail", "error", True)
    assert found.numbers["sum"] == pytest.approx(0.8)
    assert passed.status == "pass"


HISTORY = {D1: 10, D2: 12, D3: 14}  # rows published on main per date: median 12, the band 6..24


class _Counts:
    """All the row count check reads of a table (spark_jobs.audit.Context): the date's rows on the
    branch, and main's rows per earlier date. The rule itself needs no lake."""

    zone, name, ds = "curated", "referral_graph", D4

    def __init__(self, today: int, published: dict[dt.date, int]) -> None:
        self.today, self.published = today, published

    def row_count(self) -> int:
        return self.today

    def published_counts(self) -> dict[dt.date, int]:
        return self.published


def _declared(table: str, check: str, settings: AuditSettings | None = None) -> dict:
    """The check as the plan's checks file declares it (include/checks.py)."""
    spec = json.loads(checks_json(settings or AuditSettings(), [table]))
    [found] = [c for c in spec[table] if c["name"] == check]
    return found


@pytest.mark.parametrize(("today", "status"), [(5, "fail"), (6, "pass"), (24, "pass"), (25, "fail")])
def test_row_count_outside_the_band_around_the_median_of_published_dates_fails(today, status):
    check = _declared("curated.referral_graph", "row_count_vs_history")

    found = audit.run_check(_Counts(today, HISTORY), check)

    assert (found.status, found.severity) == (status, "error")
    assert found.numbers == {"rows": today, "median_last_7": 12, "low": 6.0, "high": 24.0}


def test_a_row_count_outside_the_band_fails_the_audit_job_on_the_branch(session, lake):
    """The rule above through the job: history on main, the run's date on its branch."""
    for day, n in HISTORY.items():
        seed_rows(session, lake, "curated", "referral_graph", graph_rows([1 / n] * n, day))
    on_branch(session)
    seed_rows(session, lake, "curated", "referral_graph", graph_rows([1 / 25] * 25))

    metrics, results = run_audit(session, lake, ["graph"])

    found = result(results, "curated.referral_graph", "row_count_vs_history")
    assert found["status"] == "fail"
    assert found["numbers"] == {"rows": 25, "median_last_7": 12, "low": 6.0, "high": 24.0}
    assert metrics["exit_code"] == audit.EXIT_AUDIT_FAILED


def test_row_count_is_skipped_with_a_note_while_fewer_than_three_dates_are_published(session, lake):
    for day in (D2, D3):
        seed_rows(session, lake, "curated", "referral_graph", graph_rows([0.5, 0.5], day))
    on_branch(session)
    seed_rows(session, lake, "curated", "referral_graph", graph_rows([1.0]))

    metrics, results = run_audit(session, lake, ["graph"])

    found = result(results, "curated.referral_graph", "row_count_vs_history")
    assert (found["status"], found["note"]) == ("skipped", "fewer than 3 published dates")
    assert found["numbers"] == {"rows": 1, "history_days": 2}
    assert "exit_code" not in metrics


def test_the_band_is_a_setting():
    settings = AuditSettings(row_count_band=(0.9, 1.1))
    check = _declared("curated.referral_graph", "row_count_vs_history", settings)

    found = audit.run_check(_Counts(8, {D1: 10, D2: 10, D3: 10}), check)

    assert (found.status, found.numbers["low"], found.numbers["high"]) == ("fail", 9.0, 11.0)


def _rolling(region, total, count, avg, ds=D4):
    return (region, ds, Decimal("1.00"), 1, Decimal(total), count, avg, ds)


def test_rolling_average_that_is_not_sum_over_count_fails_naming_the_region(spark):
    rows = [_rolling("EU", "300.00", 3, 100.0), _rolling("US", "300.00", 4, 100.0)]

    found = check_rows(spark, "curated.sales_rolling_30d", "rolling_avg_is_sum_over_count", {
        "curated.sales_rolling_30d": rows,
    })  # fmt: skip

    assert found.status == "fail"
    assert found.numbers == {"rows": 2, "wrong": 1}
    assert [r["region"] for r in found.rows] == ["US"]


def _segment(customer, segment, ds=D4):
    return (customer, Decimal("10.00"), 1, 10.0, 3, segment, ds)


def _features(*customers, ds=D4):
    return [(c, "EU", Decimal("10.00"), 1, 10.0, 0.0, ds, 3, 0.1, "c", [10.0, 1.0, 10.0, 0.0, 3.0, 0.1], ds)
            for c in customers]  # fmt: skip


def test_segments_must_be_exactly_k_none_empty_and_all_in_features(spark):
    features = frame(spark, "curated.customer_features", _features("a", "b", "c"))
    segments = [_segment("a", 0), _segment("b", 1), _segment("c", 1), _segment("x", 1)]
    good = [_segment("a", 0), _segment("b", 1), _segment("c", 2)]
    found = {}
    for name, rows in (("bad", segments), ("good", good)):
        tables_ = {
            "curated.customer_features": features,
            "curated.customer_segments": frame(spark, "curated.customer_segments", rows),
        }
        for check in ("k_segments_none_empty", "customers_in_features"):
            found[name, check] = check_rows(spark, "curated.customer_segments", check, tables_)

    k, missing = found["bad", "k_segments_none_empty"], found["bad", "customers_in_features"]
    assert k.status == "fail"
    assert k.numbers == {"segments": 2, "k": 3, "sizes": {"0": 1, "1": 3}}
    assert missing.status == "fail"
    assert missing.numbers == {"customers": 4, "missing_from_features": 1}
    assert missing.rows == [{"customer_id": "x"}]
    assert {found["good", c].status for c in ("k_segments_none_empty", "customers_in_features")} == {"pass"}


def test_a_return_that_is_not_finite_fails(spark):
    nan = float("nan")
    rows = [("AAA", D4, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1, r, None, None, D4) for r in (0.01,)]
    rows += [("BBB", D4, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1, nan, None, None, D4)]
    rows += [("CCC", D4, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1, None, None, None, D4)]  # first day: null is fine

    found = check_rows(spark, "curated.stock_daily", "return_1d_finite", {"curated.stock_daily": rows})

    assert (found.status, found.numbers) == ("fail", {"rows": 3, "not_finite": 1})
    assert found.rows == [{"ticker": "BBB", "return_1d": "nan"}]


def _customers(n, ds=D4):
    return [(f"c{i}", "EU", ds, ds) for i in range(n)]


def _quarantined(n, ds=D4):
    return [(f"q{i}", "EU", "not a date", "bad signup_date", None, ds) for i in range(n)]


@pytest.mark.parametrize(
    ("quarantined", "status", "severity", "blocks"),
    [(1, "pass", "error", False), (2, "fail", "warn", False), (11, "fail", "error", True)],
)
def test_quarantine_share_warns_above_one_percent_and_blocks_above_ten(
    session, lake, quarantined, status, severity, blocks
):
    on_branch(session)
    seed_rows(session, lake, "processed", "customers", _customers(100 - quarantined))
    seed_rows(session, lake, "quarantine", "customers", _quarantined(quarantined))

    metrics, results = run_audit(session, lake, ["ingest_customers"])

    found = result(results, "processed.customers", "quarantine_share")
    assert (found["status"], found["severity"], found["blocks"]) == (status, severity, blocks)
    assert found["numbers"]["share"] == pytest.approx(quarantined / 100)
    assert ("exit_code" in metrics) is blocks


def test_a_warning_blocks_only_when_the_run_asks_for_a_clean_audit(session, lake):
    on_branch(session)
    seed_rows(session, lake, "processed", "customers", _customers(95))
    seed_rows(session, lake, "quarantine", "customers", _quarantined(5))

    metrics, _ = run_audit(session, lake, ["ingest_customers"], warnings_block=True)

    assert metrics["exit_code"] == audit.EXIT_AUDIT_FAILED
    assert metrics["audit"]["warnings"] == 1


def test_a_severity_setting_turns_an_error_into_a_warning(spark):
    settings = AuditSettings(severities={"pagerank_sums_to_one": "warn"})

    found = check_rows(spark, "curated.referral_graph", "pagerank_sums_to_one", {
        "curated.referral_graph": graph_rows([0.5, 0.3]),
    }, settings)  # fmt: skip

    assert (found.status, found.severity, found.blocks) == ("fail", "warn", False)


def test_only_the_branch_is_checked_and_main_is_left_as_it_was(session, lake):
    for day in (D1, D2, D3):
        seed_rows(session, lake, "curated", "referral_graph", graph_rows([0.25] * 4, day))
    main_before = read_table(lake, "curated", "referral_graph")
    on_branch(session)
    seed_rows(session, lake, "curated", "referral_graph", graph_rows([0.9]))  # bad, on the branch only

    metrics, results = run_audit(session, lake, ["graph"])

    assert metrics["exit_code"] == audit.EXIT_AUDIT_FAILED
    assert result(results, "curated.referral_graph", "pagerank_sums_to_one")["status"] == "fail"
    # readers (pyiceberg reads main) see exactly what they saw before the run
    after = read_table(lake, "curated", "referral_graph")
    assert (
        after.sort_values(["dt", "customer_id"])
        .reset_index(drop=True)
        .equals(main_before.sort_values(["dt", "customer_id"]).reset_index(drop=True))
    )


def test_a_table_the_run_did_not_write_is_not_checked(session, lake):
    seed_rows(session, lake, "curated", "referral_graph", graph_rows([0.5, 0.3]))  # main only

    metrics, results = run_audit(session, lake, ["graph"])

    assert results == []
    assert metrics["audit"]["checks"] == 0


def test_an_unreadable_or_wrong_checks_file_is_a_bad_input(session, lake):
    on_branch(session)
    args = argparse.Namespace(
        lake=lake, ds=D4, dates=[D4], checks_uri=f"{lake}/nowhere.json", warnings_block=False
    )
    with pytest.raises(JobInputError, match="cannot read the run's checks"):
        audit.run(session, args)
    bad = Path(lake.removeprefix("file://")) / "bad.json"
    bad.write_text(
        json.dumps({"curated.referral_graph": [{"kind": "made_up", "name": "x", "severity": "error"}]})
    )
    args.checks_uri = bad.as_uri()
    with pytest.raises(JobInputError, match="unknown kinds of check: \\['made_up'\\]"):
        audit.run(session, args)
