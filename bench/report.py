"""docs/BENCHMARKS.md from the stored figure results, the machine facts and bench/findings.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core import FigureResult


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "" and value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[met]


LINE_TITLES = {"spark35": "Spark 3.5 (emr-7.x line)"}


def side_by_side(results: list[FigureResult], others: dict[str, list[FigureResult]]) -> list[str]:
    """Each figure run on another line too: its medians beside this line's, and their ratio."""
    lines: list[str] = []
    for line, theirs in others.items():
        by_name = {r.name: r for r in theirs}
        pairs = [(r, by_name[r.name]) for r in results if r.name in by_name]
        if not pairs:
            continue
        title = LINE_TITLES.get(line, line)
        lines += [
            "",
            f"## Spark 4.1 and {title}, side by side",
            "",
            f"The figures below ran on both lines on the same machine and day (`make bench-lines` "
            f"runs them one line after the other, the order swapped from figure to figure; the notes "
            f"at the end say how the runs shown here were paired): Spark 4.1 is this environment "
            f"(emr-spark-8.1.0's line), {title} the second environment of `make venv-emr7 "
            f"jars-emr7`. Same code, same generated data, same sizes. Times are medians; the load "
            f"averages when each started say how busy the shared machine was; the ratio "
            f"(4.1 / 3.5) is the number to read, not the seconds.",
        ]
        for ours, other in pairs:
            rows = {row.metric: row for row in other.rows}
            lines += [
                "",
                f"### Figure {ours.figure}: {ours.title}",
                "",
                f"Spark 4.1: {ours.measured_on or 'not recorded'}, load at start {ours.load_start}. "
                f"{title}: {other.measured_on or 'not recorded'}, load at start {other.load_start}.",
                "",
                f"| measure | Spark 4.1 median | {title} median | unit | 4.1 / 3.5 | note (4.1; 3.5) |",
                "|---|---:|---:|---|---:|---|",
            ]
            for row in ours.rows:
                theirs_row = rows.get(row.metric)
                if theirs_row is None or "of which" in row.metric or row.median is None:
                    continue
                ratio = ""
                if row.unit == "s" and theirs_row.median:
                    ratio = f"{row.median / theirs_row.median:.2f}"
                notes = "; ".join(n for n in (row.note, theirs_row.note) if n)
                lines.append(
                    f"| {row.metric} | {_num(row.median, row.unit)} | {_num(theirs_row.median, row.unit)} "
                    f"| {row.unit} | {ratio} | {notes} |"
                )
    return lines


def render(
    results: list[FigureResult],
    machine: dict[str, Any],
    mode: str,
    findings: str,
    others: dict[str, list[FigureResult]] | None = None,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`; `--quick` for small sizes, `--only NAME` for one",
        "figure, `--repeat N` runs per measurement). Each number is the min and the median of several",
        "runs; the 1-minute load average when a figure started is shown with it, because the machine",
        "is shared and contention inflates every time. These are benchmarks, not tests: nothing here",
        "asserts a time. Raw results (every run) are kept in `.bench/results/` (the Spark 3.5",
        "line's in `.bench/results-spark35/`).",
        "",
        f"Mode: **{mode}**.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    for key in (
        "cpu",
        "cores",
        "memory_gib",
        "os",
        "python",
        "java",
        "spark_driver_memory",
        "spark_shuffle_partitions",
        "spark_driver_java_options",
    ):
        lines.append(f"| {key} | {machine.get(key)} |")
    for dist, version in machine.get("versions", {}).items():
        lines.append(f"| {dist} | {version} |")
    lines += ["", "## Summary", "", "| figure | result | load at start | targets met |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.figure}. {r.title} | {r.summary} | {r.load_start} | {_met(r.ok)} |")
    lines += side_by_side(results, others or {})
    for r in results:
        lines += [
            "",
            f"## Figure {r.figure}: {r.title}",
            "",
            *([r.method, ""] if r.method else []),
            f"Measured on: {r.measured_on or 'not recorded'}. Load average at start: {r.load_start}.",
            "",
            "| measure | min | median | unit | target | met | note |",
            "|---|---:|---:|---|---|---|---|",
        ]
        for row in r.rows:
            lines.append(
                f"| {row.metric} | {_num(row.min, row.unit)} | {_num(row.median, row.unit)} | {row.unit} "
                f"| {row.target} | {_met(row.met)} | {row.note} |"
            )
    if findings.strip():
        lines += ["", findings.strip()]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
