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


def render(results: list[FigureResult], machine: dict[str, Any], mode: str, findings: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`; `--quick` for small sizes, `--only NAME` for one",
        "figure, `--repeat N` runs per measurement). Each number is the min and the median of several",
        "runs; the 1-minute load average when a figure started is shown with it, because the machine",
        "is shared and contention inflates every time. These are benchmarks, not tests: nothing here",
        "asserts a time. Raw results (every run) are kept in `.bench/results/`.",
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
    for r in results:
        lines += [
            "",
            f"## Figure {r.figure}: {r.title}",
            "",
            *([r.method, ""] if r.method else []),
            f"Load average at start: {r.load_start}.",
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
