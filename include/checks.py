"""The audit's checks, declared once beside the pipeline spec: per table, named checks with a severity.

`error` blocks publishing (the run fails, main stays as it was, the branch is kept for a
person to look at); `warn` only reports, unless the run's form asks for a clean audit
(`publish_despite_warnings` off). The checks run in Spark on the run's branch (spark_jobs/audit.py
implements each kind); `checks_json` is what the plan writes for the audit step to read (`--checks-uri`).

Every table gets its key check (unique, not null, as the data contract names keys) and its row
count against history; the processed datasets their quarantine share; some outputs an invariant
of the contract. Settings (PIPELINE_AUDIT_*) tune the bands and may change a check's severity;
a wrong one fails the DAG import naming the setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include import pipeline as P

SEVERITIES = ("error", "warn")

# The contract's keys (curated: one row per these; processed: what ingest deduplicates by).
# Columns in `nullable` may be null (e.g. sales of customers without a region, kept under null).
KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "curated.referral_graph": (("customer_id",), ()),
    "curated.customer_features": (("customer_id",), ()),
    "curated.feature_correlation": (("feature_a", "feature_b"), ()),
    "curated.sales_rolling_30d": (("region",), ("region",)),
    "curated.customer_segments": (("customer_id",), ()),
    "curated.stock_daily": (("ticker",), ()),
    "curated.clickstream_checkouts": (("user_id", "window_start"), ("user_id",)),
    "processed.customers": (("customer_id",), ()),
    "processed.sales": (("transaction_id",), ()),
    "processed.referrals": (("referrer_id", "referred_id", "referral_ts"), ()),
    "processed.stock_ticks": (("ticker", "trade_ts"), ()),
    "processed.clickstream": (("event_id",), ()),
}
# A day without rows is normal for these (market closed, no traffic).
MAY_BE_EMPTY = frozenset(
    {"curated.stock_daily", "curated.clickstream_checkouts", "processed.stock_ticks", "processed.clickstream"}
)
# Invariants of the contract, per output: (check name, kind, params).
INVARIANTS: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    "curated.referral_graph": (("pagerank_sums_to_one", "pagerank_sums_to_one", {"tolerance": 1e-6}),),
    "curated.sales_rolling_30d": (
        ("rolling_avg_is_sum_over_count", "rolling_avg_is_sum_over_count", {"tolerance": 1e-9}),
    ),
    "curated.customer_segments": (
        ("k_segments_none_empty", "k_segments_none_empty", {"k": 3}),
        ("customers_in_features", "customers_in_features", {}),
    ),
    "curated.stock_daily": (("return_1d_finite", "return_1d_finite", {}),),
}


@dataclass(frozen=True)
class Check:
    name: str
    kind: str
    severity: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditSettings:
    row_count_band: tuple[float, float] = (0.5, 2.0)
    quarantine_warn: float = 0.01
    quarantine_error: float = 0.10
    severities: Mapping[str, str] = field(default_factory=dict)  # check name -> severity


def declared(audit: AuditSettings) -> dict[str, tuple[Check, ...]]:
    """Every table's checks, with the settings' bands and severities."""
    out: dict[str, tuple[Check, ...]] = {}
    for table, (columns, nullable) in KEYS.items():
        checks = [
            Check("key_unique_not_null", "key_unique_not_null", "error",
                  {"columns": list(columns), "nullable": list(nullable)}),
            Check("row_count_vs_history", "row_count_vs_history", "error",
                  {"band": list(audit.row_count_band), "allow_empty": table in MAY_BE_EMPTY}),
        ]  # fmt: skip
        if table.startswith("processed."):
            checks.append(
                Check("quarantine_share", "quarantine_share", "error",
                      {"warn": audit.quarantine_warn, "error": audit.quarantine_error})
            )  # fmt: skip
        checks += [Check(name, kind, "error", params) for name, kind, params in INVARIANTS.get(table, ())]
        out[table] = tuple(
            Check(c.name, c.kind, audit.severities.get(c.name, c.severity), c.params) for c in checks
        )
    return out


CHECK_NAMES = frozenset(c.name for checks in declared(AuditSettings()).values() for c in checks)


def tables_of(steps: list[str]) -> list[str]:
    """The tables these pipeline steps write (the ones a run's audit covers)."""
    written = []
    for name in steps:
        step = P.STEPS[name]
        if step.job == "ingest":
            written.append(f"processed.{step.options[1]}")
        written += [f"curated.{out}" for out in step.produces]
    return written


def checks_json(audit: AuditSettings, tables: list[str]) -> str:
    """The run's checks file (the audit reads it by `--checks-uri`): the declared checks of `tables`."""
    spec = declared(audit)
    return json.dumps({t: [asdict(c) for c in spec[t]] for t in tables if t in spec}, sort_keys=True)


# ---- settings --------------------------------------------------------------------------------
def parse_band(value: str) -> tuple[float, float]:
    """`LOW..HIGH` (fractions of the median), 0 < LOW < 1 < HIGH; ValueError otherwise."""
    low, sep, high = value.partition("..")
    if not sep:
        raise ValueError(value)
    lo, hi = float(low), float(high)
    if not 0 < lo < 1 < hi:
        raise ValueError(value)
    return lo, hi


def parse_severities(value: str) -> dict[str, str]:
    """`check=severity,check2=severity` over the declared check names; ValueError naming the bad part."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, sep, severity = item.partition("=")
        name, severity = name.strip(), severity.strip()
        if not sep:
            raise ValueError(f"{item!r} is not check=severity")
        if name not in CHECK_NAMES:
            raise ValueError(f"{item!r}: no check named {name!r} (checks: {', '.join(sorted(CHECK_NAMES))})")
        if severity not in SEVERITIES:
            raise ValueError(f"{item!r}: severity must be error or warn")
        out[name] = severity
    return out


def parse_audit(env: Mapping[str, str], problems: list[str]) -> AuditSettings:
    """AuditSettings from PIPELINE_AUDIT_*; each bad value adds a problem naming its variable."""
    default = AuditSettings()
    band, severities = default.row_count_band, dict(default.severities)
    shares = {"warn": default.quarantine_warn, "error": default.quarantine_error}
    raw = env.get("PIPELINE_AUDIT_ROW_COUNT_BAND", "").strip()
    if raw:
        try:
            band = parse_band(raw)
        except ValueError:
            problems.append(
                f"PIPELINE_AUDIT_ROW_COUNT_BAND={raw!r} is not a range LOW..HIGH of the median "
                "with 0 < LOW < 1 < HIGH (e.g. 0.5..2.0)"
            )
    for level in ("warn", "error"):
        var = f"PIPELINE_AUDIT_QUARANTINE_{level.upper()}"
        raw = env.get(var, "").strip()
        if not raw:
            continue
        try:
            shares[level] = float(raw)
            if not 0 <= shares[level] <= 1:
                raise ValueError(raw)
        except ValueError:
            problems.append(f"{var}={raw!r} is not a share between 0 and 1 (e.g. 0.05)")
    if shares["warn"] > shares["error"]:
        problems.append("PIPELINE_AUDIT_QUARANTINE_WARN must not be above PIPELINE_AUDIT_QUARANTINE_ERROR")
    raw = env.get("PIPELINE_AUDIT_SEVERITIES", "").strip()
    if raw:
        try:
            severities = parse_severities(raw)
        except ValueError as exc:
            problems.append(f"PIPELINE_AUDIT_SEVERITIES: {exc}")
    return AuditSettings(band, shares["warn"], shares["error"], severities)
