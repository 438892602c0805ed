"""The run report as people read it: the plain-text table of the task log, and the self-contained
HTML page (the run's steps, links, checks and trends, a local lake's charts) with its charts drawn
as inline SVG (include/run_report/charts.py): no script, nothing fetched.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from include.run_report.charts import svg_bars, svg_lines, svg_sparkline
from include.run_report.cost import PRICES_FILE
from include.run_report.model import FAILED_STATES, run_cost
from include.run_report.serverless_cost import job_run_lines, job_runs_html


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
    attempts = report.get("emr_attempts")
    clusters = (
        attempts["clusters"] if attempts else [report["emr_cluster"]] if report.get("emr_cluster") else []
    )
    for c in clusters:
        groups = ", ".join(
            f"{g['instances']} x {g['instance_type']} ({g['market']})" for g in c["instance_types"]
        )
        # a repaired run's clusters are numbered, each with the run's steps it ran
        which = f"EMR cluster {c['attempt']} of {len(clusters)}" if len(clusters) > 1 else "EMR cluster"
        lines.append(
            f"{which} {c['cluster_id']} ({c['state']}): {groups}; "
            f"runtime {_num(c['runtime_hours'], 2)} h "
            f"({c['runtime_source']}); normalized instance hours {_num(c['normalized_instance_hours'], 1)} "
            f"(EMR says {c['emr_normalized_instance_hours']}); "
            f"estimated cost {_cost(c['estimated_cost'], c)} "
            f"(price table {c['price_table']['region']} {c['price_table']['as_of']})"
        )
        if len(clusters) > 1:
            lines.append(f"  steps: {_tries(c['steps'])}")
        if c["unpriced_instance_types"]:
            lines.append(
                f"no price for {', '.join(c['unpriced_instance_types'])}: add it to {PRICES_FILE.name}"
            )
    if attempts and len(clusters) > 1:
        t = attempts["total"]
        lines.append(
            f"EMR total: {t['clusters']} clusters; normalized instance hours "
            f"{_num(t['normalized_instance_hours'], 1)}; estimated cost {_cost(t['estimated_cost'], t)}"
        )
    if report.get("serverless_job_runs"):
        lines += job_run_lines(report["serverless_job_runs"])
    return "\n".join(lines)


def _cost(value: float | None, where: Mapping[str, Any]) -> str:
    return "unknown" if value is None else f"{value:.2f} {where.get('currency')}"


def _tries(steps: Sequence[Mapping[str, Any]]) -> str:
    """A cluster's steps of the run, in the order they were added: `segments 2024-07-03 COMPLETED
    (try 2)`; a step's first try says no try."""
    return (
        ", ".join(
            f"{s['step']} {s['ds']} {s['state']}" + (f" (try {s['try']})" if s["try"] > 1 else "")
            for s in steps
        )
        or "none"
    )


# ---- the HTML page (local lakes) -----------------------------------------------------------
_CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
    "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
    "td:first-child,th:first-child{text-align:left}h2{margin-top:1.6em}.failed{color:#b00}"
    "table.steps td,table.steps th,table.trend td,table.trend th{white-space:nowrap}"
    ".note{color:#666;font-size:12px}"
)


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


def clusters_html(attempts: Mapping[str, Any]) -> list[str]:
    """A repaired run's clusters: one row per cluster (its console link, state, the run's steps it
    ran with their tries, its normalized instance hours and cost), then the run's total."""
    rows = []
    for c in attempts["clusters"]:
        link = _link(c.get("console_url"), c["cluster_id"]) or html.escape(c["cluster_id"])
        rows.append(
            f"<tr><td>{c['attempt']}</td><td>{link}</td><td>{html.escape(str(c['state']))}</td>"
            f"<td>{html.escape(_tries(c['steps']))}</td><td>{_num(c['normalized_instance_hours'], 1)}</td>"
            f"<td>{_num(c['estimated_cost'], 2)}</td></tr>"
        )
    t = attempts["total"]
    rows.append(
        f"<tr><td>total</td><td>{t['clusters']} clusters</td><td></td><td></td>"
        f"<td>{_num(t['normalized_instance_hours'], 1)}</td><td>{_num(t['estimated_cost'], 2)}</td></tr>"
    )
    return [
        "<h2>EMR clusters of this run</h2><p>a repaired run: each cluster ran the steps below "
        "(try 2: the step ran again after a repair)</p>",
        "<table class='clusters'><tr><th>cluster</th><th>id</th><th>state</th><th>steps</th>"
        "<th>normalized instance hours</th>"
        f"<th>estimated cost {html.escape(t.get('currency') or '')}</th></tr>" + "".join(rows) + "</table>",
    ]


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
    cost, currency = run_cost(report)
    attempts = (report.get("emr_attempts") or {}).get("clusters") or []
    if cost is not None:
        on = f" on {len(attempts)} clusters" if len(attempts) > 1 else ""
        parts.append(f"<p>estimated cost {cost:.2f} {esc(currency or '')}{on}</p>")
    if len(attempts) > 1:
        parts += clusters_html(report["emr_attempts"])
    if report.get("serverless_job_runs"):
        parts += job_runs_html(report["serverless_job_runs"])
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
