"""Figure 3: PageRank of a generated 1M-edge graph: the graph job's two paths against networkx.

The graph job computes PageRank and the label-propagation communities on the driver with numpy
when the graph has at most `LOCAL_MAX_EDGES` distinct edges (at 1M edges that is the path the
job takes), and with Spark above that. Both paths are measured as the job runs them,
`graph.referral_graph(referrals)` in one Spark session: as configured (**driver**), and with
`spark.pipeline.graph.local-max-edges=0` set on the session (**Spark**, forced). Each time
covers reading the edge list (one Parquet file) into Spark, the job's caching and counting of
the referrals, the whole computation (PageRank, and the communities, which networkx does not
compute) and materialising the result (a local checkpoint). The PageRank part of each (the
driver's `pagerank_arrays`, Spark's `pagerank`) is reported apart, timed by wrapping those
functions. networkx: reading the same Parquet file with pyarrow, building the DiGraph and
`nx.pagerank` (scipy).

Accuracy: the job stops when no rank moved by more than its `TOLERANCE` (1e-8) in one step,
which leaves every rank within 1e-8 * 0.85 / 0.15 < 6e-8 of the fixed point; networkx gets
tol = TOLERANCE / N (its stop is an L1 change below N * tol), the same bound or tighter. The
largest abs(job - networkx) over the nodes is reported for each path (target <= 1e-6). The
three are run in turn, `--repeat` times each (default 3), min and median reported.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cli, core, data

FULL_EDGES = 1_000_000
QUICK_EDGES = 20_000
PATHS = {
    "driver": "driver (numpy), the job's path at this size",
    "spark": "Spark (forced: local-max-edges=0)",
}


class _Iterations(logging.Handler):
    """Catches the graph job's 'converged after N iterations' log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.iterations: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"(?:after|stopped after) (\d+) iterations", record.getMessage())
        if found:
            self.iterations.append(int(found.group(1)))


class _Timed:
    """Replaces module attributes by wrappers that add each call's seconds to `seconds`."""

    def __init__(self, module: Any, *names: str) -> None:
        self.module, self.names = module, names
        self.seconds = 0.0

    def __enter__(self) -> _Timed:
        self.saved = {name: getattr(self.module, name) for name in self.names}
        for name, original in self.saved.items():
            setattr(self.module, name, self._wrap(original))
        return self

    def _wrap(self, original: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def __exit__(self, *exc: object) -> None:
        for name, original in self.saved.items():
            setattr(self.module, name, original)


def prepare(work: Path, edges: int) -> Path:
    path = work / "fig3" / f"edges_{edges}.parquet"
    if not path.exists():
        data.edge_list(path, edges)
    return path


def job_graph(spark, path: Path, local_max_edges: int | None) -> tuple[float, float, Any, list[int]]:
    """One run of the job's computation: (seconds, of which PageRank, the result, iterations)."""
    from pyspark.sql import functions as F

    from spark_jobs import graph

    if local_max_edges is None:
        spark.conf.unset(graph.LOCAL_MAX_EDGES_KEY)
    else:
        spark.conf.set(graph.LOCAL_MAX_EDGES_KEY, str(local_max_edges))
    handler = _Iterations()
    logging.getLogger("spark_jobs.graph").addHandler(handler)

    def compute():
        edges = spark.read.parquet(path.resolve().as_uri())
        referrals = edges.select(F.col("src").alias("referrer_id"), F.col("dst").alias("referred_id")).cache()
        referrals.count()  # as the job does before computing
        try:
            return graph.referral_graph(referrals).localCheckpoint(eager=True)
        finally:
            referrals.unpersist()

    try:
        with _Timed(graph, "pagerank", "pagerank_arrays") as pagerank:
            seconds, result = core.timed(compute)
    finally:
        logging.getLogger("spark_jobs.graph").removeHandler(handler)
        spark.conf.unset(graph.LOCAL_MAX_EDGES_KEY)
    return seconds, pagerank.seconds, result, handler.iterations


def networkx_pagerank(path: Path, tol: float) -> dict[str, float]:
    import networkx as nx
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    graph = nx.DiGraph()
    graph.add_edges_from(zip(table.column("src").to_pylist(), table.column("dst").to_pylist(), strict=True))
    return nx.pagerank(graph, alpha=0.85, tol=tol / graph.number_of_nodes(), max_iter=1000)


def run(args: argparse.Namespace) -> core.FigureResult:
    from spark_jobs import graph
    from spark_jobs.session import get_spark

    load = core.load_average()
    work = core.work_dir(args.work)
    edges = QUICK_EDGES if args.quick else FULL_EDGES
    n = cli.runs(args, full=3, quick=3)
    path = prepare(work, edges)
    startup, spark = core.timed(lambda: get_spark("bench_pagerank"))
    limits = {"driver": None, "spark": 0}
    nx_seconds: list[float] = []
    seconds: dict[str, list[float]] = {p: [] for p in PATHS}
    pagerank_seconds: dict[str, list[float]] = {p: [] for p in PATHS}
    iterations: dict[str, list[int]] = {p: [] for p in PATHS}
    loads: list[float] = []
    expected: dict[str, float] = {}
    got: dict[str, dict[str, float]] = {}
    for _ in range(n):
        loads.append(core.load_average())
        took, expected = core.timed(lambda: networkx_pagerank(path, graph.TOLERANCE))
        nx_seconds.append(took)
        for name, limit in limits.items():
            took, pr, result, its = job_graph(spark, path, limit)
            seconds[name].append(took)
            pagerank_seconds[name].append(pr)
            iterations[name] += its
            got[name] = {row["customer_id"]: row["pagerank"] for row in result.collect()}
    spark.stop()

    nx_timing = core.Timing(nx_seconds)
    rows = [core.Row("networkx (read + build graph + pagerank)", nx_timing.min, nx_timing.median)]
    details: dict[str, Any] = {"networkx": nx_timing.as_dict()}
    ok = True
    for name, title in PATHS.items():
        timing, pr = core.Timing(seconds[name]), core.Timing(pagerank_seconds[name])
        missing = set(expected) ^ set(got[name])
        diff = max(abs(got[name][k] - expected[k]) for k in expected if k in got[name])
        ratio, ratio_min = timing.median / nx_timing.median, timing.min / nx_timing.min
        is_job = name == "driver"
        rows += [
            core.Row(
                f"{title}: read + referral_graph (PageRank + communities)",
                timing.min,
                timing.median,
                note=f"iterations {sorted(set(iterations[name]))}",
            ),
            core.Row(f"{title}: of which PageRank", pr.min, pr.median),
            core.Row(
                f"{title} / networkx",
                ratio_min,
                ratio,
                unit="x",
                target="<= 5" if is_job else "",
                met=core.check(ratio, 5) if is_job else None,
                note="" if is_job else f"the job takes this path above {graph.LOCAL_MAX_EDGES:,} edges",
            ),
            core.Row(
                f"{title}: max abs(job - networkx) per node",
                diff,
                diff,
                unit="",
                target="<= 1e-6",
                met=diff <= 1e-6 and not missing,
                note=f"{len(expected):,} nodes, {len(missing)} on one side only",
            ),
        ]
        ok = ok and all(r.met is not False for r in rows)
        details[name] = {
            "seconds": timing.as_dict(),
            "pagerank": pr.as_dict(),
            "ratio_median": ratio,
            "max_diff": diff,
            "missing": len(missing),
            "iterations": iterations[name],
        }
    rows.append(core.Row("Spark session start-up (once, not in the times)", startup, startup))
    d, sp = details["driver"], details["spark"]
    summary = (
        f"pagerank {edges:,} edges: job path (driver) {d['seconds']['median']:.1f}s, "
        f"{d['ratio_median']:.2f}x networkx (target <= 5), max diff {d['max_diff']:.1e}; "
        f"Spark forced {sp['seconds']['median']:.1f}s, {sp['ratio_median']:.2f}x, "
        f"max diff {sp['max_diff']:.1e}; "
        f"networkx {nx_timing.median:.1f}s; medians of {n}, load {load}"
    )
    return core.FigureResult(
        figure=3,
        name="pagerank",
        title=f"PageRank, {edges:,} edges: the graph job (driver and Spark paths) vs networkx",
        summary=summary,
        load_start=load,
        rows=rows,
        details={**details, "edges": edges, "nodes": len(expected), "runs": n, "loads": loads},
        ok=ok,
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    run(cli.parser(__doc__).parse_args(argv)).emit()


if __name__ == "__main__":
    main()
