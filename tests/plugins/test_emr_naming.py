"""EMR names and tags: a run's steps and clusters are found again by what they are called."""

from __future__ import annotations

from include.cluster_profiles import cluster_tags
from plugins.emr_naming import PROJECT, emr_step_name, parse_emr_step_name, run_of, run_tags


def test_step_names_identify_dag_run_date_and_step_and_read_back():
    run_id = "scheduled__2024-06-30T02:00:00+00:00"
    name = emr_step_name("customer_analytics_nightly", run_id, "2024-06-30", "graph")
    assert name == "customer_analytics_nightly|2024-06-30|graph|scheduled__2024-06-30T02:00:00+00:00"
    assert parse_emr_step_name(name) == {
        "dag_id": "customer_analytics_nightly",
        "ds": "2024-06-30",
        "step": "graph",
        "run_id": run_id,
    }
    odd = emr_step_name("d", "manual|run with spaces", "2024-06-30", "graph")
    assert parse_emr_step_name(odd)["run_id"] == "manual_run_with_spaces"
    assert len(emr_step_name("d" * 300, "r", "2024-06-30", "graph")) == 256
    assert parse_emr_step_name("not a pipeline step") is None


def test_a_runs_cluster_carries_the_tags_its_teardown_and_the_janitor_look_it_up_by():
    run_id = "manual__2024-06-30 with spaces"
    tags = cluster_tags(dag_id="customer_analytics_nightly", run_id=run_id, ds="2024-06-30", profile="dev")
    wanted = run_tags("customer_analytics_nightly", run_id)
    assert wanted == {
        "project": PROJECT,
        "dag_id": "customer_analytics_nightly",
        "run_id": "manual__2024-06-30_with_spaces",
    }
    assert {k: tags[k] for k in wanted} == wanted


def test_a_step_name_tells_its_run_and_a_foreign_name_none():
    name = emr_step_name("customer_analytics_backfill", "manual__1", "2024-06-30", "graph")
    assert run_of(name) == ("customer_analytics_backfill", "manual__1")
    assert run_of("someone else's step") is None
