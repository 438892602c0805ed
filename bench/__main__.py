"""`python -m bench [--quick] [--only NAME[,NAME]] [--repeat N] [--lines spark41,spark35]`: run the
figures, print one line each, and write docs/BENCHMARKS.md (with --quick: .bench/BENCHMARKS.quick.md).

Every figure runs as its own process (`python -m bench.fig_<name>`); its log goes to
.bench/logs/<name>.log and its result to .bench/results[-quick]/<name>.json, so `--only`
refreshes one figure and the document keeps the others' last results.

`--lines spark41,spark35` runs each figure on both Spark lines, one after the other, the order
swapped from one figure to the next (A B, B A, ...) so that the machine's load falls on both
alike: spark41 is this environment (emr-spark-8.1.0's Spark 4.1, Iceberg 1.11), spark35 the
emr-7.x line's environment (`make venv-emr7 jars-emr7`: Spark 3.5.6, Iceberg 1.10), whose
results go to .bench/results-spark35/ and into the document's side-by-side section.
`make bench-lines` runs figures 2, 3 and 6 that way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from bench import core, report

FIGURES = {
    "dagbag": "bench.fig_dagbag",
    "features": "bench.fig_features",
    "pagerank": "bench.fig_pagerank",
    "local_dag": "bench.fig_local_dag",
    "emr": "bench.fig_emr",
    "commit": "bench.fig_commit",
    "repair": "bench.fig_repair",
}
SIZED = ("features", "commit")  # the figures that take --sizes
LINES = ("spark41", "spark35")  # this environment; the emr-7.x line's (.venv-emr7)
EMR7_VENV = core.PROJECT_ROOT / ".venv-emr7"
# figure 3's oracle (networkx, scipy) for the emr-7.x environment, which has neither (make bench-lines)
EMR7_EXTRA = core.PROJECT_ROOT / ".bench" / "emr7-site"


def line_process(line: str) -> tuple[str, dict[str, str]]:
    """The interpreter and the environment of a figure process on `line`."""
    env = core.child_env()
    if line == "spark41":
        return sys.executable, env
    python = str(EMR7_VENV / "bin" / "python")
    if not Path(python).is_file():
        raise RuntimeError(f"{python} is missing: run `make venv-emr7 jars-emr7`")
    env.update(
        PYSPARK_PYTHON=python,
        SPARK_JOBS_JARS_DIR=str(core.PROJECT_ROOT / ".cache" / "jars-emr7"),
        PYTHONPATH=str(EMR7_EXTRA),
    )
    return python, env


def store_of(work: Path, quick: bool, line: str) -> Path:
    return work / ("results-quick" if quick else "results") if line == "spark41" else work / f"results-{line}"


def run_figure(name: str, args: argparse.Namespace, work: Path, line: str = "spark41") -> core.FigureResult:
    python, env = line_process(line)
    cmd = [python, "-m", FIGURES[name], "--work", str(work)]
    if args.quick:
        cmd.append("--quick")
    if args.repeat:
        cmd += ["--repeat", str(args.repeat)]
    if name in SIZED and args.sizes:
        cmd += ["--sizes", args.sizes]
    log = work / "logs" / (f"{name}.log" if line == "spark41" else f"{name}-{line}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    result = None
    with (
        log.open("w") as out,
        subprocess.Popen(
            cmd,
            cwd=core.PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith(core.RESULT_PREFIX):
                result = core.FigureResult.from_dict(json.loads(line[len(core.RESULT_PREFIX) :]))
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"figure {name} failed (exit {proc.returncode}); see {log}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--only", action="append", default=[], help=f"figures to run: {', '.join(FIGURES)}")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (default per figure)")
    parser.add_argument(
        "--sizes",
        default=None,
        help="figures 2 and 6: two row counts, e.g. 100000,1000000",
    )
    parser.add_argument("--work", type=Path, default=None, help="work directory (default .bench/)")
    parser.add_argument("--out", type=Path, default=None, help="document to write")
    parser.add_argument(
        "--render-only", action="store_true", help="run nothing; write the document from the stored results"
    )
    parser.add_argument(
        "--lines",
        default="spark41",
        help="Spark lines to run each figure on, in turn: spark41 (this environment), spark35 (.venv-emr7)",
    )
    args = parser.parse_args(argv)
    lines = [x.strip() for x in args.lines.split(",") if x.strip()]
    if not lines or set(lines) - set(LINES):
        parser.error(f"--lines: choose from {list(LINES)}")
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")

    work = core.work_dir(args.work)
    store = store_of(work, args.quick, "spark41")
    failed = []
    for i, name in enumerate([] if args.render_only else names):
        for line in lines if i % 2 == 0 else lines[::-1]:
            try:
                result = run_figure(name, args, work, line)
            except RuntimeError as exc:
                print(f"figure {name} ({line}): FAILED: {exc}", flush=True)
                failed.append(f"{name} ({line})")
                continue
            print(f"figure {result.figure} ({name}, {line}): {result.summary}", flush=True)
            line_store = store_of(work, args.quick, line)
            line_store.mkdir(parents=True, exist_ok=True)
            (line_store / f"{name}.json").write_text(json.dumps(asdict(result), default=str, indent=1))

    def stored(folder: Path) -> list[core.FigureResult]:
        paths = [folder / f"{name}.json" for name in FIGURES]
        return [core.FigureResult.from_dict(json.loads(p.read_text())) for p in paths if p.exists()]

    results = stored(store)
    others = {line: stored(store_of(work, args.quick, line)) for line in LINES if line != "spark41"}
    findings_path = Path(__file__).with_name("findings.md")
    findings = findings_path.read_text() if findings_path.exists() and not args.quick else ""
    out = args.out or (
        work / "BENCHMARKS.quick.md" if args.quick else core.PROJECT_ROOT / "docs" / "BENCHMARKS.md"
    )
    mode = "quick (development sizes, not the reported figures)" if args.quick else "full sizes"
    report.write(out, report.render(results, core.machine(), mode, findings, others))
    print(f"wrote {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
