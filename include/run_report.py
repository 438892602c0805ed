"""The report of every pipeline run: rows in, out and quarantined per step, durations, and on EMR
the cluster's normalized instance hours and estimated cost; written to the lake, logged as a table.

The jobs leave their numbers in `LAKE/_runs/metrics/dt=<ds>/<job>[-<dataset>].json` (spark_jobs/cli.py);
the DAGs' last task, `run_report`, joins them with the tasks' states (and on EMR the steps' timings
and the instances the cluster ran) into `LAKE/_runs/reports/dag_id=<dag>/dt=<ds>/report.json`.
Beside it, on both targets, `report.html`: per step its queue, start-up and Spark time and rows,
links to the EMR cluster, the Spark History Server and each step's logs (locally: the Airflow
task's log), rows per output and cost per run over the last 14 runs, and on a local lake charts
of the run's outputs; no script, nothing fetched. The Airflow UI shows it from the run
(plugins/run_report_view.py, a "Run report" tab). Everything except `add_run_report` and the
I/O helpers is pure and tested without Airflow.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from include import pipeline as P
from include.lake_files import lake_io, report_dates, report_uri
from spark_jobs import paths

TREND_RUNS = 14  # the report's trends: this run and the 13 before it
PAGE_XCOM_KEY = "report_page"  # run_report's XCom naming its page, read by plugins/run_report_view.py
PRICES_FILE = Path(__file__).with_name("instance_prices.json")
FAILED_STATES = ("failed", "upstream_failed")
# EMR's normalization factors by instance size (small = 1); "<n>xlarge" is 8 * n.
_SIZE_FACTORS = {"nano": 0.25, "micro": 0.5, "small": 1, "medium": 2, "large": 4, "xlarge": 8}
_NXLARGE = re.compile(r"^(\d+)xlarge$")

log = logging.getLogger(__name__)


# ---- which steps a run has -----------------------------------------------------------------
@dataclass(frozen=True)
class PlannedStep:
    """One step for one date (or, for a ranged ingest, one range) of a run."""

    step: P.Step
    label: str  # the date, or "start..end" for a ranged step (as in EMR step names)
    metrics_ds: str  # the dt= folder its metrics are filed under
    task_id: str  # the Airflow task whose state is the step's
    selected: bool = True


def metrics_name(step: P.Step) -> str:
    """`<job>[-<dataset>]`: the metrics file name the CLI uses for this step."""
    options = list(step.options)
    if "--dataset" in options:
        return f"{step.job}-{options[options.index('--dataset') + 1]}"
    return step.job


def metrics_uri(lake: str, step: P.Step, ds: str) -> str:
    """The metrics file the step's job writes for ds (spark_jobs/paths.py)."""
    dataset = step.options[step.options.index("--dataset") + 1] if "--dataset" in step.options else None
    return paths.metrics_uri(lake, step.job, ds, dataset)


def nightly_steps(ds: str, selected: Sequence[str], *, emr: bool) -> list[PlannedStep]:
    """Every pipeline step for `ds` (those the run's outputs did not need marked unselected),
    then the audit and publish of what the run wrote."""
    prefix = "wait_" if emr else "run_"
    steps = [PlannedStep(s, ds, ds, f"{prefix}{s.name}", selected=s.name in selected) for s in P.PIPELINE]
    return steps + [PlannedStep(s, ds, ds, f"{prefix}{s.name}") for s in (P.AUDIT, P.PUBLISH)]


def backfill_steps(start_ds: str, end_ds: str, dates: Sequence[str], *, emr: bool) -> list[PlannedStep]:
    """The ranged steps once for the range, then each date's steps, in the order they run."""
    task_id = "run_steps"
    ranged = [PlannedStep(s, f"{start_ds}..{end_ds}", end_ds, task_id) for s in P.PIPELINE if s.ranged]
    daily = [PlannedStep(s, ds, ds, task_id) for ds in dates for s in P.PIPELINE if not s.ranged]
    daily += [
        PlannedStep(P.AUDIT, f"{start_ds}..{end_ds}", end_ds, task_id),
        PlannedStep(P.PUBLISH, end_ds, end_ds, task_id),
    ]
    return ranged + daily


# ---- the report (pure) ---------------------------------------------------------------------
def _count(value: Any) -> int | None:
    """A metrics count: an int, or {dataset: int} summed; None when absent."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return sum(int(v) for v in value.values())
    return int(value)


def step_state(planned: PlannedStep, task_states: Mapping[str, str | None]) -> str:
    if not planned.selected:
        return "skipped"  # no requested output needs it: its task skipped itself
    return task_states.get(planned.task_id) or "no state"


def build_report(
    *,
    dag_id: str,
    run_id: str,
    target: str,
    ds: str,
    planned: Sequence[PlannedStep],
    task_states: Mapping[str, str | None],
    metrics: Mapping[tuple[str, str], Mapping[str, Any] | None],
    emr_steps: Mapping[str, Mapping[str, Any]] | None = None,
    cluster: Mapping[str, Any] | None = None,
    checks: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The run report as plain JSON-able data.

    `metrics` maps (step name, label) to the job's metrics JSON. They are used only for steps
    whose task succeeded: a file from an earlier run of the same date must not pass for this one.
    `emr_steps` maps EMR step names to {"state", "seconds"}.
    """
    steps = []
    for p in planned:
        state = step_state(p, task_states)
        row: dict[str, Any] = {"step": p.step.name, "ds": p.label, "task_id": p.task_id, "state": state}
        found = metrics.get((p.step.name, p.label)) if state == "success" else None
        if state == "success" and found is None:
            row["note"] = "no metrics file"
        if found is not None:
            row.update(
                rows_in=_count(found.get("rows_in")),
                rows_out=_count(found.get("rows_out")),
                rows_quarantined=_count(found.get("rows_quarantined")),
                duration_seconds=found.get("duration_seconds"),
                rows_in_by_input=found.get("rows_in"),
                rows_out_by_output=found.get("rows_out"),
            )
            for extra in ("duplicates_dropped", "rows_dropped_invalid", "rows_dropped_late"):
                if extra in found:
                    row[extra] = found[extra]
            timings = found.get("timings") or {}
            for key in ("queue_seconds", "startup_seconds", "spark_seconds"):
                if key in timings:
                    row[key] = timings[key]
        if emr_steps is not None:
            name = P.emr_step_name(dag_id, run_id, p.label, p.step.name)
            if name in emr_steps:
                row["emr_step"] = dict(emr_steps[name])
                # on EMR the queue is the step's: added, then PENDING until the cluster ran it
                if row["emr_step"].get("queue_seconds") is not None:
                    row["queue_seconds"] = row["emr_step"]["queue_seconds"]
        steps.append(row)

    failed = sorted({s["task_id"] for s in steps if s["state"] in FAILED_STATES})
    ran = [s for s in steps if s["state"] == "success"]
    totals = {
        "steps_succeeded": len(ran),
        "steps_failed": sum(s["state"] in FAILED_STATES for s in steps),
        "rows_quarantined": sum(s.get("rows_quarantined") or 0 for s in ran),
        "job_seconds": round(sum(s.get("duration_seconds") or 0 for s in ran), 3),
    }
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "target": target,
        "ds": ds,
        "state": "failed" if failed else "success",
        "failed_tasks": failed,
        "steps": steps,
        "totals": totals,
        "emr_cluster": dict(cluster) if cluster is not None else None,
        "checks": checks_section(checks),
    }


def check_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The checks as the log shows them: a check audited on one date is one line with its numbers;
    on several dates (a history ingest, a backfill) one line of counts, then each date where it
    failed, with its numbers and offending rows."""

    def line(c: Mapping[str, Any], label: str) -> str:
        numbers = ", ".join(f"{k}={v}" for k, v in c["numbers"].items())
        note = f" ({c['note']})" if c.get("note") else ""
        return f"  {c['status']:<7} {c['severity']:<5} {c['table']:<30} {label}: {numbers}{note}"

    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in results:
        groups.setdefault((c["table"], c["check"]), []).append(c)
    out = []
    for (table, check), found in sorted(groups.items()):
        if len(found) == 1:
            out.append(line(found[0], check))
        else:
            counts = {s: sum(c["status"] == s for c in found) for s in ("pass", "fail", "skipped")}
            said = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            out.append(f"  {'dates':<13} {table:<30} {check}: {len(found)} dates: {said}")
        for c in found:
            if c["status"] == "fail":
                if len(found) > 1:
                    out.append(line(c, f"{check} {c['ds']}"))
                out += [f"      {row}" for row in c.get("rows") or []]
    return out


def checks_section(checks: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """The audit's results (spark_jobs/audit.py) as the report shows them: every check, and counts."""
    if checks is None:
        return None
    results = [dict(c) for c in checks]
    return {
        "passed": sum(c["status"] == "pass" for c in results),
        "warnings": sum(c["status"] == "fail" and c["severity"] == "warn" for c in results),
        "errors": sum(c["status"] == "fail" and c["severity"] == "error" for c in results),
        "skipped": sum(c["status"] == "skipped" for c in results),
        "results": results,
    }


# ---- EMR usage and cost --------------------------------------------------------------------
def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def normalization_factor(instance_type: str) -> float | None:
    """EMR's normalized-instance-hour factor of an instance type (m5.xlarge -> 8), None if unknown."""
    size = instance_type.partition(".")[2]
    if size in _SIZE_FACTORS:
        return float(_SIZE_FACTORS[size])
    if m := _NXLARGE.match(size):
        return 8.0 * int(m.group(1))
    return None


def _hours(start: dt.datetime, end: dt.datetime) -> float:
    return (end - start).total_seconds() / 3600


def cluster_usage(
    cluster: Mapping[str, Any],
    instances: Sequence[Mapping[str, Any]],
    steps: Sequence[Mapping[str, Any]],
    prices: Mapping[str, Any],
) -> dict[str, Any]:
    """Normalized instance hours and estimated cost of a cluster, from boto3's DescribeCluster
    `Cluster`, ListInstances `Instances` and ListSteps `Steps`.

    Every instance the cluster ran counts, whichever group or fleet launched it: a fleet picks
    its instance types and its spot/on-demand mix when it launches, and managed scaling adds and
    removes task instances during the run. Each instance counts from its creation to its end
    (without one: the cluster's end, or while the cluster is still terminating the end of its
    last step); per instance type and market: normalized hours = instance hours x factor,
    cost = normalized hours x (hourly price / factor), i.e. instance hours x hourly price.
    """
    timeline = cluster.get("Status", {}).get("Timeline", {})
    start, end = timeline.get("CreationDateTime"), timeline.get("EndDateTime")
    source = "cluster end"
    if end is None:
        step_ends = [s["Status"]["Timeline"]["EndDateTime"] for s in steps if _step_end(s)]
        end, source = (
            (max(step_ends), "last step end (cluster still terminating)") if step_ends else (None, "")
        )
    runtime = _hours(start, end) if start is not None and end is not None else None
    table = prices.get("instances", {})
    hours: dict[tuple[str, str], list[float | None]] = {}
    for instance in instances:
        life = instance.get("Status", {}).get("Timeline", {})
        created = life.get("CreationDateTime") or start
        ended = life.get("EndDateTime") or end
        key = (instance["InstanceType"], instance.get("Market") or "ON_DEMAND")
        hours.setdefault(key, []).append(_hours(created, ended) if created and ended else None)
    rows, total_nih, total_cost, unpriced = [], 0.0, 0.0, []
    for (itype, market), spans in sorted(hours.items()):
        known = None if None in spans else sum(h for h in spans if h is not None)
        factor = normalization_factor(itype)
        price = table.get(itype)
        hourly = price["ec2"] + price["emr"] if price else None
        nih = known * factor if known is not None and factor is not None else None
        cost = nih * hourly / factor if nih is not None and hourly is not None and factor else None
        if cost is None:
            unpriced.append(itype)
        total_nih += nih or 0
        total_cost += cost or 0
        rows.append(
            {
                "instance_type": itype,
                "market": market,
                "instances": len(spans),
                "instance_hours": _round(known, 4),
                "normalization_factor": factor,
                "hourly_price": hourly,
                "normalized_instance_hours": _round(nih),
                "estimated_cost": _round(cost, 4),
            }
        )
    return {
        "cluster_id": cluster.get("Id"),
        "log_uri": cluster.get("LogUri"),
        "state": cluster.get("Status", {}).get("State"),
        "runtime_hours": _round(runtime, 4),
        "runtime_source": source,
        "instance_types": rows,
        "normalized_instance_hours": _round(total_nih) if runtime is not None else None,
        # EMR's own figure (whole hours per instance, so usually above ours); reported as is.
        "emr_normalized_instance_hours": cluster.get("NormalizedInstanceHours"),
        "estimated_cost": _round(total_cost, 4) if runtime is not None and not unpriced else None,
        "unpriced_instance_types": sorted(set(unpriced)),
        "currency": prices.get("currency"),
        "price_table": {k: prices.get(k) for k in ("region", "as_of")},
    }


def _step_end(step: Mapping[str, Any]) -> bool:
    return step.get("Status", {}).get("Timeline", {}).get("EndDateTime") is not None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def emr_step_timings(steps: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """ListSteps `Steps` -> {step name: {"id", "state", "queue_seconds", "seconds"}}: queued from
    its creation to its start (waiting for the cluster or the steps before it), then `seconds`
    from start to end (spark-submit, the JVM and the job)."""
    out = {}
    for s in steps:
        timeline = s.get("Status", {}).get("Timeline", {})
        created, start, end = (timeline.get(k) for k in ("CreationDateTime", "StartDateTime", "EndDateTime"))
        out[s["Name"]] = {
            "id": s.get("Id"),
            "state": s.get("Status", {}).get("State"),
            "queue_seconds": round((start - created).total_seconds(), 3) if created and start else None,
            "seconds": round((end - start).total_seconds(), 3) if start and end else None,
        }
    return out


def read_emr(client: Any, cluster_id: str) -> tuple[dict, list[dict], list[dict]]:
    """DescribeCluster, ListInstances (groups' and fleets' alike) and ListSteps of one cluster."""
    cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    instances = [
        i
        for page in client.get_paginator("list_instances").paginate(ClusterId=cluster_id)
        for i in page["Instances"]
    ]
    steps = [
        s for page in client.get_paginator("list_steps").paginate(ClusterId=cluster_id) for s in page["Steps"]
    ]
    return cluster, instances, steps


# ---- links: where a person looks next ------------------------------------------------------
def emr_console_url(region: str, cluster_id: str) -> str:
    """The EMR console's page of a cluster (its steps, instances and, under Applications, the
    Spark History Server: EMR's persistent application UI, which outlives the cluster)."""
    return f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{cluster_id}"


def s3_console_url(uri: str, region: str | None) -> str:
    """The S3 console's listing of a folder `s3://bucket/prefix/`."""
    bucket, _, key = re.sub(r"^s3[an]?://", "", uri).partition("/")
    query = {"region": region} if region else {}
    query["prefix"] = key.rstrip("/") + "/"
    return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?{urlencode(query)}"


def airflow_task_url(base: str, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The Airflow UI's page of a run (its grid), or of one of its task instances (its log)."""
    url = f"{base.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id, safe='')}"
    return f"{url}/tasks/{task_id}" if task_id else url


def add_links(report: dict[str, Any], *, airflow_base: str | None, region: str | None) -> dict[str, Any]:
    """The report's links, made when it is written (no call at render time): the run in Airflow,
    on EMR the cluster's console page and its Spark History Server, and per step its logs: the
    step's folder under the cluster's log URI on EMR (stderr.gz, stdout.gz), the task's log in
    Airflow (both targets)."""
    links: dict[str, str] = {}
    if airflow_base:
        links["airflow_run"] = airflow_task_url(airflow_base, report["dag_id"], report["run_id"])
    cluster = report.get("emr_cluster") or {}
    cluster_id, log_uri = cluster.get("cluster_id"), cluster.get("log_uri")
    if cluster_id and region:
        links["emr_cluster"] = emr_console_url(region, cluster_id)
        links["spark_history_server"] = links["emr_cluster"]
    for step in report["steps"]:
        if airflow_base and step["state"] != "skipped":
            step["task_log_url"] = airflow_task_url(
                airflow_base, report["dag_id"], report["run_id"], step["task_id"]
            )
        step_id = (step.get("emr_step") or {}).get("id")
        if step_id and cluster_id and log_uri:
            folder = f"{log_uri.rstrip('/')}/{cluster_id}/steps/{step_id}/"
            step["step_log_url"] = s3_console_url(folder, region)
    report["links"] = links
    return report


# ---- trends: this run against the ones before it ------------------------------------------
def output_name(step: str, output: str) -> str:
    """An output as the catalog names it: ingest writes processed.<dataset>, the others curated.*."""
    return f"{'processed' if step.startswith('ingest_') else 'curated'}.{output}"


def trends(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows per output and cost per run over `reports` (at most the last TREND_RUNS, by date).

    A run's rows of an output are what its succeeded steps wrote (summed over a backfill's dates);
    a run that did not write an output has none for it. A run without a cost (local, or a price
    missing) has None.
    """
    runs = sorted(reports, key=lambda r: r["ds"])[-TREND_RUNS:]
    rows: dict[str, dict[str, int]] = {}
    for r in runs:
        for step in r["steps"]:
            written = step.get("rows_out_by_output")
            if step["state"] != "success" or not isinstance(written, Mapping):
                continue
            for output, n in written.items():
                per_run = rows.setdefault(output_name(step["step"], output), {})
                per_run[r["ds"]] = per_run.get(r["ds"], 0) + int(n)
    return {
        "runs": [{"ds": r["ds"], "run_id": r["run_id"], "state": r["state"]} for r in runs],
        "rows": {name: rows[name] for name in sorted(rows)},
        "cost": {r["ds"]: (r.get("emr_cluster") or {}).get("estimated_cost") for r in runs},
        "currency": next(
            (r["emr_cluster"].get("currency") for r in reversed(runs) if r.get("emr_cluster")), None
        ),
    }


# ---- reading it ----------------------------------------------------------------------------
def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_table(report: Mapping[str, Any]) -> str:
    """The report as the plain-text table shown in the task log."""
    header = (
        f"{'step':<20} {'ds':<22} {'state':<15} {'rows in':>10} {'rows out':>10} "
        f"{'quarantined':>11} {'seconds':>8}"
    )
    lines = [
        f"run report: {report['dag_id']} {report['run_id']} (ds {report['ds']}, {report['target']}): "
        f"{report['state']}",
        header,
        "-" * len(header),
    ]
    for s in report["steps"]:
        seconds = s.get("duration_seconds")
        if seconds is None and s.get("emr_step"):
            seconds = s["emr_step"].get("seconds")
        lines.append(
            f"{s['step']:<20} {s['ds']:<22} {s['state']:<15} {_num(s.get('rows_in')):>10} "
            f"{_num(s.get('rows_out')):>10} {_num(s.get('rows_quarantined')):>11} {_num(seconds, 1):>8}"
            + (f"  ({s['note']})" if s.get("note") else "")
        )
    t = report["totals"]
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<20} {'':<22} {str(t['steps_succeeded']) + ' succeeded':<15} {'':>10} {'':>10} "
        f"{_num(t['rows_quarantined']):>11} {_num(t['job_seconds'], 1):>8}"
    )
    if report["failed_tasks"]:
        lines.append(f"failed: {', '.join(report['failed_tasks'])}")
    checks = report.get("checks")
    if checks:
        lines.append(
            f"checks: {checks['passed']} passed, {checks['warnings']} warnings, {checks['errors']} errors, "
            f"{checks['skipped']} skipped"
        )
        lines += check_lines(checks["results"])
    c = report.get("emr_cluster")
    if c:
        groups = ", ".join(
            f"{g['instances']} x {g['instance_type']} ({g['market']})" for g in c["instance_types"]
        )
        cost = "unknown" if c["estimated_cost"] is None else f"{c['estimated_cost']:.2f} {c['currency']}"
        lines.append(
            f"EMR cluster {c['cluster_id']} ({c['state']}): {groups}; "
            f"runtime {_num(c['runtime_hours'], 2)} h "
            f"({c['runtime_source']}); normalized instance hours {_num(c['normalized_instance_hours'], 1)} "
            f"(EMR says {c['emr_normalized_instance_hours']}); estimated cost {cost} "
            f"(price table {c['price_table']['region']} {c['price_table']['as_of']})"
        )
        if c["unpriced_instance_types"]:
            lines.append(
                f"no price for {', '.join(c['unpriced_instance_types'])}: add it to {PRICES_FILE.name}"
            )
    return "\n".join(lines)


# ---- the HTML page (local lakes) -----------------------------------------------------------
_CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
    "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "td:first-child,th:first-child{text-align:left}h2{margin-top:1.6em}.failed{color:#b00}"
    "table.steps td,table.steps th,table.trend td,table.trend th{white-space:nowrap}"
    ".note{color:#666;font-size:12px}"
)
_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def _label(value: float) -> str:
    """12,345 / 68.83 / 0.003161: whole numbers from 100 up, 4 significant digits below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def svg_bars(labels: Sequence[str], values: Sequence[float], *, title: str, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG: one <rect class="bar"> per value."""
    width, left, bar, gap = 640, 170, 18, 6
    height = 30 + len(values) * (bar + gap)
    top = max([abs(v) for v in values] + [1e-12])
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{html.escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 20 + i * (bar + gap)
        w = (width - left - 90) * abs(value) / top
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{html.escape(str(label))}</text>')
        parts.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{_COLORS[0]}"/>'
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{_label(value)}{html.escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_lines(series: Mapping[str, Sequence[tuple[str, float]]], *, title: str) -> str:
    """A line chart as inline SVG: one <polyline class="line"> per series, x = the dates."""
    width, height, left, bottom = 640, 260, 60, 30
    dates = sorted({d for points in series.values() for d, _ in points})
    values = [v for points in series.values() for _, v in points]
    top = max([*values, 1e-12])
    span = max(len(dates) - 1, 1)

    def xy(d: str, v: float) -> str:
        x = left + (width - left - 130) * dates.index(d) / span
        y = height - bottom - (height - bottom - 20) * v / top
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{html.escape(title)}</title>",
    ]
    if dates:
        parts.append(f'<text x="{left}" y="{height - 8}">{dates[0]}</text>')
        parts.append(f'<text x="{width - 130}" y="{height - 8}" text-anchor="end">{dates[-1]}</text>')
    parts.append(f'<text x="4" y="24">{top:,.0f}</text>')
    for i, (name, points) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        pts = " ".join(xy(d, v) for d, v in sorted(points))
        parts.append(f'<polyline class="line" fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        if len(points) == 1:  # a single day: a dot, since a line needs two points
            parts.append(
                f'<circle cx="{xy(*points[0]).split(",")[0]}" cy="{xy(*points[0]).split(",")[1]}" '
                f'r="4" fill="{color}"/>'
            )
        parts.append(f'<text x="{width - 120}" y="{20 + 16 * i}" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def chart_data(lake: str, ds: str) -> dict[str, Any]:
    """What the page charts, from the curated outputs of `ds` (pyiceberg; no Spark)."""
    from include.lake import read_date as read_partition

    out: dict[str, Any] = {}
    segments = read_partition(lake, "curated", "customer_segments", ds)
    if segments is not None and not segments.empty:
        by = segments.groupby("segment").agg(
            customers=("customer_id", "count"), spent=("total_spent", lambda s: float(s.astype(float).mean()))
        )
        out["segments"] = [(f"segment {k}", int(r.customers), r.spent) for k, r in by.sort_index().iterrows()]
    # Every date of the 30 days up to ds that was written (one per day the pipeline ran).
    first = dt.date.fromisoformat(ds) - dt.timedelta(days=29)
    series: dict[str, list[tuple[str, float]]] = {}
    for day in (first + dt.timedelta(days=k) for k in range(30)):
        rolling = read_partition(lake, "curated", "sales_rolling_30d", day.isoformat())
        if rolling is not None:
            for r in rolling.itertuples():
                series.setdefault(r.region, []).append((day.isoformat(), float(r.rolling_30d_sum)))
    if series:
        out["rolling"] = series
    graph = read_partition(lake, "curated", "referral_graph", ds)
    if graph is not None and not graph.empty:
        top = graph.sort_values(["pagerank", "customer_id"], ascending=[False, True]).head(10)
        out["pagerank"] = [(r.customer_id, float(r.pagerank)) for r in top.itertuples()]
    return out


def _link(url: str | None, text: str) -> str:
    """A link; the AWS consoles refuse to be framed, so theirs open a tab of their own."""
    if not url:
        return ""
    target = ' target="_blank" rel="noopener noreferrer"' if url.startswith("https://") else ""
    return f'<a href="{html.escape(url)}"{target}>{html.escape(text)}</a>'


def _step_row(s: Mapping[str, Any]) -> str:
    total = (s.get("emr_step") or {}).get("seconds")
    total = s.get("duration_seconds") if total is None else total
    logs = " ".join(
        filter(None, (_link(s.get("step_log_url"), "step logs"), _link(s.get("task_log_url"), "task log")))
    )
    cells = [
        html.escape(s["step"]),
        html.escape(s["ds"]),
        html.escape(s["state"]),
        _num(s.get("queue_seconds"), 1),
        _num(s.get("startup_seconds"), 1),
        _num(s.get("spark_seconds"), 1),
        _num(total, 1),
        _num(s.get("rows_in")),
        _num(s.get("rows_out")),
        _num(s.get("rows_quarantined")),
        logs,
    ]
    css = "failed" if s["state"] in FAILED_STATES else ""
    return f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def svg_sparkline(values: Sequence[float | None], *, title: str) -> str:
    """A small trend line as inline SVG: a <polyline class="trend"> per stretch of runs with a
    value (a run without one is a gap; a lone value a dot)."""
    width, height = 120, 24
    known = [v for v in values if v is not None]
    low, span = (min(known), (max(known) - min(known)) or 1.0) if known else (0.0, 1.0)
    step = (width - 4) / max(len(values) - 1, 1)
    segments: list[list[tuple[float, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            segments.append([])
        else:
            segments[-1].append((2 + i * step, height - 3 - (height - 6) * (v - low) / span))
    marks = []
    for seg in filter(None, segments):
        if len(seg) == 1:
            marks.append(f'<circle class="trend" cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="2"/>')
        else:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            marks.append(f'<polyline class="trend" fill="none" stroke-width="1.5" points="{points}"/>')
    return (
        f'<svg class="spark" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'stroke="{_COLORS[0]}" fill="{_COLORS[0]}"><title>{html.escape(title)}</title>{"".join(marks)}</svg>'
    )


def trend_html(trend: Mapping[str, Any]) -> list[str]:
    """The trends section: rows per output per run (a table and a line per output), cost per run."""
    runs = [r["ds"] for r in trend["runs"]]
    head = "".join(f'<th title="{html.escape(d)}">{html.escape(d[5:])}</th>' for d in runs)
    title = f"Last {len(runs)} runs" if len(runs) > 1 else "This run (no earlier report yet)"
    parts = [
        f"<h2>{title}</h2><p>rows written per output, by run date</p>",
        f'<table class="trend"><tr><th>output</th>{head}<th>trend</th></tr>',
    ]
    for output, per_run in trend["rows"].items():
        values = [per_run.get(d) for d in runs]
        cells = "".join(f"<td>{_num(v)}</td>" for v in values)
        line = svg_sparkline(values, title=f"{output}: rows per run")
        parts.append(f"<tr><td>{html.escape(output)}</td>{cells}<td>{line}</td></tr>")
    parts.append("</table><h2>Cost per run</h2>")
    costs = [(d, trend["cost"].get(d)) for d in runs]
    priced = [(d, c) for d, c in costs if c is not None]
    if not priced:
        parts.append("<p>no cost: these runs ran on local Spark (or their instances have no price)</p>")
        return parts
    unit = f" {trend['currency']}" if trend.get("currency") else ""
    parts.append(f"<p>estimated cost per run{html.escape(unit)}</p>")
    parts.append(svg_bars([d for d, _ in priced], [c for _, c in priced], title="cost per run", unit=unit))
    if len(priced) < len(costs):
        parts.append(f"<p>no cost: {', '.join(html.escape(d) for d, c in costs if c is None)}</p>")
    return parts


def html_page(
    report: Mapping[str, Any], charts: Mapping[str, Any], trend: Mapping[str, Any] | None = None
) -> str:
    """A self-contained page: the run table, its links, its trends and charts as inline SVG (no
    script, nothing fetched)."""
    esc = html.escape
    rows = "".join(_step_row(s) for s in report["steps"])
    links = report.get("links") or {}
    said = [
        _link(links.get("airflow_run"), "the run in Airflow"),
        _link(links.get("emr_cluster"), f"EMR cluster {(report.get('emr_cluster') or {}).get('cluster_id')}"),
        _link(links.get("spark_history_server"), "Spark History Server (the cluster's Applications tab)"),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(report['dag_id'])} "
        f"{esc(report['ds'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(report['dag_id'])}: {esc(report['ds'])}</h1>",
        f"<p>run {esc(report['run_id'])} &middot; {esc(report['target'])} &middot; "
        f"<b class='{'failed' if report['state'] == 'failed' else ''}'>{esc(report['state'])}</b> &middot; "
        f"{report['totals']['rows_quarantined']:,} rows quarantined &middot; "
        f"{report['totals']['job_seconds']:,.0f} s in jobs</p>",
    ]
    if any(said):
        parts.append(f"<p class='links'>{' &middot; '.join(x for x in said if x)}</p>")
    cost = (report.get("emr_cluster") or {}).get("estimated_cost")
    if cost is not None:
        parts.append(f"<p>estimated cost {cost:.2f} {esc(report['emr_cluster'].get('currency') or '')}</p>")
    parts.append(
        "<table class='steps'><tr><th>step</th><th>ds</th><th>state</th><th>queued s</th><th>start-up s</th>"
        "<th>Spark s</th><th>total s</th><th>rows in</th><th>rows out</th><th>quarantined</th>"
        f"<th>logs</th></tr>{rows}</table>"
        "<p class='note'>queued: on EMR from the step's creation to its start, locally waiting for "
        "the run's Spark application; start-up: the job's Spark session; Spark: the job's own work; "
        "total: the EMR step, or the whole job locally</p>"
    )
    if trend:
        parts += trend_html(trend)
    checks = report.get("checks")
    if checks:
        parts.append(
            f"<h2>Checks</h2><p>{checks['passed']} passed, {checks['warnings']} warnings, "
            f"{checks['errors']} errors, {checks['skipped']} skipped</p>"
        )
        lines = "".join(
            f'<tr class="{"failed" if c["status"] == "fail" else ""}"><td>{esc(c["table"])}</td>'
            f"<td>{esc(c['check'])}</td><td>{esc(c['severity'])}</td><td>{esc(c['status'])}</td>"
            f"<td>{esc(', '.join(f'{k}={v}' for k, v in c['numbers'].items()))}</td>"
            f"<td>{esc(c.get('note') or '')}</td></tr>"
            for c in checks["results"]
        )
        parts.append(
            "<table><tr><th>table</th><th>check</th><th>severity</th><th>result</th><th>numbers</th>"
            f"<th>note</th></tr>{lines}</table>"
        )
    if "segments" in charts:
        labels = [label for label, _, _ in charts["segments"]]
        parts.append("<h2>Customer segments</h2><p>customers per segment</p>")
        parts.append(svg_bars(labels, [n for _, n, _ in charts["segments"]], title="customers per segment"))
        parts.append("<p>average total spent per customer</p>")
        parts.append(svg_bars(labels, [s for _, _, s in charts["segments"]], title="average total spent"))
    if "rolling" in charts:
        parts.append("<h2>30-day rolling sales by region</h2>")
        days = {d for points in charts["rolling"].values() for d, _ in points}
        if len(days) > 1:
            parts.append(f"<p>rolling 30-day sum, {min(days)} to {max(days)}</p>")
            parts.append(svg_lines(charts["rolling"], title="rolling 30-day sales"))
        else:  # one run so far: a line needs two days, so the day's value per region
            regions = sorted(charts["rolling"])
            parts.append(f"<p>rolling 30-day sum on {next(iter(days))}</p>")
            values = [charts["rolling"][r][0][1] for r in regions]
            parts.append(svg_bars(regions, values, title="rolling 30-day sales"))
    if "pagerank" in charts:
        parts.append("<h2>PageRank leaders (referrals)</h2><p>top 10 customers by PageRank</p>")
        parts.append(
            svg_bars(
                [c for c, _ in charts["pagerank"]],
                [v for _, v in charts["pagerank"]],
                title="top customers by PageRank",
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def earlier_reports(
    read: Callable[[str], str | None], lake: str, dag_id: str, ds: str, dates: Sequence[str]
) -> list[dict[str, Any]]:
    """The reports of the TREND_RUNS - 1 latest dates before `ds` (one a date: its last run's)."""
    out = []
    for day in sorted(d for d in dates if d < ds)[-(TREND_RUNS - 1) :]:
        text = read(report_uri(lake, dag_id, day))
        if not text:
            continue
        try:
            out.append(json.loads(text))
        except ValueError:
            log.warning("%s is not a report; left out of the trends", report_uri(lake, dag_id, day))
    return out


def read_checks(read: Callable[[str], str | None], lake: str, ds: str, branch: str | None) -> list | None:
    """The run's audit results, None when its audit did not run (or left none)."""
    if not branch:
        return None
    text = read(paths.audit_uri(lake, ds, branch))
    return json.loads(text) if text else None


def gather_metrics(
    read: Callable[[str], str | None], lake: str, planned: Sequence[PlannedStep]
) -> dict[tuple[str, str], dict | None]:
    out = {}
    for p in planned:
        text = read(metrics_uri(lake, p.step, p.metrics_ds)) if p.selected else None
        out[(p.step.name, p.label)] = json.loads(text) if text else None
    return out


# ---- the task ------------------------------------------------------------------------------
def add_run_report(settings: Any, kind: str, dag: Any) -> Any:
    """Add `run_report` as the last task of `dag` (call it inside `with dag`): it runs whatever happened
    (trigger rule all_done), writes and logs the report, then fails if a step failed, so the
    run's state stays the steps' state (a run's state is its last tasks')."""
    from airflow.sdk import get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException

    @task(task_id="run_report", trigger_rule="all_done", retries=0)
    def run_report() -> dict[str, Any]:
        ctx = get_current_context()
        ti, dag = ctx["ti"], ctx["dag"]
        plan = {
            k: ti.xcom_pull(task_ids="plan", key=k)
            for k in ("ds", "steps", "dates", "start_ds", "end_ds", "branch")
        }
        if kind == "nightly":
            ds = plan["ds"]
            planned = nightly_steps(ds, plan["steps"] or [], emr=settings.is_emr)
        else:
            ds = plan["end_ds"]
            planned = backfill_steps(
                plan["start_ds"], plan["end_ds"], plan["dates"] or [], emr=settings.is_emr
            )
        if ds is None:
            raise AirflowFailException("the plan task did not finish; there is nothing to report")
        states = ti.get_task_states(dag_id=dag.dag_id, run_ids=[ctx["run_id"]]).get(ctx["run_id"], {})
        read, write = lake_io(getattr(settings, "aws_conn_id", None), getattr(settings, "region", None))
        emr_steps = cluster = None
        if settings.is_emr:
            emr_steps, cluster = _emr_part(settings, ti.xcom_pull(task_ids="create_cluster"))
        report = build_report(
            dag_id=dag.dag_id,
            run_id=ctx["run_id"],
            target=settings.target,
            ds=ds,
            planned=planned,
            task_states=states,
            metrics=gather_metrics(read, settings.lake, planned),
            emr_steps=emr_steps,
            cluster=cluster,
            checks=read_checks(read, settings.lake, ds, plan["branch"]),
        )
        add_links(report, airflow_base=_airflow_base(ti), region=(cluster or {}).get("region"))
        uri = report_uri(settings.lake, dag.dag_id, ds)
        write(uri, json.dumps(report, indent=2, sort_keys=True, default=str))
        log.info("\n%s\nreport: %s", format_table(report), uri)
        page = _write_page(settings, dag.dag_id, ds, report, read, write)
        # where the UI's "Run report" tab finds the page (pushed before a failed run fails)
        aws = {"aws_conn_id": settings.aws_conn_id, "region": settings.region} if settings.is_emr else {}
        ti.xcom_push(key=PAGE_XCOM_KEY, value={"json": uri, "html": page, **aws})
        # Teardowns (terminate_cluster) do not decide a run's state; the steps do.
        teardowns = {t.task_id for t in dag.tasks if getattr(t, "is_teardown", False)}
        failed = sorted(t for t, s in states.items() if s in FAILED_STATES and t not in teardowns)
        if failed:
            raise AirflowFailException(f"the run failed: {', '.join(failed)} (report: {uri})")
        return {"report": uri, "state": report["state"]}

    ends = [t for t in dag.tasks if not t.downstream_list]
    report = run_report()
    ends >> report.operator
    return report


def _airflow_base(ti: Any) -> str | None:
    """The UI's address, as Airflow itself puts it in task log links ([api] base_url)."""
    try:
        return str(ti.log_url).split("/dags/", 1)[0] or None
    except Exception:  # a link is worth having, not worth failing the report for
        log.exception("no Airflow address for the report's links")
        return None


def _write_page(
    settings: Any,
    dag_id: str,
    ds: str,
    report: dict[str, Any],
    read: Callable[[str], str | None],
    write: Callable[[str, str], None],
) -> str | None:
    """report.html beside report.json (S3 on EMR): the run, its trends, a local lake's charts.
    Its URI, None when it could not be written (the JSON report stands either way)."""
    page = report_uri(settings.lake, dag_id, ds, "report.html")
    charts: dict[str, Any] = {}
    if settings.lake.startswith("file://"):  # the outputs' charts read the local catalog
        try:
            charts = chart_data(settings.lake, ds)
        except Exception:  # a chart problem must not hide the report or fail the run
            log.exception("no charts for %s", page)
    try:
        aws = (getattr(settings, "aws_conn_id", None), getattr(settings, "region", None))
        dates = report_dates(settings.lake, dag_id, *aws)
        trend = trends([*earlier_reports(read, settings.lake, dag_id, ds, dates), report])
        write(page, html_page(report, charts, trend))
    except Exception:
        log.exception("could not write %s", page)
        return None
    log.info("report page: %s", page)
    return page


def _emr_part(settings: Any, cluster_id: str | None) -> tuple[dict | None, dict | None]:
    if not cluster_id:
        return None, None
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    client = EmrHook(aws_conn_id=settings.aws_conn_id, region_name=settings.region).conn
    try:
        cluster, instances, steps = read_emr(client, cluster_id)
    except Exception:  # the numbers are worth having, not worth failing a run for
        log.exception("could not read EMR cluster %s for the report", cluster_id)
        return None, None
    usage = cluster_usage(cluster, instances, steps, load_prices())
    usage["region"] = client.meta.region_name  # for the report's console links
    return emr_step_timings(steps), usage
