"""features: customer_features and feature_correlation against a pandas recomputation of the contract."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from spark_jobs import table_writes, tables
from spark_jobs.common import JobInputError
from spark_jobs.features import CORRELATION, OUTPUT, feature_correlation, run
from spark_jobs.schemas import CURATED, FEATURE_COLUMNS, PROCESSED
from tests.harness.lake_tables import load, read_table, seed_rows, snapshot_ids, table_exists

D0 = dt.date(2024, 5, 1)
DAYS = [D0 + dt.timedelta(days=i) for i in range(10)]
DS = DAYS[6]  # DAYS[7:] are after ds
DS_EARLY = DAYS[2]
CUSTOMERS = [f"c{i:02d}" for i in range(10)]
REGIONS = ["EU", "NA", "APAC"]


def _ts(day: dt.date, second: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=second)


def _sale(tid, customer, day, cents, quantity=1, second=0, delivered=None):
    """A processed sales row; `delivered` is its dt when it arrived on a later day (a replay)."""
    return (tid, customer, "p1", quantity, Decimal(cents) / 100, _ts(day, second), delivered or day)


def _sales(rng) -> list[tuple]:
    rows = []
    for day in DAYS:
        for _ in range(int(rng.integers(2, 6))):
            rows.append(
                _sale(
                    f"t{len(rows):03d}",
                    CUSTOMERS[int(rng.integers(len(CUSTOMERS)))],
                    day,
                    int(rng.integers(1, 50_000)),
                    int(rng.integers(1, 6)),
                    int(rng.integers(86_400)),
                )
            )
    rows += [
        _sale("once", "single", DAYS[1], 1_999, 3),  # one sale: spend_volatility null
        _sale("late-only", "future", DAYS[8], 700),  # buys only after DS: absent at DS
        _sale("ghost-1", "ghost", DAYS[5], 300, 2),  # not in any customers snapshot: region null
        _sale("ghost-2", "ghost", DS, 450, 1, 86_399),  # last second of DS
        _sale("anon", None, DAYS[3], 10_000),  # no customer: belongs to nobody
        # The same sale delivered again on later days, one of them after DS: counted once.
        _sale("replayed", "c03", DAYS[1], 4_200, 2, 100),
        _sale("replayed", "c03", DAYS[1], 4_200, 2, 100, delivered=DAYS[4]),
        _sale("replayed", "c03", DAYS[1], 4_200, 2, 100, delivered=DAYS[8]),
    ]
    return rows


def _customer_snapshots() -> dict[dt.date, list[tuple]]:
    """Regions move between snapshots; the one after DS must not be used."""
    names = [*CUSTOMERS, "single", "future"]
    return {
        DAYS[0]: [(c, REGIONS[i % 3], D0) for i, c in enumerate(names)],
        DAYS[4]: [(c, REGIONS[(i + 1) % 3] if i != 2 else None, D0) for i, c in enumerate(names)],
        DAYS[9]: [(c, "FUTURE", D0) for c in names],
    }


def _graph(rng, ds: dt.date) -> list[tuple]:
    """referral_graph of ds: some customers with sales, not all; one without any sale."""
    members = [c for i, c in enumerate(CUSTOMERS) if i % 3 != 0] + ["single", "referrer-only"]
    offset = 0 if ds == DS else 5
    return [(c, float(rng.uniform(0.01, 0.3)), f"c{(i + offset) % 4:02d}") for i, c in enumerate(members)]


def _write_inputs(spark, lake: str, sales, graphs: dict[dt.date, list[tuple]]) -> None:
    """Sales history and customer snapshots in one commit each, as an ingest of the range writes
    them; referral_graph one commit per date, as the graph job writes it."""
    seed_rows(spark, lake, "processed", "sales", sales)
    snapshots = _customer_snapshots()
    seed_rows(
        spark, lake, "processed", "customers", [(*r, day) for day, rows in snapshots.items() for r in rows]
    )
    for ds, rows in graphs.items():
        seed_rows(spark, lake, "curated", "referral_graph", [(*r, ds) for r in rows])


# ---- the oracle ----------------------------------------------------------------------------
def _oracle(sales: list[tuple], graph: list[tuple], ds: dt.date) -> pd.DataFrame:
    """customer_features by the contract, in pandas: money in integer cents, one row per customer."""
    df = pd.DataFrame(sales, columns=[*PROCESSED["sales"].fieldNames(), "dt"])
    df["day"] = [ts.date() for ts in df["transaction_ts"]]
    df = df[(df["dt"] <= ds) & (df["day"] <= ds)]
    df = df.sort_values(["dt", "transaction_ts"]).drop_duplicates("transaction_id", keep="first")
    df = df[df["customer_id"].notna()]
    df["cents"] = [int(a * 100) for a in df["total_amount"]]
    df["amount"] = df["cents"] / 100
    out = df.groupby("customer_id").agg(
        cents=("cents", "sum"),
        purchase_frequency=("transaction_id", "count"),
        avg_basket_size=("quantity", "mean"),
        spend_volatility=("amount", "std"),  # ddof=1: NaN for one sale
        last_purchase_date=("day", "max"),
    )
    out = out.reset_index()
    out["lifetime_value"] = [Decimal(int(c)) / 100 for c in out["cents"]]
    out["recency_days"] = [(ds - d).days for d in out["last_purchase_date"]]
    snapshots = _customer_snapshots()
    latest = snapshots[max(d for d in snapshots if d <= ds)]
    regions = pd.DataFrame(latest, columns=["customer_id", "region", "signup_date"])[
        ["customer_id", "region"]
    ]
    nodes = pd.DataFrame(graph, columns=["customer_id", "pagerank", "community_id"])
    out = out.merge(regions, on="customer_id", how="left").merge(nodes, on="customer_id", how="left")
    return out.set_index("customer_id")


def _none_if_nan(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA else x


def _oracle_correlation(frame: pd.DataFrame) -> dict[tuple[str, str], float | None]:
    """pandas' pairwise-complete Pearson matrix (NaN -> None), by ordered feature pair."""
    numeric = frame[list(FEATURE_COLUMNS)].astype(float)
    matrix = numeric.corr(method="pearson")
    return {(a, b): _none_if_nan(matrix.loc[a, b]) for a in FEATURE_COLUMNS for b in FEATURE_COLUMNS}


def _assert_correlation(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for pair, w in want.items():
        if w is None:
            assert got[pair] is None, pair
        else:
            assert got[pair] == pytest.approx(w, abs=1e-9), pair


# ---- fixtures ------------------------------------------------------------------------------
def _run(spark, lake: str, ds: dt.date) -> dict:
    return run(tables.bind(spark, lake), argparse.Namespace(ds=ds, lake=lake))


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain Python values: null is None (pandas reads a null double as NaN), arrays lists."""
    return [
        {k: _none_if_nan(v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _rows(lake: str, dataset: str, ds: dt.date) -> list[dict]:
    return _records(read_table(lake, "curated", dataset, ds))


def _correlation_rows(lake: str, ds: dt.date) -> dict:
    return {(r["feature_a"], r["feature_b"]): r["pearson"] for r in _rows(lake, CORRELATION, ds)}


def _schema(spark, lake: str, dataset: str) -> str:
    session = tables.bind(spark, lake)
    return session.table(tables.identifier(session, "curated", dataset)).schema.simpleString()


def _current_snapshot(lake: str, dataset: str) -> int:
    return load(lake, "curated", dataset).current_snapshot().snapshot_id


@pytest.fixture(scope="module")
def random_lake(spark, tmp_path_factory):
    """Inputs for DS and DS_EARLY; the job runs once per ds for the module."""
    lake = (tmp_path_factory.mktemp("features") / "lake").as_uri()
    rng = np.random.default_rng(3)
    sales = _sales(rng)
    graphs = {DS: _graph(rng, DS), DS_EARLY: _graph(rng, DS_EARLY)}
    _write_inputs(spark, lake, sales, graphs)
    runs = {}

    def result(ds):
        """metrics, the snapshots the run left, and its customer_features rows by customer."""
        if ds not in runs:
            metrics = _run(spark, lake, ds)
            snapshots = {dataset: _current_snapshot(lake, dataset) for dataset in (OUTPUT, CORRELATION)}
            runs[ds] = (metrics, snapshots, {r["customer_id"]: r for r in _rows(lake, OUTPUT, ds)})
        return runs[ds]

    return lake, sales, graphs, result


# ---- customer_features ---------------------------------------------------------------------
@pytest.mark.parametrize("ds", [DS, DS_EARLY], ids=["ds", "early-ds"])
def test_every_customer_feature_matches_pandas(spark, random_lake, ds):
    lake, sales, graphs, result = random_lake
    metrics, snapshots, rows = result(ds)
    want = _oracle(sales, graphs[ds], ds)

    assert _schema(spark, lake, OUTPUT) == tables.with_dt(CURATED[OUTPUT]).simpleString()
    assert set(rows) == set(want.index)
    assert metrics["rows_out"][OUTPUT] == len(want)
    assert metrics["tables"][f"curated.{OUTPUT}"] == {"snapshot_id": snapshots[OUTPUT], "rows": len(want)}
    for customer, w in want.iterrows():
        r = rows[customer]
        assert r["region"] == _none_if_nan(w["region"]), customer
        assert r["lifetime_value"] == w["lifetime_value"], customer
        assert r["purchase_frequency"] == w["purchase_frequency"], customer
        assert r["avg_basket_size"] == pytest.approx(w["avg_basket_size"], rel=1e-12), customer
        volatility = _none_if_nan(w["spend_volatility"])
        if volatility is None:
            assert r["spend_volatility"] is None, customer
        else:
            assert r["spend_volatility"] == pytest.approx(volatility, rel=1e-9), customer
        assert r["last_purchase_date"] == w["last_purchase_date"], customer
        assert r["recency_days"] == w["recency_days"], customer
        assert r["pagerank"] == _none_if_nan(w["pagerank"]), customer
        assert r["community_id"] == _none_if_nan(w["community_id"]), customer
        dense = [
            0.0 if _none_if_nan(w[c]) is None else float(w[c])
            for c in ("lifetime_value", "purchase_frequency", "avg_basket_size", "spend_volatility")
        ]
        dense += [float(w["recency_days"]), 0.0 if _none_if_nan(w["pagerank"]) is None else w["pagerank"]]
        assert r["features"] == pytest.approx(dense, rel=1e-9), customer


def test_edge_cases_of_the_sales_history_by_hand(random_lake):
    _, sales, _, result = random_lake
    rows = result(DS)[2]

    assert "future" not in rows  # bought only after DS
    assert None not in rows  # a sale without customer belongs to nobody
    assert "referrer-only" not in rows  # in the graph but never bought
    assert rows["single"]["spend_volatility"] is None
    assert rows["single"]["pagerank"] is not None  # one sale, but in the graph
    assert rows["ghost"]["pagerank"] is None
    assert rows["ghost"]["community_id"] is None
    assert rows["ghost"]["region"] is None
    assert (rows["ghost"]["last_purchase_date"], rows["ghost"]["recency_days"]) == (DS, 0)
    # c03's replayed sale counts once: its count is the number of distinct transaction ids.
    c03 = {r[0] for r in sales if r[1] == "c03" and r[6] <= DS}
    assert rows["c03"]["purchase_frequency"] == len(c03)
    assert rows["c03"]["lifetime_value"] == sum(next(r[4] for r in sales if r[0] == tid) for tid in c03)
    # Region from the latest snapshot on or before DS (DAYS[4]), never from the later one.
    assert {r["region"] for r in rows.values()} <= {*REGIONS, None}
    assert rows["c02"]["region"] is None  # null region in that snapshot


# ---- feature_correlation -------------------------------------------------------------------
@pytest.mark.parametrize("ds", [DS, DS_EARLY], ids=["ds", "early-ds"])
def test_feature_correlation_of_the_run_matches_pandas_pairwise_complete(spark, random_lake, ds):
    lake, sales, graphs, result = random_lake
    metrics, snapshots, _ = result(ds)
    got = _correlation_rows(lake, ds)

    assert _schema(spark, lake, CORRELATION) == tables.with_dt(CURATED[CORRELATION]).simpleString()
    assert metrics["rows_out"][CORRELATION] == len(FEATURE_COLUMNS) ** 2
    assert metrics["tables"][f"curated.{CORRELATION}"] == {
        "snapshot_id": snapshots[CORRELATION],
        "rows": len(FEATURE_COLUMNS) ** 2,
    }
    _assert_correlation(got, _oracle_correlation(_oracle(sales, graphs[ds], ds)))


def test_feature_correlation_is_null_for_zero_variance_and_too_few_pairs(spark):
    # Same recency for all (zero variance), pagerank for one customer only (< 2 complete pairs),
    # spend_volatility for exactly two customers, who bought equally often (purchase_frequency
    # varies overall, but not where both are known).
    rows = [
        ("a", 10.0, 1.0, 1.0, None, 0.0, 0.2),
        ("b", 25.5, 2.0, 2.5, 3.0, 0.0, None),
        ("c", 7.25, 2.0, 1.5, 1.0, 0.0, None),
        ("d", 90.0, 3.0, 4.0, None, 0.0, None),
    ]
    columns = ["customer_id", *FEATURE_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    df = spark.createDataFrame(
        rows, ", ".join(f"{c} {'string' if c == 'customer_id' else 'double'}" for c in columns)
    )

    got = {(r["feature_a"], r["feature_b"]): r["pearson"] for r in feature_correlation(df).collect()}

    want = _oracle_correlation(frame)
    _assert_correlation(got, want)
    assert got["recency_days", "lifetime_value"] is None
    assert got["pagerank", "pagerank"] is None
    assert got["spend_volatility", "lifetime_value"] == pytest.approx(1.0)  # two points lie on a line
    assert got["spend_volatility", "purchase_frequency"] is None
    assert got["purchase_frequency", "lifetime_value"] is not None
    assert got["lifetime_value", "lifetime_value"] == pytest.approx(1.0)


# ---- run -----------------------------------------------------------------------------------
def _files(lake: str, dataset: str, ds: dt.date) -> set[str]:
    """The data files holding the rows of ds in the table's current snapshot."""
    return {
        task.file.file_path
        for task in load(lake, "curated", dataset).scan(row_filter=f"dt = '{ds}'").plan_files()
    }


def _sorted_rows(lake: str, dataset: str, ds: dt.date) -> list[tuple]:
    return sorted(tuple(map(repr, r.values())) for r in _rows(lake, dataset, ds))


def test_rerun_of_the_same_ds_gives_identical_output_and_leaves_other_dates_untouched(spark, random_lake):
    lake, _, _, result = random_lake
    result(DS)
    result(DS_EARLY)
    datasets = (OUTPUT, CORRELATION)
    before = {d: {ds: _sorted_rows(lake, d, ds) for ds in (DS, DS_EARLY)} for d in datasets}
    early_files = {d: _files(lake, d, DS_EARLY) for d in datasets}
    snapshots = {d: snapshot_ids(lake, "curated", d) for d in datasets}

    metrics = _run(spark, lake, DS)

    for d in datasets:
        assert {ds: _sorted_rows(lake, d, ds) for ds in (DS, DS_EARLY)} == before[d]
        assert _files(lake, d, DS_EARLY) == early_files[d]
        # really rewritten, not skipped: one new commit of exactly DS
        assert snapshot_ids(lake, "curated", d) == [
            *snapshots[d],
            metrics["tables"][f"curated.{d}"]["snapshot_id"],
        ]
        assert load(lake, "curated", d).current_snapshot().summary["pipeline.dates"] == str(DS)


def test_missing_referral_graph_of_ds_is_an_input_error(spark, lake):
    _write_inputs(spark, lake, [_sale("a", "c01", DAYS[0], 100)], {DAYS[0]: [("c01", 1.0, "c01")]})

    with pytest.raises(
        JobInputError,
        match=r"referral_graph has nothing written for 2024-05-02 \(the graph job of the same ds",
    ):
        _run(spark, lake, DAYS[1])
    assert not table_exists(lake, "curated", OUTPUT)
    assert not table_exists(lake, "curated", CORRELATION)


def test_a_failed_correlation_write_takes_back_the_customer_features_commit(spark, lake, monkeypatch):
    sales = [_sale("a", "c01", DAYS[0], 100), _sale("b", "c02", DAYS[1], 250)]
    _write_inputs(spark, lake, sales, {DAYS[1]: [("c01", 1.0, "c01")]})
    earlier = (
        "old",
        "EU",
        Decimal("1.00"),
        1,
        1.0,
        None,
        DAYS[0],
        0,
        None,
        None,
        [1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
    )
    seeded = seed_rows(spark, lake, "curated", OUTPUT, [(*earlier, DAYS[0])])
    real = table_writes.replace_date

    def correlation_fails(df, zone, name, *args, **kwargs):
        if name == CORRELATION:
            raise OSError("injected: the feature_correlation write failed")
        return real(df, zone, name, *args, **kwargs)

    monkeypatch.setattr(table_writes, "replace_date", correlation_fails)
    with pytest.raises(OSError, match="injected"):
        _run(spark, lake, DAYS[1])

    # customer_features of DAYS[1] was committed, then taken back: readers see the seeded snapshot
    assert len(snapshot_ids(lake, "curated", OUTPUT)) > 1
    assert load(lake, "curated", OUTPUT).current_snapshot().snapshot_id == seeded.snapshot_id
    assert read_table(lake, "curated", OUTPUT, DAYS[1]).empty
    assert [r["customer_id"] for r in _rows(lake, OUTPUT, DAYS[0])] == ["old"]
    assert not table_exists(lake, "curated", CORRELATION)
