"""`python -m bench [--quick] [--only NAME[,NAME]] [--repeat N]`: run the figures, print one line
each, and write docs/BENCHMARKS.md (with --quick: .bench/BENCHMARKS.quick.md).

Every figure runs as its own process (`python -m bench.fig_<name>`); its log goes to
.bench/logs/<name>.log and its result to .bench/results[-quick]/<name>.json, so `--only`
refreshes one figure and the document keeps the others' last results.
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


def run_figure(name: str, args: argparse.Namespace, work: Path) -> core.FigureResult:
    cmd = [sys.executable, "-m", FIGURES[name], "--work", str(work)]
    if args.quick:
        cmd.append("--quick")
    if args.repeat:
        cmd += ["--repeat", str(args.repeat)]
    if name in SIZED and args.sizes:
        cmd += ["--sizes", args.sizes]
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result = None
    with (
        log.open("w") as out,
        subprocess.Popen(
            cmd,
            cwd=core.PROJECT_ROOT,
            env=core.child_env(),
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
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")

    work = core.work_dir(args.work)
    store = work / ("results-quick" if args.quick else "results")
    store.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in [] if args.render_only else names:
        try:
            result = run_figure(name, args, work)
        except RuntimeError as exc:
            print(f"figure {name}: FAILED: {exc}", flush=True)
            failed.append(name)
            continue
        print(f"figure {result.figure} ({name}): {result.summary}", flush=True)
        (store / f"{name}.json").write_text(json.dumps(asdict(result), default=str, indent=1))

    results = []
    for name in FIGURES:
        path = store / f"{name}.json"
        if path.exists():
            results.append(core.FigureResult.from_dict(json.loads(path.read_text())))
    findings_path = Path(__file__).with_name("findings.md")
    findings = findings_path.read_text() if findings_path.exists() and not args.quick else ""
    out = args.out or (
        work / "BENCHMARKS.quick.md" if args.quick else core.PROJECT_ROOT / "docs" / "BENCHMARKS.md"
    )
    mode = "quick (development sizes, not the reported figures)" if args.quick else "full sizes"
    report.write(out, report.render(results, core.machine(), mode, findings))
    print(f"wrote {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
