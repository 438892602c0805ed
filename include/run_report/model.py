"""The run report as data: per step of the run's plan its state, rows and timings (from the jobs'
metrics and, on EMR, the steps' own timings), the run's totals and checks, the links a person
follows next, and the trends over the runs before it. Pure: every input is handed in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from include.alert_settings import deadline_interval
from include.run_plan import PlannedStep, RunPlan
from include.run_report.serverless_cost import by_name

TREND_RUNS = 14  # the report's trends: this run and the 13 before it
FAILED_STATES = ("failed", "upstream_failed")


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
    plan: RunPlan,
    task_states: Mapping[str, str | None],
    metrics: Mapping[tuple[str, str], Mapping[str, Any] | None],
    emr_steps: Mapping[str, Mapping[str, Any]] | None = None,
    cluster: Mapping[str, Any] | None = None,
    checks: Sequence[Mapping[str, Any]] | None = None,
    attempts: Mapping[str, Any] | None = None,
    job_runs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run report as plain JSON-able data: a row per step of the run's `plan`, in its order.

    `metrics` maps (step name, label) to the job's metrics JSON. They are used only for steps
    whose task succeeded: a file from an earlier run of the same date must not pass for this one.
    `emr_steps` maps EMR step names (the plan's) to {"state", "seconds"}. `attempts` is every
    cluster of the run and the steps each ran (`cost.run_attempts`): a repaired run's step shows
    its last try (the one that counts) and, in `emr_tries`, each try with its cluster. `job_runs`
    is an EMR Serverless run's job runs with their cost (`serverless_cost.job_runs_usage`): a
    step's row gets, in `job_runs`, those named as its EMR step is (each try one).
    """
    tried: dict[str, list[dict[str, Any]]] = {}
    for c in (attempts or {}).get("clusters", []):
        for t in c["steps"]:
            timing = {k: t[k] for k in ("id", "state", "queue_seconds", "seconds")}
            tried.setdefault(t["name"], []).append(
                {**timing, "try": t["try"], "cluster_id": c["cluster_id"], "cluster": c["attempt"]}
            )
    if attempts is not None:
        emr_steps = {name: every[-1] for name, every in tried.items()}
    named = by_name(job_runs)
    steps = []
    for p in plan.steps:
        state = step_state(p, task_states)
        row: dict[str, Any] = {"step": p.step, "ds": p.label, "task_id": p.task_id, "state": state}
        found = metrics.get((p.step, p.label)) if state == "success" else None
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
        if emr_steps is not None and p.emr_step_name in emr_steps:
            row["emr_step"] = dict(emr_steps[p.emr_step_name])
            # on EMR the queue is the step's: added, then PENDING until the cluster ran it
            if row["emr_step"].get("queue_seconds") is not None:
                row["queue_seconds"] = row["emr_step"]["queue_seconds"]
        if p.emr_step_name in tried:
            row["emr_tries"] = tried[p.emr_step_name]
        if p.emr_step_name in named:
            row["job_runs"] = named[p.emr_step_name]
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
        "ds": plan.ds,
        "state": "failed" if failed else "success",
        "failed_tasks": failed,
        "steps": steps,
        "totals": totals,
        "emr_cluster": dict(cluster) if cluster is not None else None,
        "emr_attempts": dict(attempts) if attempts is not None else None,
        "serverless_job_runs": dict(job_runs) if job_runs is not None else None,
        "checks": checks_section(checks),
    }


def run_cost(report: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """(estimated cost, currency) of the whole run: every cluster it ran (a repaired run has more
    than one; else its one cluster's, in a report from before the run's clusters were listed) and
    every EMR Serverless job run. None when it ran on neither, or when one part has no cost."""
    parts: list[tuple[float | None, str | None]] = []
    attempts = report.get("emr_attempts")
    if attempts:
        parts.append((attempts["total"]["estimated_cost"], attempts["total"]["currency"]))
    elif report.get("emr_cluster"):
        parts.append((report["emr_cluster"].get("estimated_cost"), report["emr_cluster"].get("currency")))
    if report.get("serverless_job_runs"):
        total = report["serverless_job_runs"]["total"]
        parts.append((total["estimated_cost"], total["currency"]))
    if not parts:
        return None, None
    currency = next((c for _, c in parts if c), None)
    costs = [c for c, _ in parts]
    return (None if None in costs else round(sum(costs), 4)), currency


def run_timing(
    *,
    started_at: dt.datetime | None,
    finished_at: dt.datetime,
    run_type: str | None,
    logical_date: dt.datetime | None,
    deadline_utc: str,
) -> dict[str, Any]:
    """When the run started and finished (its report, the last task), how long it took and, for a
    scheduled run, its deadline (PIPELINE_ALERT_DEADLINE_UTC: the first HH:MM after the run of D
    starts on D+1, as the DAG's Deadline Alert counts it) and how far past it the run finished
    (negative: that much early). A manual run or a backfill has no deadline (include/alerts.py)."""
    out: dict[str, Any] = {
        "started_at": started_at.isoformat() if started_at else None,
        "finished_at": finished_at.isoformat(),
        "duration_seconds": round((finished_at - started_at).total_seconds(), 3) if started_at else None,
        "deadline_at": None,
        "seconds_past_deadline": None,
    }
    if str(run_type or "").rsplit(".", 1)[-1].lower() == "scheduled" and logical_date is not None:
        due = logical_date + deadline_interval(deadline_utc, logical_date.timetz())
        out["deadline_at"] = due.isoformat()
        out["seconds_past_deadline"] = round((finished_at - due).total_seconds(), 3)
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
    log_uris = {cluster_id: log_uri}
    for each in (report.get("emr_attempts") or {}).get("clusters", []):
        log_uris[each["cluster_id"]] = each.get("log_uri")
        if region:
            each["console_url"] = emr_console_url(region, each["cluster_id"])
    for step in report["steps"]:
        if airflow_base and step["state"] != "skipped":
            step["task_log_url"] = airflow_task_url(
                airflow_base, report["dag_id"], report["run_id"], step["task_id"]
            )
        step_id = (step.get("emr_step") or {}).get("id")
        ran_on = (step.get("emr_step") or {}).get("cluster_id") or cluster_id  # its last try's
        if step_id and ran_on and log_uris.get(ran_on):
            folder = f"{log_uris[ran_on].rstrip('/')}/{ran_on}/steps/{step_id}/"
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
        "cost": {r["ds"]: run_cost(r)[0] for r in runs},
        "currency": next((run_cost(r)[1] for r in reversed(runs) if run_cost(r)[1]), None),
    }
