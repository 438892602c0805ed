"""What an EMR Serverless run cost: each job run priced from GetJobRun's `billedResourceUtilization`
(vCPU-hours, memory GB-hours, storage GB-hours: what AWS billed, with its one-minute minimum per
worker and without the free 20 GB of storage per worker) at the region's and architecture's prices
(`include/serverless_prices.json`), and the run's total; with the lines and the HTML table the
run report shows them in, beside the EMR clusters' cost.

Pre-initialized capacity that idles outside job runs is billed too but is in no job run's figures:
a run whose application keeps initial capacity costs more than this says while it idles.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SERVERLESS_PRICES_FILE = Path(__file__).parent.with_name("serverless_prices.json")
# GetJobRun's billedResourceUtilization (botocore's ResourceUtilization) -> the price table's keys
BILLED = {"vCPUHour": "vcpu_hour", "memoryGBHour": "memory_gb_hour", "storageGBHour": "storage_gb_hour"}
ARCHITECTURES = ("X86_64", "ARM64")  # CreateApplication's `architecture`; X86_64 when not given


def load_serverless_prices(path: Path = SERVERLESS_PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def rates(prices: Mapping[str, Any], region: str | None, architecture: str | None) -> dict[str, float] | None:
    """{vcpu_hour, memory_gb_hour, storage_gb_hour} of `region` and `architecture` (None: X86_64),
    None when the table has no such row."""
    arch = architecture or "X86_64"
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown EMR Serverless architecture {arch!r}: one of {', '.join(ARCHITECTURES)}")
    return prices.get("regions", {}).get(region or "", {}).get(arch)


def job_run_cost(billed: Mapping[str, Any] | None, rates: Mapping[str, float] | None) -> float | None:
    """The cost of one job run: vCPUHour x vCPU-hour price + memoryGBHour x GB-hour price +
    storageGBHour x storage GB-hour price; None when AWS has not billed it yet (no
    `billedResourceUtilization`: the job run has not ended) or there is no price."""
    if billed is None or rates is None:
        return None
    return sum(float(billed.get(field) or 0.0) * rates[key] for field, key in BILLED.items())


def _seconds(run: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(queued seconds, run seconds) of a GetJobRun `jobRun`."""
    queued = run.get("queuedDurationMilliseconds")
    started, ended = run.get("startedAt"), run.get("endedAt")
    ran = run.get("totalExecutionDurationSeconds")
    if started and ended:
        ran = round((ended - started).total_seconds(), 3)
    return (round(queued / 1000, 3) if queued is not None else None), ran


def job_runs_usage(
    job_runs: Sequence[Mapping[str, Any]],
    prices: Mapping[str, Any],
    *,
    region: str | None,
    architecture: str | None = None,
) -> dict[str, Any]:
    """Every job run of a run (GetJobRun's `jobRun`, any of the run's applications, in the order
    they were created) with what AWS billed for it and its cost, keyed by the job run's `name`
    (a retried or repaired step's job run appears once per job run), and the run's total.

    The total's cost is None when one job run has none (still running, or no price for the
    region): a partial sum would pass for the run's cost."""
    table = rates(prices, region, architecture)
    rows, totals, costs = [], dict.fromkeys(BILLED, 0.0), []
    for run in sorted(job_runs, key=lambda r: (r.get("createdAt") is None, r.get("createdAt") or 0)):
        billed = run.get("billedResourceUtilization")
        for field in BILLED:
            totals[field] += float((billed or {}).get(field) or 0.0)
        queued, ran = _seconds(run)
        cost = job_run_cost(billed, table)
        costs.append(cost)  # summed unrounded: the total is not a sum of rounded rows
        rows.append(
            {
                "name": run.get("name"),
                "id": run.get("jobRunId"),
                "application_id": run.get("applicationId"),
                "state": run.get("state"),
                "queue_seconds": queued,
                "seconds": ran,
                "vcpu_hours": _round((billed or {}).get("vCPUHour")),
                "memory_gb_hours": _round((billed or {}).get("memoryGBHour")),
                "storage_gb_hours": _round((billed or {}).get("storageGBHour")),
                "estimated_cost": _round(cost),
            }
        )
    return {
        "region": region,
        "architecture": architecture or "X86_64",
        "job_runs": rows,
        "total": {
            "job_runs": len(rows),
            "vcpu_hours": round(totals["vCPUHour"], 6),
            "memory_gb_hours": round(totals["memoryGBHour"], 6),
            "storage_gb_hours": round(totals["storageGBHour"], 6),
            "estimated_cost": _round(sum(costs)) if costs and None not in costs else None,
            "currency": prices.get("currency"),
        },
        "unpriced": table is None,
        "price_table": {"region": region, "as_of": prices.get("as_of"), "source": prices.get("source")},
    }


def by_name(usage: Mapping[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """{job run name: its job runs, oldest first}: what a report row of a step reads its job runs
    (and their cost) from; a step retried or repaired has several."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in (usage or {}).get("job_runs", []):
        out.setdefault(row["name"], []).append(row)
    return out


def applications_usage(
    applications: Sequence[Mapping[str, Any]],
    prices: Mapping[str, Any],
    *,
    region: str | None,
    architecture: str | None = None,
) -> dict[str, Any]:
    """`job_runs_usage` of the job runs the run report read (`serverless.read_job_runs`: per
    application of the run, oldest first, its job runs with GetJobRun's billed utilization)."""
    runs = [
        {
            "name": r["name"],
            "jobRunId": r["id"],
            "applicationId": r["application_id"],
            "state": r["state"],
            "totalExecutionDurationSeconds": r.get("seconds"),
            # {} until AWS has billed it (the job run has not ended): unknown, not free
            "billedResourceUtilization": r.get("billed_resource_utilization") or None,
        }
        for app in applications
        for r in app["job_runs"]
    ]
    return job_runs_usage(runs, prices, region=region, architecture=architecture)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _cost(value: float | None, currency: str | None) -> str:
    return "unknown" if value is None else f"{value:.4f} {currency or ''}".rstrip()


# ---- how the report shows them ---------------------------------------------------------------
def job_run_lines(usage: Mapping[str, Any]) -> list[str]:
    """The task log's lines: one per job run, then the run's total."""
    t, currency = usage["total"], usage["total"].get("currency")
    table = usage["price_table"]
    lines = [
        f"EMR Serverless job runs ({usage['architecture']}, price table {table['region']} {table['as_of']}):"
    ]
    for r in usage["job_runs"]:
        lines.append(
            f"  {r['name']} {r['id']} {r['state']}: vCPU-h {_num(r['vcpu_hours'], 4)}, "
            f"memory GB-h {_num(r['memory_gb_hours'], 4)}, storage GB-h {_num(r['storage_gb_hours'], 4)}; "
            f"estimated cost {_cost(r['estimated_cost'], currency)}"
        )
    lines.append(
        f"EMR Serverless total: {t['job_runs']} job runs; vCPU-h {_num(t['vcpu_hours'], 4)}, memory GB-h "
        f"{_num(t['memory_gb_hours'], 4)}, storage GB-h {_num(t['storage_gb_hours'], 4)}; "
        f"estimated cost {_cost(t['estimated_cost'], currency)}"
    )
    if usage.get("unpriced"):
        lines.append(
            f"no EMR Serverless price for {table['region']} {usage['architecture']}: "
            f"add it to {SERVERLESS_PRICES_FILE.name}"
        )
    return lines


def job_runs_html(usage: Mapping[str, Any]) -> list[str]:
    """The page's table: one row per job run (name, id, state, billed vCPU, memory and storage
    hours, cost), then the run's total."""
    t = usage["total"]
    esc = html.escape
    rows = [
        f"<tr><td>{esc(str(r['name']))}</td><td>{esc(str(r['id']))}</td><td>{esc(str(r['state']))}</td>"
        f"<td>{_num(r['vcpu_hours'], 4)}</td><td>{_num(r['memory_gb_hours'], 4)}</td>"
        f"<td>{_num(r['storage_gb_hours'], 4)}</td><td>{_num(r['estimated_cost'], 4)}</td></tr>"
        for r in usage["job_runs"]
    ]
    rows.append(
        f"<tr><td>total</td><td>{t['job_runs']} job runs</td><td></td><td>{_num(t['vcpu_hours'], 4)}</td>"
        f"<td>{_num(t['memory_gb_hours'], 4)}</td><td>{_num(t['storage_gb_hours'], 4)}</td>"
        f"<td>{_num(t['estimated_cost'], 4)}</td></tr>"
    )
    return [
        "<h2>EMR Serverless job runs of this run</h2><p>billed vCPU, memory and storage hours "
        f"(GetJobRun's billedResourceUtilization) at the {esc(str(usage['price_table']['region']))} "
        f"{esc(usage['architecture'])} prices of {esc(str(usage['price_table']['as_of']))}</p>",
        "<table class='job-runs'><tr><th>job run</th><th>id</th><th>state</th><th>vCPU-hours</th>"
        "<th>memory GB-hours</th><th>storage GB-hours</th>"
        f"<th>estimated cost {esc(t.get('currency') or '')}</th></tr>" + "".join(rows) + "</table>",
    ]
