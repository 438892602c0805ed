"""The janitor against moto: clusters of ended, unknown and still-running runs, too old or not, of
this project or not; the decision alone, the sweep, and the DAG once with dag.test().
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from include.janitor import JANITOR_DAG_ID, sweep, verdict
from plugins.emr_naming import PROJECT
from tests.harness.settings import EMR_ENV
from tests.reliability.emr_faults import run_cluster

MAX_AGE = dt.timedelta(hours=14)
log = logging.getLogger(__name__)


def cluster(created: dt.datetime, **tags: str) -> dict:
    return {
        "Id": "j-1",
        "Name": "c",
        "Status": {"State": "WAITING", "Timeline": {"CreationDateTime": created}},
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


NOW = dt.datetime(2024, 6, 29, 12, 0, tzinfo=dt.UTC)
TAGS = {"project": PROJECT, "dag_id": "customer_analytics_nightly", "run_id": "scheduled__x"}


@pytest.mark.parametrize(
    ("age_hours", "tags", "active", "terminate"),
    [
        (1, TAGS, True, False),  # its run still runs
        (1, TAGS, False, True),  # its run ended (or never existed)
        (15, TAGS, True, True),  # too old, whatever its run says
        (1, {"project": PROJECT}, False, False),  # not started by a DAG: age limit only
        (15, {"project": PROJECT}, False, True),
    ],
)
def test_verdict_terminates_clusters_whose_run_ended_or_that_are_too_old(age_hours, tags, active, terminate):
    asked = []

    def run_active(dag_id, run_id):
        asked.append((dag_id, run_id))
        return active

    v = verdict(
        cluster(NOW - dt.timedelta(hours=age_hours), **tags), now=NOW, max_age=MAX_AGE, run_active=run_active
    )
    assert v.terminate is terminate
    assert v.age_hours == age_hours
    if age_hours < 14 and "run_id" in tags:
        assert asked == [("customer_analytics_nightly", "scheduled__x")]


def _clusters(aws) -> dict[str, str]:
    return {c.id: c.state for c in aws.emr_backend().clusters.values()}


def test_sweep_terminates_stale_project_clusters_only_and_reports_each(aws):
    running = run_cluster(aws, dag_id="customer_analytics_nightly", run_id="scheduled__running")
    ended = run_cluster(aws, dag_id="customer_analytics_nightly", run_id="scheduled__ended")
    old = run_cluster(aws, dag_id="customer_analytics_nightly", run_id="scheduled__running_too_long")
    foreign = aws.client("emr").run_job_flow(
        Name="someone-elses",
        ReleaseLabel="emr-7.13.0",
        Instances={
            "MasterInstanceType": "m5.xlarge",
            "InstanceCount": 1,
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="r",
        ServiceRole="r",
        Tags=[{"Key": "project", "Value": "another-project"}],
    )["JobFlowId"]
    backend = aws.emr_backend().clusters
    now = backend[running].creation_datetime.replace(tzinfo=dt.UTC) + dt.timedelta(hours=1)
    backend[old].creation_datetime = (now - dt.timedelta(hours=20)).replace(tzinfo=None)  # moto: naive UTC
    active = {
        ("customer_analytics_nightly", "scheduled__running"),
        ("customer_analytics_nightly", "scheduled__running_too_long"),
    }

    report = sweep(
        aws.client("emr"), now=now, max_age=MAX_AGE, run_active=lambda d, r: (d, r) in active, log=log
    )
    assert {r["cluster_id"]: r["action"] for r in report} == {
        running: "kept",
        ended: "terminated",
        old: "terminated",
    }
    assert _clusters(aws) == {running: "WAITING", ended: "TERMINATED", old: "TERMINATED", foreign: "WAITING"}
    assert "older than the maximum age" in next(r["reason"] for r in report if r["cluster_id"] == old)


def test_a_dry_run_terminates_nothing(aws):
    ended = run_cluster(aws, dag_id="customer_analytics_nightly", run_id="scheduled__ended")
    now = aws.emr_backend().clusters[ended].creation_datetime.replace(tzinfo=dt.UTC)
    report = sweep(
        aws.client("emr"), now=now, max_age=MAX_AGE, run_active=lambda d, r: False, log=log, dry_run=True
    )
    assert [r["action"] for r in report] == ["would terminate"]
    assert _clusters(aws) == {ended: "WAITING"}


@pytest.mark.slow
def test_the_janitor_dag_looks_runs_up_in_airflow_and_terminates_the_orphans(aws, airflow_db, monkeypatch):
    """One dag.test(): the run lookup goes through the Task SDK to Airflow's metadata DB."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.janitor import build_janitor_dag
    from include.settings import load_settings

    for key, value in EMR_ENV.items():
        monkeypatch.setenv(key, value)
    run_after = dt.datetime(2024, 7, 1, 10, 17, tzinfo=dt.UTC)
    orphan = run_cluster(
        aws, dag_id="customer_analytics_nightly", run_id="scheduled__2024-06-30T02:00:00+00:00"
    )
    # a cluster of the janitor's own run (running while it sweeps): the lookup must find it active
    mine = run_cluster(aws, dag_id=JANITOR_DAG_ID, run_id=f"manual__{run_after.isoformat()}")

    dag = build_janitor_dag(load_settings())
    run = dag.test(run_after=run_after, logical_date=run_after)
    assert str(run.state) == "success"
    assert run.run_id == f"manual__{run_after.isoformat()}"
    with create_session() as session:
        row = session.scalars(
            select(XComModel.value).where(XComModel.dag_id == JANITOR_DAG_ID, XComModel.run_id == run.run_id)
        ).first()
    report = {r["cluster_id"]: r["action"] for r in XComModel.deserialize_value(_Row(row))}
    assert report == {orphan: "terminated", mine: "kept"}
    assert _clusters(aws) == {orphan: "TERMINATED", mine: "WAITING"}


class _Row:
    def __init__(self, value):
        self.value = value
