"""The run report's numbers as CloudWatch metrics: one namespace, dimensions DAG, Target, Step and
Output, published by the `run_report` task with PutMetricData (the EMR target only; a local run
keeps the same numbers in its report). The stack's dashboard and alarms (infra/template.py) name
their metrics through this module, so what is published and what is watched cannot drift apart.

Pure except `publish` (a boto3 CloudWatch client is handed in).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from include import pipeline as P
from include.run_report.model import FAILED_STATES, output_name, run_cost

TARGET = "emr"  # the only target that publishes (the stack's dashboard and alarms watch it)
PUT_METRIC_DATA_LIMIT = 1000  # datums per PutMetricData call (CloudWatch's limit)

# Dimensions, from the coarsest: a run's metrics carry DAG and Target, a step's also Step, an
# output's also Output (the table as the catalog names it: processed.sales, curated.stock_daily).
DAG, TARGET_DIM, STEP, OUTPUT = "DAG", "Target", "Step", "Output"

# name -> (unit, what it is). The README's metric table is this one.
METRICS: dict[str, tuple[str, str]] = {
    # per run: DAG, Target
    "RunSucceeded": ("Count", "1 when the run succeeded, else 0"),
    "RunFailed": ("Count", "1 when the run failed (a step, the audit or publish), else 0"),
    "RunDurationSeconds": ("Seconds", "from the run's start to its report (the last task)"),
    "SecondsPastDeadline": (
        "Seconds",
        "scheduled nightly runs only: finished minus PIPELINE_ALERT_DEADLINE_UTC on D+1 (negative: early)",
    ),
    "AuditErrors": ("Count", "the audit's failed checks of severity error (when the audit ran)"),
    "AuditWarnings": ("Count", "the audit's failed checks of severity warn (when the audit ran)"),
    "EstimatedCost": (
        "None",
        "the run's estimated cost in USD: its EMR clusters (include/instance_prices.json) and "
        "EMR Serverless job runs (include/serverless_prices.json)",
    ),
    # per step: DAG, Target, Step
    "StepFailed": ("Count", "1 when the step failed, 0 when it succeeded (a skipped step: none)"),
    "StepDurationSeconds": ("Seconds", "the job's own duration (EMR's step time when it left none)"),
    "RowsIn": ("Count", "rows the step's job read"),
    "RowsOut": ("Count", "rows it wrote (per step; with Output: per table)"),
    "RowsQuarantined": ("Count", "rows it rejected to quarantine.<dataset>"),
    # per output: DAG, Target, Step, Output (RowsOut too)
    "QuarantineShare": (
        "None",
        "ingest outputs: rejected / (kept + rejected) over the run's dates, the audit's quarantine_share",
    ),
}

RUN_METRICS = (
    "RunSucceeded",
    "RunFailed",
    "RunDurationSeconds",
    "SecondsPastDeadline",
    "AuditErrors",
    "AuditWarnings",
    "EstimatedCost",
)
STEP_METRICS = ("StepFailed", "StepDurationSeconds", "RowsIn", "RowsOut", "RowsQuarantined")
OUTPUT_METRICS = ("RowsOut", "QuarantineShare")


def dimensions(dag_id: str, step: str | None = None, output: str | None = None) -> list[dict[str, str]]:
    """The dimensions of a run's (no step), a step's or an output's metric, in CloudWatch's shape."""
    dims = [{"Name": DAG, "Value": dag_id}, {"Name": TARGET_DIM, "Value": TARGET}]
    if step is not None:
        dims.append({"Name": STEP, "Value": step})
    if output is not None:
        dims.append({"Name": OUTPUT, "Value": output})
    return dims


def metric(name: str, dag_id: str, step: str | None = None, output: str | None = None) -> dict[str, Any]:
    """A metric's identity (MetricName and Dimensions): what a dashboard widget or an alarm names."""
    level = RUN_METRICS if step is None else STEP_METRICS if output is None else OUTPUT_METRICS
    if name not in level:
        raise KeyError(f"{name} is not published with {'Output' if output else 'Step' if step else 'DAG'}")
    return {"MetricName": name, "Dimensions": dimensions(dag_id, step, output)}


def pipeline_outputs() -> list[tuple[str, str]]:
    """(step, output table) of every output a nightly run writes, in the spec's order."""
    ingested = [(s.name, output_name(s.name, s.options[1])) for s in P.PIPELINE if s.job == "ingest"]
    curated = [(s.name, output_name(s.name, out)) for s in P.PIPELINE for out in s.produces]
    return ingested + curated


def _datum(name: str, value: float, dag_id: str, step: str | None = None, output: str | None = None) -> dict:
    return {**metric(name, dag_id, step, output), "Value": float(value), "Unit": METRICS[name][0]}


def _sum(values: Sequence[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return float(sum(present)) if present else None


def metric_data(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The datums of a run (PutMetricData's MetricData, without the timestamp), from its report.

    A step that ran for several dates (a backfill) is summed over them; a step that did not run
    (skipped, or never started because an earlier one failed) has no datum, nor do numbers the
    report does not hold (no audit, no cost, not a scheduled run)."""
    dag_id = report["dag_id"]
    failed = report["state"] != "success"
    data = [
        _datum("RunSucceeded", 0 if failed else 1, dag_id),
        _datum("RunFailed", 1 if failed else 0, dag_id),
    ]
    run = report.get("run") or {}
    for name, key in (
        ("RunDurationSeconds", "duration_seconds"),
        ("SecondsPastDeadline", "seconds_past_deadline"),
    ):
        if run.get(key) is not None:
            data.append(_datum(name, run[key], dag_id))
    checks = report.get("checks")
    if checks is not None:
        data += [
            _datum("AuditErrors", checks["errors"], dag_id),
            _datum("AuditWarnings", checks["warnings"], dag_id),
        ]
    cost, _ = run_cost(report)  # every cluster of the run (a repaired run has several)
    if cost is not None:
        data.append(_datum("EstimatedCost", cost, dag_id))
    for step, rows in _by_step(report["steps"]):
        data += _step_data(dag_id, step, rows)
    return data


def _by_step(steps: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    """The report's rows of each step that ran (succeeded or failed), in the report's order."""
    seen: dict[str, list[Mapping[str, Any]]] = {}
    for row in steps:
        if row["state"] in ("success", "failed"):
            seen.setdefault(row["step"], []).append(row)
    yield from seen.items()


def _step_data(dag_id: str, step: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    failed = any(r["state"] in FAILED_STATES for r in rows)
    data = [_datum("StepFailed", 1 if failed else 0, dag_id, step)]
    seconds = _sum([_seconds(r) for r in rows])
    if seconds is not None:
        data.append(_datum("StepDurationSeconds", seconds, dag_id, step))
    if step not in P.STEPS:  # the audit and publish read and write no rows of their own
        return data
    succeeded = [r for r in rows if r["state"] == "success" and r.get("rows_out") is not None]
    if not succeeded:
        return data
    for name, key in (
        ("RowsIn", "rows_in"),
        ("RowsOut", "rows_out"),
        ("RowsQuarantined", "rows_quarantined"),
    ):
        data.append(_datum(name, _sum([r.get(key) or 0 for r in succeeded]) or 0, dag_id, step))
    per_output: dict[str, float] = {}
    for r in succeeded:
        for output, n in (r.get("rows_out_by_output") or {}).items():
            table = output_name(step, output)
            per_output[table] = per_output.get(table, 0) + int(n)
    for table, n in per_output.items():
        data.append(_datum("RowsOut", n, dag_id, step, table))
    if P.STEPS[step].job == "ingest":  # one dataset, one table
        table = output_name(step, P.STEPS[step].options[1])
        kept = per_output.get(table, 0)
        rejected = sum(r.get("rows_quarantined") or 0 for r in succeeded)
        if kept + rejected:
            data.append(_datum("QuarantineShare", rejected / (kept + rejected), dag_id, step, table))
    return data


def _seconds(row: Mapping[str, Any]) -> float | None:
    if row.get("duration_seconds") is not None:
        return row["duration_seconds"]
    return (row.get("emr_step") or {}).get("seconds")


def publish(client: Any, namespace: str, data: Sequence[Mapping[str, Any]], timestamp: Any) -> int:
    """PutMetricData of `data` at `timestamp` (the run's end), in calls of at most CloudWatch's
    limit; returns how many datums were sent. Raises what boto3 raises."""
    stamped = [{**d, "Timestamp": timestamp} for d in data]
    for at in range(0, len(stamped), PUT_METRIC_DATA_LIMIT):
        client.put_metric_data(Namespace=namespace, MetricData=stamped[at : at + PUT_METRIC_DATA_LIMIT])
    return len(stamped)
