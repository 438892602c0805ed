"""graph: PageRank against networkx, label propagation against a plain-Python reading of the contract."""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter

import networkx as nx
import numpy as np
import pytest

from spark_jobs import tables
from spark_jobs.common import JobInputError
from spark_jobs.graph import (
    LOCAL_MAX_EDGES_KEY,
    OUTPUT,
    customers_from_referrals,
    edges_from_referrals,
    label_propagation,
    label_propagation_arrays,
    pagerank,
    pagerank_arrays,
    run,
)
from spark_jobs.schemas import CURATED, PROCESSED
from tests.harness.lake_tables import dates_with_rows, load, read_table, seed_rows

D1, D2, D3 = dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)
T0 = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


def _referrals(spark, pairs, ts=T0):
    """A processed-referrals frame; a pair may repeat (then with another timestamp, as ingest keeps)."""
    rows = [(u, v, ts + dt.timedelta(seconds=i)) for i, (u, v) in enumerate(pairs)]
    return spark.createDataFrame(rows, PROCESSED["referrals"])


def _named(u) -> str:
    return f"c{u:03d}" if isinstance(u, int) else u


def _random_pairs(n: int, p: float, seed: int) -> list[tuple[str, str]]:
    graph = nx.gnp_random_graph(n, p, seed=seed, directed=True)
    return [(_named(u), _named(v)) for u, v in graph.edges()]


def _networkx_graph(pairs) -> nx.DiGraph:
    """The contract's graph: every named customer a node, distinct non-self-loop edges."""
    graph = nx.DiGraph()
    graph.add_nodes_from(x for pair in pairs for x in pair if x is not None)
    graph.add_edges_from((u, v) for u, v in pairs if u is not None and v is not None and u != v)
    return graph


def _networkx_pagerank(pairs) -> dict[str, float]:
    return nx.pagerank(_networkx_graph(pairs), alpha=0.85, tol=1e-12, max_iter=10_000)


def _label_propagation_oracle(pairs, iterations: int = 5) -> dict[str, str]:
    """The contract's rule, written out: votes from each distinct directed edge, both ways."""
    graph = _networkx_graph(pairs)
    neighbours = {n: [] for n in graph.nodes}
    for u, v in graph.edges:  # a DiGraph holds each directed edge once
        neighbours[v].append(u)
        neighbours[u].append(v)
    labels = {n: n for n in graph.nodes}
    for _ in range(iterations):
        new = {}
        for node, around in neighbours.items():
            if not around:
                new[node] = labels[node]
                continue
            votes = Counter(labels[m] for m in around)
            top = max(votes.values())
            new[node] = min(label for label, count in votes.items() if count == top)
        labels = new
    return labels


# ---- PageRank ------------------------------------------------------------------------------
# Each PageRank iteration on Spark is a few Spark jobs (seconds on a busy 2-core machine), so a
# case costs its iteration count. The Spark path is held against networkx on the job's own input
# below (with-spark), which holds every shape the contract names and the slow case: closed
# cycles whose error decays only at the damping rate (where a too loose stopping rule would
# show). This graph holds every shape too, for the driver's path (and converges in 11 iterations).
EVERY_SHAPE = [
    *[("hub", f"leaf{i}") for i in range(6)],  # a star; leaf1..leaf5 are dangling
    ("hub", "leaf0"),  # the same referral delivered twice: one edge
    ("leaf0", "hub"),  # a cycle
    ("leaf0", "leaf1"),
    ("x", "y"),  # a second component; y is dangling
    ("solo", "solo"),  # a customer whose only referral is a self-referral: no edge
    ("lone", None),  # a counterpart without id: no edge
]


def _assert_every_shape(pairs, without_edges: set[str]) -> None:
    graph = _networkx_graph(pairs)
    assert any(graph.out_degree(n) == 0 and graph.in_degree(n) > 0 for n in graph.nodes)  # dangling
    assert without_edges <= {n for n in graph.nodes if graph.degree(n) == 0}
    assert nx.number_weakly_connected_components(graph) >= 2
    assert len(pairs) > len(set(pairs))  # duplicates
    assert max(d for _, d in graph.out_degree) >= 5  # a star
    assert not nx.is_directed_acyclic_graph(graph)


def test_pagerank_of_an_empty_graph_is_empty(spark):
    ranks = pagerank(edges_from_referrals(_referrals(spark, [])))
    assert ranks.collect() == []


# ---- the driver's path: the same rules in numpy, for graphs that fit in memory ----------------
def _arrays(pairs):
    """The contract's graph as node numbers (in id order) and distinct edges, like the job builds it."""
    graph = _networkx_graph(pairs)
    ids = sorted(graph.nodes)
    index = {n: i for i, n in enumerate(ids)}
    src = np.array([index[u] for u, _ in graph.edges], dtype=np.int64)
    dst = np.array([index[v] for _, v in graph.edges], dtype=np.int64)
    return ids, src, dst


@pytest.mark.parametrize(
    "pairs", [EVERY_SHAPE, _random_pairs(300, 0.01, seed=11)], ids=["every-shape", "random-300"]
)
def test_pagerank_on_the_driver_equals_networkx_within_1e6_per_node(pairs):
    ids, src, dst = _arrays(pairs)
    got = dict(zip(ids, pagerank_arrays(len(ids), src, dst), strict=True))
    expected = _networkx_pagerank(pairs)
    assert max(abs(got[n] - expected[n]) for n in expected) < 1e-6
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)


def test_label_propagation_on_the_driver_equals_the_contract_rule():
    pairs = [
        tuple(None if x is None else f"{name}/{x}" for x in pair)
        for name, graph in LP_GRAPHS.items()
        for pair in graph
    ]
    ids, src, dst = _arrays(pairs)
    got = {ids[i]: ids[label] for i, label in enumerate(label_propagation_arrays(len(ids), src, dst))}
    assert got == _label_propagation_oracle(pairs, iterations=5)


# ---- label propagation ---------------------------------------------------------------------
def _labels(spark, pairs, iterations=5):
    referrals = _referrals(spark, pairs)
    result = label_propagation(
        edges_from_referrals(referrals), customers_from_referrals(referrals), iterations=iterations
    )
    return {r.id: r.label for r in result.collect()}


def test_label_propagation_one_step_ties_go_to_the_smallest_label(spark):
    # b hears a and c once each: a tie, the smallest label wins; a and c only hear b.
    assert _labels(spark, [("c", "b"), ("a", "b")], iterations=1) == {"a": "b", "b": "a", "c": "b"}


def test_label_propagation_counts_opposite_edges_twice_and_duplicates_once(spark):
    # b: z -> b and b -> z are two distinct edges (two votes for z); a -> b is one vote.
    # b2: y -> b2 delivered twice is still one edge: a tie between a2 and y, so a2. (Two
    # components of one run: labels only travel along edges.)
    labels = _labels(spark, [("z", "b"), ("b", "z"), ("a", "b"), ("y", "b2"), ("y", "b2"), ("a2", "b2")], 1)
    assert (labels["b"], labels["b2"]) == ("z", "a2")


def test_label_propagation_a_customer_with_only_a_self_referral_keeps_its_label(spark):
    labels = _labels(spark, [("solo", "solo"), ("a", "b"), ("b", "solo2"), ("solo2", "solo2")])
    assert labels["solo"] == "solo"
    assert labels == _label_propagation_oracle([("solo", "solo"), ("a", "b"), ("b", "solo2")])


RANDOM_PAIRS = _random_pairs(30, 0.07, seed=11)
LP_GRAPHS = {
    "random": RANDOM_PAIRS,
    "random_dense_with_reciprocal_edges": _random_pairs(25, 0.15, seed=5),
    "with_ties_and_self_loops": [
        ("d", "a"),
        ("c", "a"),
        ("b", "a"),
        ("a", "e"),
        ("e", "e"),
        ("f", "f"),
        ("b", "c"),
        ("c", "b"),
        ("c", "b"),
        ("x", "y"),
    ],
}


def test_label_propagation_five_steps_equals_the_contract_rule(spark):
    # Labels only travel along edges, so the graphs run as components of one graph (one Spark
    # run instead of three); a prefix per graph keeps the order of labels inside each of them.
    pairs = [
        tuple(None if x is None else f"{name}/{x}" for x in pair)
        for name, graph in LP_GRAPHS.items()
        for pair in graph
    ]
    got = _labels(spark, pairs)
    want = _label_propagation_oracle(pairs, iterations=5)
    assert got == want
    # not a trivial outcome: labels moved, and in every graph
    moved = {n.split("/")[0] for n, label in want.items() if label != n}
    assert moved == set(LP_GRAPHS)


# ---- the job -------------------------------------------------------------------------------
# Up to D2: two closed cycles ({a, b, c} fed by d; e <-> f), so PageRank's error decays only at
# the damping rate: the case where the job's stopping rule must still land within 1e-6; and
# every other shape the contract names (a star with dangling leaves, a duplicate, a
# self-referral, a null counterpart, three components).
ON_D1 = [("a", "b"), ("b", "c"), ("c", "a"), ("self", "self"), ("d", "a"), ("a", "b")]
ON_D2 = [("c", "b"), ("e", "f"), ("f", "e"), ("lonely", None), ("b", "a")]
ON_D2 += [*(("hub", f"leaf{i}") for i in range(5)), ("hub", "leaf0")]  # a star: dangling leaves
ON_D3 = [("a", "late"), ("late", "b"), ("b", "c")]  # after ds: must be ignored


def _referral_rows(day: dt.date, pairs) -> list[tuple]:
    ts = dt.datetime.combine(day, dt.time(8), dt.UTC)
    return [(u, v, ts + dt.timedelta(seconds=i), day) for i, (u, v) in enumerate(pairs)]


@pytest.fixture(scope="module", params=["on-the-driver", "with-spark"])
def job_output(spark, tmp_path_factory, request):
    """Referrals of D1..D3 (one commit); the job runs once for D2, on either path."""
    lake = (tmp_path_factory.mktemp("graph") / "lake").as_uri()
    rows = [r for day, pairs in ((D1, ON_D1), (D2, ON_D2), (D3, ON_D3)) for r in _referral_rows(day, pairs)]
    seed_rows(spark, lake, "processed", "referrals", rows)
    session = tables.bind(spark, lake)
    if request.param == "with-spark":
        session.conf.set(LOCAL_MAX_EDGES_KEY, "0")  # every graph is too large for the driver
    metrics = run(session, argparse.Namespace(ds=D2, lake=lake))
    schema = session.table(tables.identifier(session, "curated", OUTPUT)).schema.simpleString()
    return lake, metrics, schema, read_table(lake, "curated", OUTPUT, D2)


def test_the_graphs_have_every_shape_the_contract_names():
    _assert_every_shape(EVERY_SHAPE, {"solo", "lone"})
    _assert_every_shape(ON_D1 + ON_D2, {"self", "lonely"})


def test_job_writes_one_row_per_customer_named_in_referrals_up_to_ds(job_output):
    lake, metrics, _, output = job_output
    customers = {x for u, v in ON_D1 + ON_D2 for x in (u, v) if x is not None}
    assert sorted(output["customer_id"]) == sorted(customers)  # each once, "late" absent
    assert dates_with_rows(lake, "curated", OUTPUT) == [D2]
    assert metrics["rows_out"] == {OUTPUT: len(customers)}
    assert metrics["rows_in"] == {"referrals": len(ON_D1) + len(ON_D2)}
    snapshot = load(lake, "curated", OUTPUT).current_snapshot().snapshot_id
    assert metrics["tables"] == {f"curated.{OUTPUT}": {"snapshot_id": snapshot, "rows": len(customers)}}


def test_job_output_matches_networkx_and_the_label_rule_on_referrals_up_to_ds(job_output):
    _, _, _, output = job_output
    rows = output.set_index("customer_id")
    pairs = ON_D1 + ON_D2
    expected_rank = _networkx_pagerank(pairs)
    expected_label = _label_propagation_oracle(pairs)
    assert set(rows.index) == set(expected_rank)
    assert max(abs(rows.loc[n, "pagerank"] - p) for n, p in expected_rank.items()) < 1e-6
    assert rows["pagerank"].sum() == pytest.approx(1.0, abs=1e-12)
    assert rows["community_id"].to_dict() == expected_label


def test_job_output_has_the_contract_schema(job_output):
    _, _, schema, _ = job_output
    assert schema == tables.with_dt(CURATED[OUTPUT]).simpleString()


def test_job_refuses_to_run_without_referrals_written_on_or_before_ds(lake_spark, lake):
    seed_rows(lake_spark, lake, "processed", "referrals", _referral_rows(D3, ON_D3))

    with pytest.raises(JobInputError, match=r"referrals has nothing written on or before 2024-06-02"):
        run(lake_spark, argparse.Namespace(ds=D2, lake=lake))
    assert dates_with_rows(lake, "curated", OUTPUT) == []
