"""A job's OpenLineage events (spark_jobs/lineage.py): START then COMPLETE or FAIL, its parent,
the tables and files its Spark SQL read and wrote, and lineage that can never fail the job."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from include import lineage as L
from spark_jobs.cli import main
from spark_jobs.protocol import EXIT_BAD_INPUT
from spark_jobs.schemas import LANDING_COLUMNS
from tests.harness.lake_files import lake_dir, write_landing_csv

DS = "2024-06-30"
TS = "2024-06-30T10:00:00Z"
PARENT = {
    "spark.openlineage.parentJobNamespace": "airflow_ns",
    "spark.openlineage.parentJobName": "customer_analytics_nightly.run_ingest_sales",
    "spark.openlineage.parentRunId": "01930c9e-1111-7000-8000-000000000001",
    "spark.openlineage.rootParentJobNamespace": "airflow_ns",
    "spark.openlineage.rootParentJobName": "customer_analytics_nightly",
    "spark.openlineage.rootParentRunId": "01930c9e-1111-7000-8000-000000000000",
}
FILE = {"spark.openlineage.transport.type": "file", "spark.openlineage.namespace": "jobs_ns"}


@pytest.fixture
def cli(spark):
    """spark_jobs.cli.main in-process with lineage properties; restores what get_spark changes."""
    saved = spark.conf.get("spark.sql.shuffle.partitions")
    yield lambda lineage, *argv: main(list(argv), lineage=lineage)
    spark.conf.set("spark.sql.shuffle.partitions", saved)
    spark.sparkContext.setLogLevel("ERROR")


def _events(lake: str) -> list[dict]:
    files = sorted((lake_dir(lake) / "_lineage" / "spark").rglob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def _job_events(lake: str, name: str) -> list[dict]:
    return [e for e in _events(lake) if e["job"]["name"] == name]


def _sales(lake: str) -> None:
    rows = [("t1", "c1", "p1", "2", "10.00", TS), ("t2", "c2", "p1", "x", "1.00", TS)]
    write_landing_csv(lake, "sales", DS, LANDING_COLUMNS["sales"], rows)


def test_a_job_says_start_then_complete_with_its_parent_and_what_it_read_and_wrote(lake, cli):
    _sales(lake)
    assert (
        cli({**FILE, **PARENT}, "ingest", "--dataset", "sales", "--ds", DS, "--lake", lake, "--run-id", "r1")
        == 0
    )

    # one file per job run, under the pipeline run and date
    (path,) = (lake_dir(lake) / "_lineage" / "spark" / f"dt={DS}" / "r1").glob(
        "spark_jobs_ingest_sales.*.jsonl"
    )
    start, complete = _job_events(lake, "spark_jobs_ingest_sales")
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["job"]["namespace"] == "jobs_ns"
    assert start["run"]["runId"] == complete["run"]["runId"] == path.name.split(".")[1]
    parent = start["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == PARENT["spark.openlineage.parentRunId"]
    assert parent["job"] == {"namespace": "airflow_ns", "name": "customer_analytics_nightly.run_ingest_sales"}
    assert parent["root"]["run"]["runId"] == PARENT["spark.openlineage.rootParentRunId"]

    runs = L.job_runs(L.read_events(lake), lake)
    (job,) = [j for j in runs.values() if j.name == "spark_jobs_ingest_sales"]
    # the day's files, as the dataset upstream delivers (it also reads the tables it replaces)
    assert job.inputs - job.outputs == {"landing/sales"}
    read = [d for e in _events(lake) if "." in e["job"]["name"] for d in e.get("inputs", [])]
    files = {(d["namespace"], d["name"]) for d in read if "/landing/" in d["name"]}
    assert files == {("file", f"{lake_dir(lake)}/landing/sales/dt={DS}/part-0000.csv")}
    assert job.outputs == {"processed.sales", "quarantine.sales"}
    # the tables are named by their location (the naming spec's files) and by the catalog
    written = [d for e in _events(lake) if "." in e["job"]["name"] for d in e.get("outputs", [])]
    sales = next(d for d in written if L.dataset_name(d, lake) == "processed.sales")
    assert sales["namespace"] == "file"
    assert sales["name"] == f"{lake_dir(lake)}/warehouse/processed/sales"
    (symlink,) = sales["facets"]["symlinks"]["identifiers"]
    assert symlink == {
        "namespace": f"jdbc:sqlite:{lake_dir(lake)}/_catalog/iceberg.db",
        "name": "processed.sales",
        "type": "TABLE",
    }
    # its SQL executions are children of the job's run
    children = [e for e in _events(lake) if e["job"]["name"].startswith("spark_jobs_ingest_sales.")]
    assert children
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in children} == {start["run"]["runId"]}


def test_a_failing_job_says_fail_with_its_reason_not_complete(lake, cli):
    # no landing partition: bad input, exit 2
    assert (
        cli({**FILE, **PARENT}, "ingest", "--dataset", "sales", "--ds", DS, "--lake", lake) == EXIT_BAD_INPUT
    )

    events = _job_events(lake, "spark_jobs_ingest_sales")
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    fail = events[1]
    assert fail["run"]["runId"] == events[0]["run"]["runId"]
    assert "landing" in fail["run"]["facets"]["errorMessage"]["message"]
    assert fail["run"]["facets"]["parent"]["run"]["runId"] == PARENT["spark.openlineage.parentRunId"]
    assert fail["run"]["facets"]["parent"]["root"]["job"]["name"] == "customer_analytics_nightly"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once it is closed


def test_an_unreachable_endpoint_costs_one_warning_and_the_events_go_to_the_lake(lake, cli, caplog):
    _sales(lake)
    http = {
        **PARENT,
        "spark.openlineage.namespace": "jobs_ns",
        "spark.openlineage.transport.type": "http",
        "spark.openlineage.transport.url": f"http://127.0.0.1:{_closed_port()}",
    }
    with caplog.at_level(logging.WARNING, logger="spark_jobs"):
        assert cli(http, "ingest", "--dataset", "sales", "--ds", DS, "--lake", lake) == 0

    warnings = [r for r in caplog.records if r.name == "spark_jobs.lineage" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not answer" in warnings[0].getMessage()
    assert [e["eventType"] for e in _job_events(lake, "spark_jobs_ingest_sales")] == ["START", "COMPLETE"]


def test_without_lineage_settings_a_job_leaves_no_events(lake, cli):
    _sales(lake)
    assert cli({}, "ingest", "--dataset", "sales", "--ds", DS, "--lake", lake) == 0
    assert not (lake_dir(lake) / "_lineage").exists()


def test_a_broken_listener_never_fails_the_job(lake, cli, monkeypatch, caplog):
    _sales(lake)
    from spark_jobs import lineage

    monkeypatch.setattr(
        lineage.StepLineage, "_start", lambda self: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    with caplog.at_level(logging.WARNING, logger="spark_jobs"):
        assert cli({**FILE}, "ingest", "--dataset", "sales", "--ds", DS, "--lake", lake) == 0
    assert any("lineage: off for this job (RuntimeError: boom)" in r.getMessage() for r in caplog.records)


def test_settings_give_the_file_transport_by_default_and_http_when_a_url_is_set():
    from include.settings import load_settings

    default = L.spark_properties(load_settings({}))
    assert default["spark.openlineage.transport.type"] == "file"
    assert default["spark.openlineage.namespace"] == "customer_market_analytics"
    http = L.spark_properties(load_settings({"PIPELINE_LINEAGE_URL": "http://marquez:5000"}))
    assert (http["spark.openlineage.transport.type"], http["spark.openlineage.transport.url"]) == (
        "http",
        "http://marquez:5000",
    )
    assert http["spark.openlineage.transport.endpoint"] == "/api/v1/lineage"
    assert L.spark_properties(load_settings({"PIPELINE_LINEAGE": "false"})) == {}
    with pytest.raises(ValueError, match="PIPELINE_LINEAGE_URL"):
        load_settings({"PIPELINE_LINEAGE_URL": "marquez:5000"})


def test_the_airflow_side_writes_beside_the_jobs_or_to_the_same_endpoint(tmp_path: Path):
    from include.settings import load_settings

    env = L.airflow_environment(load_settings({"PIPELINE_LAKE": str(tmp_path / "lake")}))
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "file", "log_file_path": f"{tmp_path}/lake/_lineage/airflow/events.jsonl",
                         "append": True}  # fmt: skip
    # the provider emits from a thread of the task, not from a fork of its process
    assert env["AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD"] == "True"
    env = L.airflow_environment(load_settings({"PIPELINE_LINEAGE_URL": "https://marquez.example.com"}))
    assert json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])["url"] == "https://marquez.example.com"
    assert L.airflow_environment(load_settings({"PIPELINE_LINEAGE": "false"})) == {
        "AIRFLOW__OPENLINEAGE__DISABLED": "true"
    }
