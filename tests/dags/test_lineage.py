"""Lineage of the local nightly run: every job's OpenLineage run, what it read and wrote, its parent.

The session's local nightly run (tests/dags/conftest.py) ran every job with the default settings:
lineage on, the jobs' events as JSON lines under the lake, Airflow's own (the provider's) in the
session's file. What each job reads and writes is written out here from the data contract
(docs/DATA_CONTRACT.md), not from the code's pipeline spec.
"""

from __future__ import annotations

import json

import pytest

from include import lineage as L
from scripts.show_lineage import main as show_lineage_main
from spark_jobs.paths import file_safe
from tests.harness.airflow_home import OPENLINEAGE_EVENTS
from tests.harness.nightly import NIGHTLY_DS as DS

pytestmark = pytest.mark.slow

DAG_ID = "customer_analytics_nightly"
FEATURES = ("lifetime_value", "purchase_frequency", "avg_basket_size", "recency_days")

# job -> (what it reads, what it writes), from the data contract: landing datasets as
# `landing/<dataset>`, tables as `<zone>.<name>`
CONTRACT = {
    **{
        f"spark_jobs_ingest_{d}": ({f"landing/{d}"}, {f"processed.{d}", f"quarantine.{d}"})
        for d in ("customers", "sales", "referrals", "stock_ticks", "clickstream")
    },
    "spark_jobs_graph": ({"processed.referrals"}, {"curated.referral_graph"}),
    "spark_jobs_features": (
        {"processed.sales", "processed.customers", "curated.referral_graph"},
        {"curated.customer_features", "curated.feature_correlation"},
    ),
    "spark_jobs_segments": ({"curated.customer_features"}, {"curated.customer_segments"}),
    "spark_jobs_sales_rolling": ({"processed.sales", "processed.customers"}, {"curated.sales_rolling_30d"}),
    "spark_jobs_stock_daily": ({"processed.stock_ticks"}, {"curated.stock_daily"}),
    "spark_jobs_clickstream": ({"landing/clickstream"}, {"curated.clickstream_checkouts"}),
}
# the task that runs each job in the local nightly DAG
TASK = {job: f"run_{job.removeprefix('spark_jobs_')}" for job in CONTRACT}


@pytest.fixture(scope="module")
def lineage_of_run(local_nightly):
    lake = local_nightly.lake.as_uri()
    events = [e for e in L.read_events(lake) if f"/{file_safe(local_nightly.run.run_id)}/" in e["_file"]]
    return lake, events, L.job_runs(events, lake)


@pytest.fixture(scope="module")
def airflow_task_runs(local_nightly) -> dict[str, dict]:
    """task id -> Airflow's provider's event of the task in this DAG run (its OpenLineage run)."""
    runs: dict[str, dict] = {}
    for line in OPENLINEAGE_EVENTS.read_text().splitlines():
        event = json.loads(line)
        name = event["job"]["name"]
        dag_run = (event["run"].get("facets") or {}).get("airflow", {}).get("dagRun", {})
        if name.startswith(f"{DAG_ID}.") and dag_run.get("run_id") == local_nightly.run.run_id:
            runs[name.split(".", 1)[1]] = event
    return runs


def test_every_job_has_a_start_and_a_complete_with_the_contracts_inputs_and_outputs(lineage_of_run):
    _, _, runs = lineage_of_run
    by_name = {job.name: job for job in runs.values()}
    assert set(CONTRACT) <= set(by_name), sorted(by_name)
    for name, (reads, writes) in CONTRACT.items():
        job = by_name[name]
        assert job.states == ["START", "COMPLETE"], name
        assert job.inputs - writes == reads, name
        assert job.outputs == writes, name


def test_each_job_run_has_its_airflow_task_run_as_parent(lineage_of_run, airflow_task_runs):
    _, _, runs = lineage_of_run
    by_name = {job.name: job for job in runs.values()}
    for name, task in TASK.items():
        parent = by_name[name].parent
        assert parent["job"] == {"namespace": "customer_market_analytics", "name": f"{DAG_ID}.{task}"}, name
        task_event = airflow_task_runs[task]
        assert parent["run"]["runId"] == task_event["run"]["runId"], name
        # the DAG run is the root, as it is the task's parent: DAG run -> task -> Spark job -> tables
        dag_run = task_event["run"]["facets"]["parent"]["run"]["runId"]
        assert parent["root"] == {"job": {"namespace": "customer_market_analytics", "name": DAG_ID},
                                  "run": {"runId": dag_run}}, name  # fmt: skip


def test_the_jobs_sql_runs_are_children_of_the_job_run(lineage_of_run):
    _, events, runs = lineage_of_run
    children = [e for e in events if "." in e["job"]["name"]]
    assert children
    for event in children:
        assert event["run"]["facets"]["parent"]["run"]["runId"] in runs


def test_column_lineage_traces_curated_columns_to_their_sources(lineage_of_run):
    _, _, runs = lineage_of_run
    features = L.column_sources(runs, "curated.customer_features")
    assert ("processed.sales", "total_amount") in features["lifetime_value"]
    assert ("processed.sales", "transaction_id") in features["purchase_frequency"]
    assert {t for t, _ in features["lifetime_value"]} == {"processed.sales"}
    segments = L.column_sources(runs, "curated.customer_segments")
    indirect = L.column_sources(runs, "curated.customer_segments", indirect=True)
    # a segment is the KMeans cluster of the four standardised features, joined to its customers
    # and numbered by spend (ties: the smallest customer id)
    segment = segments["segment"] | indirect["segment"]
    assert {("curated.customer_features", f) for f in FEATURES} <= segment
    assert {t for t, _ in segment} == {"curated.customer_features"}
    assert ("curated.customer_features", "lifetime_value") in segments["total_spent"]


def test_the_upstream_graph_of_every_curated_output_reaches_the_landing_files(lineage_of_run, capsys):
    lake, _, runs = lineage_of_run
    for output in ("customer_segments", "customer_features", "sales_rolling_30d", "stock_daily",
                   "clickstream_checkouts", "feature_correlation", "referral_graph"):  # fmt: skip
        graph = L.upstream(runs, output, ds=DS)
        sources = {s for edges in graph.edges.values() for s in edges}
        assert any(s.startswith("landing/") for s in sources), output
    graph = L.upstream(runs, "customer_segments")
    assert graph.edges["curated.customer_segments"] == {"curated.customer_features"}
    assert {"processed.sales", "processed.customers", "curated.referral_graph"} <= graph.edges[
        "curated.customer_features"
    ]
    # the command prints the same graph, and each column's sources down to the landing files
    assert show_lineage_main(["customer_segments", "--lake", lake]) == 0
    printed = capsys.readouterr().out
    assert "<- curated.customer_features  (written by spark_jobs_features)" in printed
    assert "<- processed.sales  (written by spark_jobs_ingest_sales)" in printed
    assert "  lifetime_value <- " not in printed  # the output's own columns only
    assert "  total_spent <- curated.customer_features." in printed
    assert "(from landing/sales)" in printed
