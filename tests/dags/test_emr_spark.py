"""The emr target's steps run for real: the EmrStepPlayer hands every step the nightly DAG added to
a StepRunner, as the cluster would: the command line from the step, the code from the zip the DAG
uploaded, local Spark against moto's S3 and Glue. The jobs create their Iceberg tables in moto's
Glue and S3; pyiceberg's Glue catalog (another reader, no Spark) reads rows equal to the local
target's run of the same landing data; the metrics carry the lake's row counts; a failed audit on
that lake publishes nothing. (The orchestration of the same nightly, its steps played:
tests/dags/test_emr_target.py, in make test.)
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from include import lineage as L
from include import pipeline as P
from spark_jobs.paths import audit_uri
from tests.harness.aws_fakes import FakeAws, StepRunner
from tests.harness.emr_runs import EmrRun, published_metrics, report_of, run_emr
from tests.harness.nightly import NIGHTLY_DS as DS
from tests.harness.nightly import NIGHTLY_HISTORY_START as HISTORY_START
from tests.harness.nightly import demo_landing
from tests.harness.settings import EMR_ENV

pytestmark = pytest.mark.ops  # a whole nightly with every step in local Spark: make test-ops

LAKE = EMR_ENV["PIPELINE_LAKE"]
PREFIX = EMR_ENV["PIPELINE_GLUE_DATABASE_PREFIX"]


@pytest.fixture(scope="module")
def steps_run(fake_aws, tmp_path_factory):
    runner = StepRunner(fake_aws, tmp_path_factory.mktemp("emr-steps"))
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def nightly(fake_aws, steps_run, tmp_path_factory) -> EmrRun:
    landing = demo_landing(tmp_path_factory.mktemp("emr-landing") / "lake") / "landing"
    return run_emr(
        fake_aws,
        "nightly",
        DS,
        {"cluster_profile": "dev", "ingest_start_ds": HISTORY_START},
        landing=landing,
        run=steps_run,
    )


def _glue_catalog(aws: FakeAws):
    """pyiceberg's Glue catalog on moto: a reader that shares no code with the jobs' Spark."""
    from include.lake import open_catalog

    keys = {"access-key-id": "testing", "secret-access-key": "testing", "region": "us-east-1"}
    properties = {f"{svc}.{k}": v for svc in ("glue", "s3") for k, v in keys.items()}
    return open_catalog(LAKE, properties={**properties, "glue.endpoint": aws.url, "s3.endpoint": aws.url})


def test_the_nightly_with_every_step_run_for_real_succeeds_and_terminates_its_cluster(nightly, steps_run):
    assert nightly.run.state == "success", (nightly.run.task_states, steps_run.output)
    assert list(nightly.clusters.values()) == ["TERMINATED"]


def test_the_steps_left_their_lineage_in_the_lake_on_s3(nightly):
    """The jobs ran with their step's --conf: each job run's events were copied to the S3 lake."""
    keys = [k for k in nightly.s3_objects if k.startswith(f"lake/_lineage/spark/dt={DS}/")]
    names = {k.rsplit("/", 1)[1].split(".")[0] for k in keys}
    assert {f"spark_jobs_{s.job}" for s in P.PIPELINE if not s.options} <= names
    assert "spark_jobs_ingest_sales" in names
    events = [json.loads(line) for k in keys for line in nightly.s3_objects[k].decode().splitlines()]
    by_name = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    segments = by_name["spark_jobs_segments"]
    assert segments["run"]["facets"]["parent"]["job"]["name"] == "customer_analytics_nightly.run_segments"
    # the tables by their S3 location (a cluster's listener adds the Glue ARN as symlink: it asks
    # STS for the account, which the stand-in cluster cannot), read back as the catalog's tables
    written = [d for e in events if e["job"]["name"].startswith("spark_jobs_segments.") for d in e["outputs"]]
    assert ("s3://lake-bucket", "lake/warehouse/curated/customer_segments") in {
        (d["namespace"], d["name"]) for d in written
    }
    runs = {j.name: j for j in L.job_runs(events, LAKE).values()}
    # (a job reading its own table, the dates it replaces, is not an input of the contract)
    assert runs["spark_jobs_segments"].inputs - runs["spark_jobs_segments"].outputs == {
        "curated.customer_features"
    }
    assert runs["spark_jobs_segments"].outputs == {"curated.customer_segments"}
    assert runs["spark_jobs_ingest_sales"].inputs - runs["spark_jobs_ingest_sales"].outputs == {
        "landing/sales"
    }


def test_every_step_ran_for_real_and_the_jobs_registered_their_tables_in_glue(nightly, steps_run):
    assert {state for _, state in nightly.finished_steps} == {"COMPLETED"}, steps_run.output
    expected = {
        f"{PREFIX}_{zone}.{name}"
        for zone, names in (
            ("processed", ("customers", "sales", "referrals", "stock_ticks", "clickstream")),
            ("quarantine", ("customers", "sales", "referrals", "stock_ticks", "clickstream")),
            ("curated", P.OUTPUTS),
        )
        for name in names
    }
    assert set(nightly.glue) == expected
    for ident, table in nightly.glue.items():
        zone, name = ident.split(".")[0].removeprefix(f"{PREFIX}_"), ident.split(".")[1]
        # Iceberg tables of the Glue catalog, their files under the lake's warehouse in S3
        assert table["Parameters"]["table_type"].upper() == "ICEBERG", ident
        metadata = table["Parameters"]["metadata_location"]
        assert metadata.startswith(f"{LAKE}/warehouse/{zone}/{name}/metadata/"), ident
        assert metadata.removeprefix("s3://lake-bucket/") in nightly.s3_objects, ident


def test_pyiceberg_reads_from_glue_and_s3_the_rows_the_local_run_wrote(nightly, fake_aws, local_nightly):
    from include.lake import read_date

    catalog = _glue_catalog(fake_aws)
    for output in P.OUTPUTS:
        on_s3 = catalog.load_table(f"{PREFIX}_curated.{output}").scan(row_filter=f"dt = '{DS}'").to_pandas()
        local = read_date(local_nightly.lake, "curated", output, DS)
        assert len(on_s3) > 0, output
        on_s3 = on_s3.drop(columns=["dt"])
        key = list(local.columns[:2])
        pd.testing.assert_frame_equal(
            on_s3[list(local.columns)].sort_values(key).reset_index(drop=True),
            local.sort_values(key).reset_index(drop=True),
            check_exact=False,
            rtol=1e-9,
            obj=output,
        )


def test_nightly_marks_every_curated_output_asset_with_the_snapshot_its_step_committed(nightly, fake_aws):
    catalog = _glue_catalog(fake_aws)
    uris = {out: f"{LAKE}/warehouse/curated/{out}" for out in P.OUTPUTS}
    assert nightly.run.asset_events == sorted(uris.values())
    for out, uri in uris.items():
        extra = nightly.run.asset_extras[uri]
        table = catalog.load_table(f"{PREFIX}_curated.{out}")
        assert extra["snapshot_id"] == table.current_snapshot().snapshot_id, out
        assert table.current_snapshot().summary.additional_properties["pipeline.run-id"] == nightly.run.run_id


def _landing_records(run: EmrRun, dataset: str) -> int:
    """Records upstream delivered for the run's dates: CSV rows under their header, JSON lines."""
    count = 0
    for key, body in run.s3_objects.items():
        if key.startswith(f"lake/landing/{dataset}/dt="):
            day = key.split("/dt=", 1)[1][:10]
            if HISTORY_START <= day <= DS:
                lines = [line for line in body.decode().splitlines() if line.strip()]
                count += len(lines) - (0 if key.endswith((".json", ".jsonl")) else 1)
    return count


def test_the_nightly_publishes_its_metrics_to_cloudwatch_with_the_lakes_row_counts(nightly, fake_aws):
    """Read back from moto's CloudWatch with ListMetrics and GetMetricData; the rows against the
    landing files and what pyiceberg reads of the tables in Glue (the run's own lake)."""
    report = report_of(nightly, "customer_analytics_nightly", DS)
    assert report["cloudwatch"]["published"] is True, report["cloudwatch"]
    got = published_metrics(fake_aws, "CustomerMarketAnalytics", report)
    assert got[("RunSucceeded", None, None)] == [1.0]
    assert got[("RunFailed", None, None)] == [0.0]
    assert got[("RunDurationSeconds", None, None)] == [report["run"]["duration_seconds"]]
    assert report["run"]["duration_seconds"] > 0
    assert ("SecondsPastDeadline", None, None) not in got  # a manual run has no deadline
    results = json.loads(
        nightly.s3_objects[
            audit_uri(LAKE, DS, P.audit_branch(nightly.run.run_id)).removeprefix("s3://lake-bucket/")
        ]
    )
    warned = sum(r["status"] == "fail" and r["severity"] == "warn" for r in results)
    assert (got[("AuditErrors", None, None)], got[("AuditWarnings", None, None)]) == ([0.0], [float(warned)])
    assert got[("EstimatedCost", None, None)] == [report["emr_cluster"]["estimated_cost"]]
    for step in [*(s.name for s in P.PIPELINE), "audit", "publish"]:
        assert got[("StepFailed", step, None)] == [0.0], step
        assert len(got[("StepDurationSeconds", step, None)]) == 1, step
    catalog = _glue_catalog(fake_aws)
    for dataset in P.DATASETS:
        step = f"ingest_{dataset}"
        kept = len(catalog.load_table(f"{PREFIX}_processed.{dataset}").scan().to_arrow())
        rejected = len(catalog.load_table(f"{PREFIX}_quarantine.{dataset}").scan().to_arrow())
        assert got[("RowsIn", step, None)] == [float(_landing_records(nightly, dataset))], dataset
        assert got[("RowsOut", step, None)] == [float(kept)], dataset
        assert got[("RowsOut", step, f"processed.{dataset}")] == [float(kept)], dataset
        assert got[("RowsQuarantined", step, None)] == [float(rejected)], dataset
        assert got[("QuarantineShare", step, f"processed.{dataset}")] == [rejected / (kept + rejected)], (
            dataset
        )
    for output in P.OUTPUTS:
        rows = len(
            catalog.load_table(f"{PREFIX}_curated.{output}").scan(row_filter=f"dt = '{DS}'").to_arrow()
        )
        assert got[("RowsOut", P.PRODUCER[output], f"curated.{output}")] == [float(rows)], output
    # exactly what the report says it published: 82 metrics, and a scheduled nightly's deadline
    # makes 83 (README: What it costs)
    assert len(got) == len(report["cloudwatch"]["metric_data"]) == 83 - 1


def test_the_stacks_dashboard_and_alarms_watch_metrics_the_nightly_published(nightly, fake_aws):
    """One source of truth: what infra/'s dashboard and alarms name is what a nightly publishes."""
    from infra.template import watched_metrics

    report = report_of(nightly, "customer_analytics_nightly", DS)
    published = set(published_metrics(fake_aws, "CustomerMarketAnalytics", report))
    watched = {
        (name, dict(dims).get("Step"), dict(dims).get("Output"))
        for _, name, dims in watched_metrics()
        if dict(dims)["DAG"] == "customer_analytics_nightly"
    }
    # only a scheduled run has a deadline (tests/include/test_run_report_metrics.py); this one is manual
    assert watched - published == {("SecondsPastDeadline", None, None)}


def test_a_failed_audit_on_emr_publishes_nothing_and_the_cluster_is_still_terminated(
    nightly, fake_aws, steps_run
):
    """Issue #13 on the emr target, on the nightly run's lake (moto's S3 and Glue): the sales feed
    of DS delivers 5 % of its rows; the audit step (on the same cluster) fails the row count of
    processed.sales against its three published dates. main stays where the nightly run left it
    in Glue, the branch is kept, no asset event, the cluster is terminated.

    That the next good run publishes after a failed audit (its own branch, the failed one kept)
    is the local target's test: the same audit and publish jobs on the same Iceberg branches;
    that a publish moves what Glue points at is the nightly run above."""
    import json

    catalog = _glue_catalog(fake_aws)
    touched = [
        f"{PREFIX}_processed.sales",
        f"{PREFIX}_processed.customers",
        f"{PREFIX}_curated.sales_rolling_30d",
    ]
    before = {t: catalog.load_table(t).current_snapshot().snapshot_id for t in touched}
    key = next(k for k in nightly.s3_objects if k.startswith(f"lake/landing/sales/dt={DS}/"))
    whole = nightly.s3_objects[key]
    header, *lines = whole.decode().splitlines()
    kept = lines[: max(1, len(lines) // 20)]
    fake_aws.s3.put_object(Bucket="lake-bucket", Key=key, Body="\n".join([header, *kept, ""]).encode())
    try:
        failed = run_emr(
            fake_aws, "nightly", DS, {"cluster_profile": "dev", "outputs": ["sales_rolling_30d"]},
            reset=False, run=steps_run,
        )  # fmt: skip
    finally:
        fake_aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=whole)

    states = failed.run.task_states
    assert failed.run.state == "failed"
    assert (states["run_audit"], states["run_publish"]) == ("failed", "upstream_failed")
    assert states["register_sales_rolling_30d"] == "upstream_failed"
    assert states["terminate_cluster"] == "success"
    assert set(failed.clusters.values()) == {"TERMINATED"}
    assert failed.run.asset_events == []
    branch = P.audit_branch(failed.run.run_id)
    catalog = _glue_catalog(fake_aws)
    for name in touched:  # Glue (and Athena) still point at what the nightly run published
        table = catalog.load_table(name)
        assert table.current_snapshot().snapshot_id == before[name], name
        assert branch in table.metadata.refs, name
    results = json.loads(failed.s3_objects[audit_uri(LAKE, DS, branch).removeprefix("s3://lake-bucket/")])
    [count] = [r for r in results if (r["table"], r["check"]) == ("processed.sales", "row_count_vs_history")]
    assert (count["status"], count["severity"]) == ("fail", "error")
    assert count["numbers"]["rows"] <= len(kept) < count["numbers"]["low"]
    sales = catalog.load_table(f"{PREFIX}_processed.sales")
    on_branch = sales.scan(row_filter=f"dt = '{DS}'", snapshot_id=sales.metadata.refs[branch].snapshot_id)
    assert len(on_branch.to_pandas()) == count["numbers"]["rows"]  # the bad data, kept to look at
