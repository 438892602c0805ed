"""Job `graph`: PageRank and label-propagation communities of the referral graph up to ds.

Replaces date ds of `curated.referral_graph`: one row per customer named in any referral dated on or
before ds.

Both algorithms are iterative. A graph whose distinct edges fit comfortably in the driver's
memory (up to LOCAL_MAX_EDGES, a Spark setting) is computed there with numpy: the same
iterations, each a few vector operations instead of a Spark job of joins and shuffles (a few
milliseconds instead of seconds). A larger graph is computed with Spark. Both paths follow the
same rules and stop at the same tolerance; the tests hold both against networkx.
"""

from __future__ import annotations

import logging

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import table_reads, table_writes
from spark_jobs.schemas import CURATED

log = logging.getLogger("spark_jobs.graph")

OUTPUT = "referral_graph"
DAMPING = 0.85
# Stop when no node's rank moved by more than this in one iteration. The power iteration
# contracts by at least DAMPING per step, so the distance to the fixed point is then below
# TOLERANCE * DAMPING / (1 - DAMPING) < 6e-8: 17x inside the contract's 1e-6 per node. (1e-10
# cost 19 iterations instead of 13 on the demo and 1M-edge graphs for no contract benefit.)
TOLERANCE = 1e-8
# 0.85 ** 1000 < 1e-70: reaching this guard means something is wrong, not slow convergence.
MAX_ITERATIONS = 1000
# Cached iterations still carry their whole logical plan; a local checkpoint every few
# iterations cuts it so planning time does not grow with the iteration count.
CHECKPOINT_EVERY = 5
LABEL_PROPAGATION_ITERATIONS = 5
# Up to this many distinct edges the graph is computed on the driver (an edge is two ids and
# a few numbers there: 5M edges is a few hundred MB); beyond, with Spark. Settable per session.
LOCAL_MAX_EDGES_KEY = "spark.pipeline.graph.local-max-edges"
LOCAL_MAX_EDGES = 5_000_000


# ---- graph from referrals ------------------------------------------------------------------
def customers_from_referrals(referrals: DataFrame) -> DataFrame:
    """`id`: every non-null customer id named in a referral, once.

    A customer whose only referral is a self-referral (or whose counterpart id is null) is still
    a customer appearing in a referral: a node without edges.
    """
    ids = referrals.select(F.col("referrer_id").alias("id")).unionByName(
        referrals.select(F.col("referred_id").alias("id"))
    )
    return ids.filter(F.col("id").isNotNull()).distinct()


def _simple_edges(edges: DataFrame) -> DataFrame:
    src, dst = F.col("src"), F.col("dst")
    return edges.select("src", "dst").filter(src.isNotNull() & dst.isNotNull() & (src != dst)).distinct()


def edges_from_referrals(referrals: DataFrame) -> DataFrame:
    """`src`, `dst`: the distinct directed edges referrer -> referred, without self-loops or nulls."""
    return _simple_edges(
        referrals.select(F.col("referrer_id").alias("src"), F.col("referred_id").alias("dst"))
    )


def _nodes_of(edges: DataFrame) -> DataFrame:
    ids = edges.select(F.col("src").alias("id")).unionByName(edges.select(F.col("dst").alias("id")))
    return ids.filter(F.col("id").isNotNull()).distinct()


def _partitions(spark: SparkSession) -> int:
    return int(spark.conf.get("spark.sql.shuffle.partitions"))


# ---- PageRank ------------------------------------------------------------------------------
def pagerank(
    edges: DataFrame,
    nodes: DataFrame | None = None,
    damping: float = DAMPING,
    tol: float = TOLERANCE,
    max_iter: int = MAX_ITERATIONS,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> DataFrame:
    """`id`, `pagerank` for every node: the PageRank networkx.pagerank computes.

    Edges are directed src -> dst (duplicates and self-loops are dropped); `nodes` adds nodes
    without edges (default: the edge endpoints). The rank of a dangling node (no out-edge) is
    spread uniformly over all nodes, so the ranks sum to 1 at every step; the result is
    renormalised once at the end to remove float drift.

    Each iteration is one join (ranks with the out-links, co-partitioned by source so the links
    are never shuffled again) and one aggregation by destination. Every node also has a
    weight-0 link to itself, so each node shows up in the aggregation even without in-links and
    carries its previous rank and dangling flag along; the convergence delta and the next
    dangling mass are then one scalar aggregate over the new ranks.
    """
    spark = edges.sparkSession
    edges = _simple_edges(edges)
    if nodes is None:
        nodes = _nodes_of(edges)
    out_degree = edges.groupBy("src").agg(F.count(F.lit(1)).alias("out_degree"))
    links = edges.join(out_degree, "src").select(
        "src",
        "dst",
        (F.lit(1.0) / F.col("out_degree")).alias("weight"),
        F.lit(None).cast("boolean").alias("dangling"),
    )
    # `dangling` is non-null exactly on the self rows, which is how the aggregation finds them.
    self_rows = (
        nodes.select("id")
        .distinct()
        .join(out_degree.withColumnRenamed("src", "id"), "id", "left")
        .select(
            F.col("id").alias("src"),
            F.col("id").alias("dst"),
            F.lit(0.0).alias("weight"),
            F.col("out_degree").isNull().alias("dangling"),
        )
    )
    graph = links.unionByName(self_rows).repartition(_partitions(spark), "src").cache()
    is_self = F.col("dangling").isNotNull()
    counts = graph.filter(is_self).agg(
        F.count(F.lit(1)).alias("n"), F.count(F.when(F.col("dangling"), 1)).alias("n_dangling")
    )
    n, n_dangling = counts.first()
    if n == 0:
        graph.unpersist()
        return spark.createDataFrame([], "id string, pagerank double")

    ranks = graph.filter(is_self).select(F.col("src").alias("id"), F.lit(1.0 / n).alias("rank"))
    dangling_mass, total, cached = n_dangling / n, 1.0, []
    for iteration in range(1, max_iter + 1):
        teleport = (1.0 - damping) / n + damping * dangling_mass / n
        new = (
            # Hash join with the ranks as build side: no sort of the (large) link table.
            graph.join(ranks.select(F.col("id").alias("src"), "rank").hint("shuffle_hash"), "src")
            .groupBy(F.col("dst").alias("id"))
            .agg(
                F.sum(F.col("rank") * F.col("weight")).alias("inflow"),
                F.max(F.when(is_self, F.col("rank"))).alias("previous"),
                F.max("dangling").alias("dangling"),
            )
            .select(
                "id",
                (F.lit(teleport) + F.lit(damping) * F.col("inflow")).alias("rank"),
                "previous",
                "dangling",
            )
        )
        new = new.localCheckpoint(eager=True) if iteration % checkpoint_every == 0 else new.cache()
        delta, dangling_mass, total = new.agg(
            F.max(F.abs(F.col("rank") - F.col("previous"))),
            F.coalesce(F.sum(F.when(F.col("dangling"), F.col("rank"))), F.lit(0.0)),
            F.sum("rank"),
        ).first()
        for old in cached:  # `new` is materialised: the previous cached step is no longer needed
            old.unpersist()
        cached = [new] if new.is_cached else []
        ranks = new
        if delta < tol:
            log.warning(
                "pagerank: %d nodes converged after %d iterations (max delta %.3g)", n, iteration, delta
            )
            break
    else:
        log.warning("pagerank: stopped after %d iterations, max delta %.3g >= %.3g", max_iter, delta, tol)

    result = ranks.select("id", (F.col("rank") / F.lit(total)).alias("pagerank")).localCheckpoint(eager=True)
    for old in cached:
        old.unpersist()
    graph.unpersist()
    return result


# ---- communities ---------------------------------------------------------------------------
def label_propagation(
    edges: DataFrame, nodes: DataFrame | None = None, iterations: int = LABEL_PROPAGATION_ITERATIONS
) -> DataFrame:
    """`id`, `label`: synchronous label propagation, starting from label = id.

    In each iteration every node takes the label most frequent among its neighbours, where each
    distinct directed edge u -> v sends u's label to v and v's label to u (so a pair of opposite
    edges sends twice); ties go to the smallest label; a node without neighbours keeps its own.
    """
    edges = _simple_edges(edges)
    if nodes is None:
        nodes = _nodes_of(edges)
    nodes = nodes.select("id").distinct()
    # A weight-0 message from each node to itself keeps nodes without neighbours in the vote
    # (they keep their label) and can never outvote a real neighbour.
    messages = (
        edges.select(F.col("src").alias("sender"), F.col("dst").alias("receiver"), F.lit(1).alias("weight"))
        .unionByName(
            edges.select(
                F.col("dst").alias("sender"), F.col("src").alias("receiver"), F.lit(1).alias("weight")
            )
        )
        .unionByName(
            nodes.select(F.col("id").alias("sender"), F.col("id").alias("receiver"), F.lit(0).alias("weight"))
        )
        # Same subtree in every iteration: Spark reuses this one exchange for all of them.
        .repartition(_partitions(edges.sparkSession), "sender")
    )
    labels = nodes.select("id", F.col("id").alias("label"))
    for _ in range(iterations):
        votes = (
            messages.join(labels.withColumnRenamed("id", "sender"), "sender")
            .groupBy("receiver", "label")
            .agg(F.sum("weight").alias("votes"))
        )
        # min over (-votes, label): the most votes first, then the smallest label.
        best = F.min(F.struct((-F.col("votes")).alias("neg_votes"), F.col("label").alias("label")))
        labels = votes.groupBy(F.col("receiver").alias("id")).agg(best.alias("best"))
        labels = labels.select("id", F.col("best.label").alias("label"))
    return labels


# ---- the same, on the driver ------------------------------------------------------------------
def pagerank_arrays(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    damping: float = DAMPING,
    tol: float = TOLERANCE,
    max_iter: int = MAX_ITERATIONS,
) -> np.ndarray:
    """PageRank of nodes 0..n-1 over the distinct edges src -> dst (no self-loops), as `pagerank`.

    Each step: rank = teleport + damping * inflow, where inflow sums rank/out_degree over
    in-edges and the rank of dangling nodes is spread uniformly (so the ranks sum to 1); stop
    when no rank moved by more than tol; renormalise once at the end.
    """
    out_degree = np.bincount(src, minlength=n).astype(float)
    dangling = out_degree == 0
    weight = 1.0 / out_degree[src] if len(src) else np.zeros(0)
    rank = np.full(n, 1.0 / n)
    delta = float("inf")
    for iteration in range(1, max_iter + 1):
        teleport = (1.0 - damping) / n + damping * rank[dangling].sum() / n
        new = teleport + damping * np.bincount(dst, weights=rank[src] * weight, minlength=n)
        delta = float(np.abs(new - rank).max())
        rank = new
        if delta < tol:
            log.warning("pagerank: %d nodes converged after %d iterations on the driver", n, iteration)
            break
    else:
        log.warning("pagerank: stopped after %d iterations, max delta %.3g >= %.3g", max_iter, delta, tol)
    return rank / rank.sum()


def label_propagation_arrays(
    n: int, src: np.ndarray, dst: np.ndarray, iterations: int = LABEL_PROPAGATION_ITERATIONS
) -> np.ndarray:
    """Label propagation of nodes 0..n-1 over the distinct edges, as `label_propagation`.

    Labels are node numbers, numbered in the order of the ids, so the smallest label is the
    smallest id. Each distinct edge u -> v sends u's label to v and v's to u; a node takes the
    label with the most votes, ties to the smallest; a node without neighbours keeps its own.
    """
    receivers = np.concatenate([dst, src])
    senders = np.concatenate([src, dst])
    labels = np.arange(n)
    for _ in range(iterations):
        if not len(receivers):
            break
        # count (receiver, label) pairs, then per receiver the most frequent, smallest label; a
        # pair is one int64 key (receiver * n + label: n <= LOCAL_MAX_EDGES * 2, so < 2**63),
        # which np.unique sorts many times faster than pairs as rows (axis=1: 10 s at 1M edges)
        keys, counts = np.unique(receivers * n + labels[senders], return_counts=True)
        receiver, label = np.divmod(keys, n)  # sorted by receiver, then label
        # each receiver's run of keys: its most votes, then the first key with that many (the
        # smallest label, as the run is sorted by label)
        starts = np.flatnonzero(np.r_[True, receiver[1:] != receiver[:-1]])
        run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(receiver)]))
        top = np.flatnonzero(counts == np.maximum.reduceat(counts, starts)[run])
        best = top[np.r_[True, run[top][1:] != run[top][:-1]]]
        new = labels.copy()
        new[receiver[best]] = label[best]
        labels = new
    return labels


def referral_graph_on_driver(nodes: DataFrame, edges: DataFrame) -> DataFrame:
    """The referral_graph rows of a graph small enough for the driver, computed with numpy.

    The ids and the edges cross to the driver as one aggregated row each (lists, not a Python
    Row per node and per edge), and the result goes back as one row of three arrays that Spark
    explodes (figure 3 of docs/BENCHMARKS.md: at 1M edges this path took 30 s, of which
    PageRank 0.08 s and the label propagation 10 s; moving rows one by one was most of the rest).
    """
    spark = nodes.sparkSession
    schema = CURATED[OUTPUT]
    ids = sorted(nodes.agg(F.collect_list("id")).collect()[0][0])
    if not ids:
        return spark.createDataFrame([], schema)
    index = {customer: i for i, customer in enumerate(ids)}
    # One aggregate fills both lists from the same rows in the same order: element i of each is
    # edge i (half the time of a list of [src, dst] pairs).
    [(sources, targets)] = edges.agg(F.collect_list("src"), F.collect_list("dst")).collect()
    if len(sources) != len(targets):  # cannot happen: src and dst are never null here
        raise RuntimeError(f"graph: {len(sources)} edge sources but {len(targets)} targets")
    src = np.fromiter((index[u] for u in sources), dtype=np.int64, count=len(sources))
    dst = np.fromiter((index[v] for v in targets), dtype=np.int64, count=len(targets))
    ranks = pagerank_arrays(len(ids), src, dst)
    labels = label_propagation_arrays(len(ids), src, dst)
    columns = spark.createDataFrame(
        [(ids, ranks.tolist(), [ids[i] for i in labels.tolist()])],
        "customer_id array<string>, pagerank array<double>, community_id array<string>",
    )
    computed = columns.select(F.explode(F.arrays_zip("customer_id", "pagerank", "community_id")).alias("r"))
    # The customers are taken from the referrals' plan, not from the local rows alone, so that the
    # write's lineage names its input (processed.referrals), as the Spark path's does.
    rows = nodes.select(F.col("id").alias("customer_id")).join(computed.select("r.*"), "customer_id")
    return rows.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


# ---- the output ----------------------------------------------------------------------------
def referral_graph(referrals: DataFrame) -> DataFrame:
    """The referral_graph rows: customer_id, pagerank, community_id for every customer in `referrals`."""
    schema = CURATED[OUTPUT]
    spark = referrals.sparkSession
    nodes = customers_from_referrals(referrals)
    edges = edges_from_referrals(referrals).cache()
    limit = int(spark.conf.get(LOCAL_MAX_EDGES_KEY, str(LOCAL_MAX_EDGES)))
    if edges.count() <= limit:
        try:
            return referral_graph_on_driver(nodes, edges)
        finally:
            edges.unpersist()
    ranks = pagerank(edges, nodes)
    communities = label_propagation(edges, nodes)
    return ranks.join(communities, "id").select(
        F.col("id").cast(schema["customer_id"].dataType).alias("customer_id"),
        F.col("pagerank").cast(schema["pagerank"].dataType).alias("pagerank"),
        F.col("label").cast(schema["community_id"].dataType).alias("community_id"),
    )


def run(spark: SparkSession, args) -> dict:
    ds = args.ds
    # The partition date is the UTC date of referral_ts: all referrals dated on or before ds.
    referrals = table_reads.read_history(spark, "processed", "referrals", ds).cache()
    try:
        rows_in = referrals.count()
        written = table_writes.replace_date(
            referral_graph(referrals), "curated", OUTPUT, CURATED[OUTPUT], ds, job="graph"
        )
    finally:
        referrals.unpersist()
    return {
        "rows_in": {"referrals": rows_in},
        "rows_out": {OUTPUT: written.total},
        "rows_quarantined": 0,
        "tables": {f"curated.{OUTPUT}": written.as_metrics()},
    }
