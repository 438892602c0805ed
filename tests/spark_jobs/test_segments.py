"""segments: KMeans segments against scikit-learn on the same standardised features, and the layout."""

from __future__ import annotations

import argparse
import datetime as dt
from decimal import Decimal
from urllib.parse import urlparse

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans

from spark_jobs import tables
from spark_jobs.common import JobInputError
from spark_jobs.schemas import CURATED, SEGMENT_K, SEGMENT_SEED
from spark_jobs.segments import OUTPUT, customer_segments, run
from tests.harness.lake_tables import load, read_table, seed_rows, snapshot_ids, table_exists

DS = dt.date(2024, 6, 30)
# Blob centres in standard units of the four features (total_spent, num_purchases,
# avg_basket_size, recency_days); `_features_row` maps them to realistic values.
CENTRES = np.array([[-2.5, -2.0, -2.5, 2.5], [0.0, 0.5, 0.0, -0.5], [2.5, 2.0, 2.5, -2.0]])


def _features_row(customer: str, z) -> tuple:
    """A customer_features row whose four segment features are a point in standard units."""
    spent = Decimal(round((1_000 + 300 * z[0]) * 100)) / 100
    purchases = max(1, round(20 + 5 * z[1]))
    basket = float(3.0 + 0.8 * z[2])
    recency = max(0, round(60 + 15 * z[3]))
    return (
        customer,
        "EU",
        spent,
        purchases,
        basket,
        None,
        DS - dt.timedelta(days=recency),
        recency,
        None,
        None,
        [],
    )


def _blobs(rng, per_blob: int, spread: float, noise: int = 0) -> list[tuple]:
    points = [c + rng.normal(0, spread, 4) for c in CENTRES for _ in range(per_blob)]
    points += list(rng.uniform(-4, 4, (noise, 4)))
    order = rng.permutation(len(points))  # blob members not adjacent in the input
    return [_features_row(f"k{i:03d}", points[j]) for i, j in enumerate(order)]


def _matrix(rows: list[tuple]) -> tuple[list[str], np.ndarray]:
    """customer ids and the four segment features as the job reads them (lifetime_value, ...)."""
    ids = [r[0] for r in rows]
    x = np.array([[float(r[2]), float(r[3]), float(r[4]), float(r[7])] for r in rows])
    return ids, x


def _standardised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)


def _within_cluster_ss(z: np.ndarray, labels: np.ndarray) -> float:
    return float(sum(((z[labels == k] - z[labels == k].mean(axis=0)) ** 2).sum() for k in np.unique(labels)))


def _partition(ids: list[str], labels) -> set[frozenset]:
    groups: dict = {}
    for customer, label in zip(ids, labels, strict=True):
        groups.setdefault(label, set()).add(customer)
    return {frozenset(g) for g in groups.values()}


def _sklearn_kmeans(z: np.ndarray) -> KMeans:
    return KMeans(n_clusters=SEGMENT_K, n_init=10, random_state=SEGMENT_SEED).fit(z)


def _features_df(spark, rows):
    return spark.createDataFrame(rows, CURATED["customer_features"])


def _segment_of(df) -> dict[str, int]:
    return {r["customer_id"]: r["segment"] for r in df.select("customer_id", "segment").collect()}


def _run(spark, lake: str, ds: dt.date) -> dict:
    return run(tables.bind(spark, lake), argparse.Namespace(ds=ds, lake=lake))


def _read(lake: str, ds: dt.date) -> dict[str, dict]:
    return {r["customer_id"]: r for r in read_table(lake, "curated", OUTPUT, ds).to_dict("records")}


@pytest.fixture(scope="module")
def clear_blobs_run(spark, tmp_path_factory):
    """Three well separated blobs written as customer_features of DS; the job runs once."""
    lake = (tmp_path_factory.mktemp("segments") / "lake").as_uri()
    rows = _blobs(np.random.default_rng(1), per_blob=20, spread=0.3)
    seed_rows(spark, lake, "curated", "customer_features", [(*r, DS) for r in rows])
    metrics = _run(spark, lake, DS)
    session = tables.bind(spark, lake)
    schema = session.table(tables.identifier(session, "curated", OUTPUT)).schema.simpleString()
    snapshot = load(lake, "curated", OUTPUT).current_snapshot().snapshot_id
    return lake, rows, metrics, (schema, snapshot), _read(lake, DS)


def test_every_customer_is_in_exactly_one_segment_with_the_contract_columns(clear_blobs_run):
    _, rows, metrics, (schema, snapshot), got = clear_blobs_run

    assert schema == tables.with_dt(CURATED[OUTPUT]).simpleString()
    assert sorted(got) == sorted(r[0] for r in rows)  # keys of a dict: each customer once
    assert metrics["rows_out"][OUTPUT] == len(rows)
    assert metrics["rows_in"]["customer_features"] == len(rows)
    assert metrics["tables"] == {f"curated.{OUTPUT}": {"snapshot_id": snapshot, "rows": len(rows)}}
    for customer, spent, purchases, basket, recency in ((r[0], r[2], r[3], r[4], r[7]) for r in rows):
        g = got[customer]
        assert (g["total_spent"], g["num_purchases"], g["recency_days"]) == (spent, purchases, recency)
        assert g["avg_basket_size"] == basket
        assert g["segment"] in range(SEGMENT_K)


def test_clear_blobs_are_segmented_as_scikit_learn_does_up_to_relabelling(clear_blobs_run):
    _, rows, _, _, got = clear_blobs_run
    ids, x = _matrix(rows)

    want = _sklearn_kmeans(_standardised(x)).labels_

    assert _partition(ids, [got[c]["segment"] for c in ids]) == _partition(ids, want)
    # and the blobs themselves are what was found: members of a blob share a segment
    assert len(_partition(ids, [got[c]["segment"] for c in ids])) == SEGMENT_K


def test_segment_ids_are_ordered_by_mean_total_spent(clear_blobs_run):
    _, _, _, _, got = clear_blobs_run
    spent: dict[int, list[float]] = {}
    for r in got.values():
        spent.setdefault(r["segment"], []).append(float(r["total_spent"]))

    means = [np.mean(spent[k]) for k in range(SEGMENT_K)]
    assert means == sorted(means)
    assert len(set(means)) == SEGMENT_K
    # by hand: the blobs are far apart in total_spent, so its extremes sit in the extreme segments
    by_spend = sorted(got.values(), key=lambda r: r["total_spent"])
    assert (by_spend[0]["segment"], by_spend[-1]["segment"]) == (0, SEGMENT_K - 1)


def test_the_table_is_partitioned_by_dt_and_segment(clear_blobs_run):
    lake, _, _, _, got = clear_blobs_run
    table = load(lake, "curated", OUTPUT)

    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [
        ("dt", "identity"),
        ("segment", "identity"),
    ]
    # every data file holds the customers of the one segment its partition names (read from the
    # file alone, not through the table)
    customers: dict[int, list[str]] = {}
    for task in table.scan(row_filter=f"dt = '{DS}'").plan_files():
        day, segment = task.file.partition[0], task.file.partition[1]
        assert day == (DS - dt.date(1970, 1, 1)).days  # Iceberg keeps a date as days since 1970
        rows = pq.ParquetFile(urlparse(task.file.file_path).path).read(columns=["customer_id", "segment"])
        assert set(rows["segment"].to_pylist()) == {segment}
        customers.setdefault(segment, []).extend(rows["customer_id"].to_pylist())
    assert sorted(customers) == list(range(SEGMENT_K))
    for k, ids in customers.items():
        assert sorted(ids) == sorted(c for c, r in got.items() if r["segment"] == k)


def test_rerun_of_the_same_ds_gives_the_same_segments(clear_blobs_run, spark):
    lake, _, _, _, got = clear_blobs_run
    before = snapshot_ids(lake, "curated", OUTPUT)

    _run(spark, lake, DS)

    assert _read(lake, DS) == got
    assert len(snapshot_ids(lake, "curated", OUTPUT)) == len(before) + 1  # rewritten, not skipped


def test_missing_customer_features_of_ds_is_an_input_error(spark, lake):
    rows = _blobs(np.random.default_rng(3), per_blob=2, spread=0.3)
    yesterday = DS - dt.timedelta(days=1)
    seed_rows(spark, lake, "curated", "customer_features", [(*r, yesterday) for r in rows])

    with pytest.raises(JobInputError, match=r"customer_features has nothing written for 2024-06-30"):
        _run(spark, lake, DS)
    assert not table_exists(lake, "curated", OUTPUT)


def test_noisy_blobs_reach_scikit_learns_within_cluster_sum_of_squares(spark):
    rows = _blobs(np.random.default_rng(2), per_blob=25, spread=0.8, noise=15)
    ids, x = _matrix(rows)
    z = _standardised(x)

    segment = _segment_of(customer_segments(_features_df(spark, rows)))
    job_wcss = _within_cluster_ss(z, np.array([segment[c] for c in ids]))
    best = _sklearn_kmeans(z).inertia_

    assert len(set(segment.values())) == SEGMENT_K
    assert job_wcss <= 1.05 * best
    spent = {k: np.mean([float(r[2]) for r in rows if segment[r[0]] == k]) for k in range(SEGMENT_K)}
    assert spent[0] < spent[1] < spent[2]


def test_fewer_distinct_customers_than_k_give_as_many_segments_as_points(spark):
    low, high = _features_row("low", [-1.0] * 4), _features_row("high", [1.0] * 4)
    same_as_low = ("low-twin", *low[1:])

    two_points = _segment_of(customer_segments(_features_df(spark, [high, low, same_as_low])))
    one_customer = _segment_of(customer_segments(_features_df(spark, [high])))

    assert two_points == {"low": 0, "low-twin": 0, "high": 1}
    assert one_customer == {"high": 0}


def test_no_customers_is_an_input_error(spark):
    with pytest.raises(JobInputError, match="no customers"):
        customer_segments(_features_df(spark, []))
