"""graph: PageRank against networkx, label propagation against a plain-Python reading of the contract."""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter

import networkx as nx
import pytest

from spark_jobs.common import partition_path, write_partition
from spark_jobs.graph import (
    OUTPUT,
    customers_from_referrals,
    edges_from_referrals,
    label_propagation,
    pagerank,
    run,
)
from spark_jobs.schemas import CURATED, PROCESSED

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
RANDOM_PAIRS = _random_pairs(30, 0.07, seed=11)
GRAPHS = {
    "random_with_dangling": [*RANDOM_PAIRS, ("c900", "c901")],
    "duplicate_edges": [("a", "b"), ("a", "b"), ("a", "c"), ("b", "c"), ("c", "a"), ("c", "a"), ("d", "c")],
    "chain": [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")],
    "star": [("hub", f"leaf{i}") for i in range(6)] + [("leaf0", "hub")],
    "two_components": [("a", "b"), ("b", "c"), ("c", "a"), ("x", "y"), ("y", "z"), ("w", "y")],
}


def test_the_random_graph_has_dangling_nodes():
    graph = _networkx_graph(GRAPHS["random_with_dangling"])
    assert any(graph.out_degree(n) == 0 for n in graph.nodes)
    assert nx.number_weakly_connected_components(graph) >= 2


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_pagerank_equals_networkx_within_1e6_per_node_and_sums_to_one(spark, name):
    pairs = GRAPHS[name]
    referrals = _referrals(spark, pairs)

    ranks = pagerank(edges_from_referrals(referrals), customers_from_referrals(referrals))
    got = {r.id: r.pagerank for r in ranks.collect()}

    expected = nx.pagerank(_networkx_graph(pairs), alpha=0.85, tol=1e-12, max_iter=10_000)
    assert set(got) == set(expected)
    assert max(abs(got[n] - expected[n]) for n in expected) < 1e-6
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)


def test_pagerank_of_an_empty_graph_is_empty(spark):
    ranks = pagerank(edges_from_referrals(_referrals(spark, [])))
    assert ranks.collect() == []


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
    assert _labels(spark, [("z", "b"), ("b", "z"), ("a", "b")], iterations=1)["b"] == "z"
    # y -> b delivered twice is still one edge: a tie between a and y, so a.
    assert _labels(spark, [("y", "b"), ("y", "b"), ("a", "b")], iterations=1)["b"] == "a"


def test_label_propagation_a_customer_with_only_a_self_referral_keeps_its_label(spark):
    labels = _labels(spark, [("solo", "solo"), ("a", "b"), ("b", "solo2"), ("solo2", "solo2")])
    assert labels["solo"] == "solo"
    assert labels == _label_propagation_oracle([("solo", "solo"), ("a", "b"), ("b", "solo2")])


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


@pytest.mark.parametrize("name", sorted(LP_GRAPHS))
def test_label_propagation_five_steps_equals_the_contract_rule(spark, name):
    pairs = LP_GRAPHS[name]
    assert _labels(spark, pairs) == _label_propagation_oracle(pairs, iterations=5)


# ---- the job -------------------------------------------------------------------------------
ON_D1 = [("a", "b"), ("b", "c"), ("c", "a"), ("self", "self"), ("d", "a"), ("a", "b")]
ON_D2 = [("c", "b"), ("e", "f"), ("f", "e"), ("lonely", None), ("b", "a")]
ON_D3 = [("a", "late"), ("late", "b"), ("b", "c")]  # after ds: must be ignored


@pytest.fixture(scope="module")
def job_output(spark, tmp_path_factory):
    lake = (tmp_path_factory.mktemp("graph") / "lake").as_uri()
    for day, pairs in ((D1, ON_D1), (D2, ON_D2), (D3, ON_D3)):
        ts = dt.datetime.combine(day, dt.time(8), dt.UTC)
        write_partition(_referrals(spark, pairs, ts), lake, "processed", "referrals", day)
    metrics = run(spark, argparse.Namespace(ds=D2, lake=lake))
    path = partition_path(lake, "curated", OUTPUT, D2)
    return metrics, spark.read.parquet(path)


def test_job_writes_one_row_per_customer_named_in_referrals_up_to_ds(job_output):
    metrics, output = job_output
    rows = output.collect()
    customers = {x for u, v in ON_D1 + ON_D2 for x in (u, v) if x is not None}
    assert sorted(r.customer_id for r in rows) == sorted(customers)  # each once, "late" absent
    assert metrics["rows_out"] == {OUTPUT: len(customers)}
    assert metrics["rows_in"] == {"referrals": len(ON_D1) + len(ON_D2)}


def test_job_output_matches_networkx_and_the_label_rule_on_referrals_up_to_ds(job_output):
    _, output = job_output
    rows = {r.customer_id: r for r in output.collect()}
    pairs = ON_D1 + ON_D2
    expected_rank = nx.pagerank(_networkx_graph(pairs), alpha=0.85, tol=1e-12, max_iter=10_000)
    expected_label = _label_propagation_oracle(pairs)
    assert max(abs(rows[n].pagerank - p) for n, p in expected_rank.items()) < 1e-6
    assert {n: r.community_id for n, r in rows.items()} == expected_label


def test_job_output_has_the_contract_schema(job_output):
    _, output = job_output
    assert [(f.name, f.dataType) for f in output.schema] == [(f.name, f.dataType) for f in CURATED[OUTPUT]]
