"""Where `make test`'s time goes: the suite's JUnit report summed per test file.

`python -m bench.suite_times .pytest_cache/junit.xml [--top N] [--markdown] [--write-order FILE]`

Each test's time in the report is its setup + call + teardown, so a module fixture (a pipeline
run shared by a file's tests) counts in the file that made it. With two workers the files'
times add up to about twice the wall time; the share is of that sum, i.e. of the workers' busy
time. A measurement, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileTime:
    path: str
    tests: int
    seconds: float


def _file_of(classname: str) -> str:
    """`tests.dags.test_emr_target.TestX` or `tests.dags.test_emr_target` -> tests/dags/test_emr_target.py."""
    parts = classname.split(".")
    while parts and not parts[-1].startswith("test_"):
        parts.pop()  # class names (TestX) after the module
    return "/".join(parts) + ".py" if parts else classname


def file_times(report: Path) -> list[FileTime]:
    """Per test file: number of test cases and their summed time, longest first."""
    seconds: dict[str, float] = defaultdict(float)
    tests: dict[str, int] = defaultdict(int)
    # the report pytest wrote for this checkout, not input from outside
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
        path = _file_of(case.get("classname", ""))
        seconds[path] += float(case.get("time") or 0.0)
        tests[path] += 1
    rows = [FileTime(p, tests[p], seconds[p]) for p in seconds]
    return sorted(rows, key=lambda r: (-r.seconds, r.path))


def render(rows: list[FileTime], top: int, markdown: bool) -> str:
    total = sum(r.seconds for r in rows) or 1.0
    shown = rows[:top] if top else rows
    rest = rows[len(shown) :]
    lines = []
    if markdown:
        lines += ["| test file | tests | seconds | share |", "|---|---:|---:|---:|"]
        fmt = "| {} | {} | {:.1f} | {:.1%} |"
    else:
        fmt = "{:<52} {:>5} {:>8.1f} s {:>6.1%}"
        lines.append(f"{'test file':<52} {'tests':>5} {'time':>10} {'share':>6}")
    for r in shown:
        name = f"`{r.path}`" if markdown else r.path
        lines.append(fmt.format(name, r.tests, r.seconds, r.seconds / total))
    if rest:
        rest_s = sum(r.seconds for r in rest)
        label = f"{len(rest)} other files"
        lines.append(fmt.format(label, sum(r.tests for r in rest), rest_s, rest_s / total))
    count = sum(r.tests for r in rows)
    lines.append(fmt.format("all", count, total, 1.0))
    return "\n".join(lines)


def write_order(rows: list[FileTime], path: Path) -> None:
    """The files' times as tests/conftest.py reads them to hand the longest files out first
    (tests/file_times.json): a file's seconds, to a tenth, longest first."""
    table = {r.path: round(r.seconds, 1) for r in rows}
    path.write_text(json.dumps(table, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", type=Path, help="JUnit XML written by pytest --junitxml")
    parser.add_argument("--top", type=int, default=15, help="files to list (0: all)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument(
        "--write-order", type=Path, help="also write the files' times as JSON (tests/file_times.json)"
    )
    args = parser.parse_args(argv)
    if not args.report.is_file():
        parser.error(f"{args.report}: no such report (run make test first)")
    rows = file_times(args.report)
    print(render(rows, args.top, args.markdown))
    if args.write_order:
        write_order(rows, args.write_order)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
