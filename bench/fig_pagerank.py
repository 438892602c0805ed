"""Figure 3: PageRank of a generated 1M-edge graph, the graph job's Spark code against networkx.

Both start from the same Parquet edge list and stop at the same guaranteed accuracy: every
rank within 1e-6 of the exact fixed point. The iteration contracts by 0.85 per step, so a
step that moves no rank by more than t leaves at most t * 0.85 / 0.15 to go: Spark (max-norm
stop) gets tol = 1.5e-7 and networkx (whose stop is an L1 change below N * tol) gets
tol = 1.5e-7 / N, the same bound or tighter. Times include reading the edges and building
each side's graph; the max difference between the two results is reported too.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from bench import cli, core, data

FULL_EDGES = 1_000_000
QUICK_EDGES = 20_000
STEP_TOL = 1.5e-7  # max-norm change per step -> within 1.5e-7 * 0.85 / 0.15 < 1e-6 of the fixed point


class _Iterations(logging.Handler):
    """Catches the graph job's 'converged after N iterations' log line."""

    def __init__(self) -> None:
        super().__init__()
        self.iterations: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"(?:after|stopped after) (\d+) iterations", record.getMessage())
        if found:
            self.iterations.append(int(found.group(1)))


def prepare(work: Path, edges: int) -> Path:
    path = work / "fig3" / f"edges_{edges}.parquet"
    if not path.exists():
        data.edge_list(path, edges)
    return path


def spark_pagerank(spark, path: Path):
    from spark_jobs.graph import pagerank

    edges = spark.read.parquet(path.resolve().as_uri())
    ranks = pagerank(edges, tol=STEP_TOL)  # materialised (local checkpoint) before it returns
    return ranks


def networkx_pagerank(path: Path) -> dict[str, float]:
    import networkx as nx
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    graph = nx.DiGraph()
    graph.add_edges_from(zip(table.column("src").to_pylist(), table.column("dst").to_pylist(), strict=True))
    return nx.pagerank(graph, alpha=0.85, tol=STEP_TOL / graph.number_of_nodes(), max_iter=1000)


def run(args: argparse.Namespace) -> core.FigureResult:
    from spark_jobs.common import get_spark

    load = core.load_average()
    work = core.work_dir(args.work)
    edges = QUICK_EDGES if args.quick else FULL_EDGES
    n = cli.runs(args, full=3)
    path = prepare(work, edges)

    nx_timing, nx_results = core.repeat(lambda: networkx_pagerank(path), n)
    expected = nx_results[-1]
    load_spark = core.load_average()
    startup, spark = core.timed(lambda: get_spark("bench_pagerank"))
    handler = _Iterations()
    logging.getLogger("spark_jobs.graph").addHandler(handler)
    spark_timing, spark_results = core.repeat(lambda: spark_pagerank(spark, path), n)
    got = {row["id"]: row["pagerank"] for row in spark_results[-1].collect()}
    spark.stop()

    missing = set(expected) ^ set(got)
    diff = max(abs(got[k] - expected[k]) for k in expected if k in got)
    ratio = spark_timing.median / nx_timing.median
    ratio_min = spark_timing.min / nx_timing.min
    rows = [
        core.Row(
            "networkx (read + build graph + pagerank)", nx_timing.min, nx_timing.median, note=f"load {load}"
        ),
        core.Row(
            "Spark graph.pagerank (read + pagerank)",
            spark_timing.min,
            spark_timing.median,
            note=f"load {load_spark}; iterations {sorted(set(handler.iterations))}",
        ),
        core.Row("Spark/networkx", ratio_min, ratio, unit="x", target="<= 5", met=core.check(ratio, 5)),
        core.Row(
            "max |Spark - networkx| per node",
            diff,
            diff,
            unit="",
            target="<= 1e-6",
            met=diff <= 1e-6 and not missing,
            note=f"{len(expected):,} nodes, {len(missing)} on one side only",
        ),
        core.Row("Spark session start-up (once, not in the times)", startup, startup),
    ]
    targets = [r.met for r in rows if r.met is not None]
    summary = (
        f"pagerank {edges:,} edges: Spark/networkx {ratio:.2f}x (target <= 5; "
        f"Spark {spark_timing.median:.1f}s, networkx {nx_timing.median:.1f}s), "
        f"max diff {diff:.2e} (target <= 1e-6), load {load}"
    )
    return core.FigureResult(
        figure=3,
        name="pagerank",
        title=f"PageRank, {edges:,} edges, to 1e-6: Spark (graph job) vs networkx (scipy)",
        summary=summary,
        load_start=load,
        rows=rows,
        details={
            "edges": edges,
            "nodes": len(expected),
            "networkx": nx_timing.as_dict(),
            "spark": spark_timing.as_dict(),
            "iterations": handler.iterations,
            "runs": n,
        },
        ok=all(targets),
    )


def main(argv: list[str] | None = None) -> None:
    run(cli.parser(__doc__).parse_args(argv)).emit()


if __name__ == "__main__":
    main()
