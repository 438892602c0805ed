"""The local target end to end: the nightly DAG under dag.test() runs every Spark job on a demo lake.

One run builds every curated output (the session's `local_nightly`, asserted by several tests);
more runs on the same lake show that a failed audit publishes nothing, that a subset builds only
what it needs (the good rerun after it), and that a bad request is refused before any job
starts: by the Param schema when the run is created, or by the plan task for what a schema
cannot express (a history start after the run's date).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from include import pipeline as P
from include.run_plan import RunPlan
from tests.harness.dag_runs import DagRunRecord, rows_written, run_pipeline_dag
from tests.harness.nightly import LOCAL_RUN_SHUFFLE_PARTITIONS
from tests.harness.nightly import NIGHTLY_DS as DS
from tests.harness.nightly import NIGHTLY_HISTORY_START as HISTORY_START

pytestmark = pytest.mark.slow

RUN_TASKS = tuple(f"run_{step.name}" for step in P.PIPELINE)


@pytest.fixture(scope="module")
def demo_lake(local_nightly, module_monkeypatch) -> Path:
    """The shared nightly run's lake; the local target's settings point at it for this module's runs."""
    module_monkeypatch.setenv("PIPELINE_TARGET", "local")
    module_monkeypatch.setenv("PIPELINE_LAKE", local_nightly.lake.as_uri())
    module_monkeypatch.setenv("PIPELINE_RETRIES", "0")  # a failed job shows at once, not after a delay
    module_monkeypatch.setenv("SPARK_SHUFFLE_PARTITIONS", LOCAL_RUN_SHUFFLE_PARTITIONS)
    return local_nightly.lake


@pytest.fixture(scope="module")
def nightly(local_nightly) -> DagRunRecord:
    return local_nightly.run


def test_nightly_local_run_succeeds_with_every_job(nightly):
    assert nightly.state == "success", nightly.task_states
    assert {t: nightly.task_states[t] for t in RUN_TASKS} == dict.fromkeys(RUN_TASKS, "success")


def test_every_curated_output_has_rows_for_the_run_date(nightly, demo_lake):
    from include.lake import read_date as read_partition

    # the numbers each job reported (its SPARK_JOBS_METRICS line) are the rows on disk
    reported = {
        out: n
        for task in RUN_TASKS
        for metrics in nightly.xcoms[task]
        for out, n in metrics.get("rows_out", {}).items()
    }
    for output in P.OUTPUTS:
        df = read_partition(demo_lake, "curated", output, DS)
        assert df is not None, f"curated.{output} has nothing for {DS}"
        assert len(df) > 0, output
        assert reported[output] == rows_written(demo_lake, output, DS), output
    segments = read_partition(demo_lake, "curated", "customer_segments", DS)
    features = read_partition(demo_lake, "curated", "customer_features", DS)
    assert sorted(segments["customer_id"]) == sorted(features["customer_id"])


def test_the_history_range_was_ingested_for_every_dataset(nightly, demo_lake):
    from include.lake import read_date as read_partition

    for dataset in ("customers", "sales", "referrals", "stock_ticks", "clickstream"):
        for ds in (HISTORY_START, "2024-06-27", DS):
            assert read_partition(demo_lake, "processed", dataset, ds) is not None, (dataset, ds)


def test_local_jobs_ran_in_the_specs_order_with_the_run_dates(nightly, demo_lake):
    times = nightly.task_times
    for step in P.PIPELINE:
        for dep in step.depends_on:
            assert times[f"run_{dep}"][1] <= times[f"run_{step.name}"][0], (dep, step.name)
    lake = demo_lake.as_uri()
    plan = RunPlan.from_xcom(nightly.xcoms["plan"]["run_plan"])
    for step in P.PIPELINE:
        # one command per step: ingest loads [history start, ds] in one application, the rest ds
        dates = ["--start-ds", HISTORY_START, "--end-ds", DS] if step.ranged else ["--ds", DS]
        # recorded on every commit the job makes, which goes to the run's branch (write-audit-publish)
        run = ["--run-id", nightly.run_id, "--branch", P.audit_branch(nightly.run_id)]
        assert plan.commands(step.name) == [[step.job, *step.options, *dates, "--lake", lake, *run]]
        (metrics,) = nightly.xcoms[f"run_{step.name}"]
        assert metrics["job"] == step.job


def test_the_run_marks_every_curated_output_asset_with_its_tables_new_snapshot(nightly, demo_lake):
    from include.lake import open_catalog

    lake = demo_lake.as_uri()
    assert nightly.asset_events == sorted(f"{lake}/warehouse/curated/{out}" for out in P.OUTPUTS)
    catalog = open_catalog(lake)
    for out in P.OUTPUTS:
        extra = nightly.asset_extras[f"{lake}/warehouse/curated/{out}"]
        table = catalog.load_table(f"curated.{out}")
        # the snapshot the event names is the table's commit of this run
        snapshot = table.snapshot_by_id(extra["snapshot_id"])
        assert snapshot is not None, out
        assert snapshot.summary.additional_properties["pipeline.run-id"] == nightly.run_id, out
        assert (extra["table"], extra["ds"]) == (f"curated.{out}", DS)


def test_a_conf_the_param_schema_refuses_creates_no_run(demo_lake):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="not_an_output"):
        run_pipeline_dag("nightly", "2024-06-27", {"outputs": ["not_an_output"]})


def test_a_history_start_after_the_run_date_fails_the_plan_before_any_job(demo_lake):
    refused = run_pipeline_dag("nightly", "2024-06-26", {"ingest_start_ds": "2024-06-28"})
    assert refused.state == "failed"
    assert refused.task_states["plan"] == "failed"
    assert {refused.task_states[t] for t in RUN_TASKS} == {"upstream_failed"}
    # nothing was written for that date
    from include.lake import read_date

    assert read_date(demo_lake, "curated", "stock_daily", "2024-06-26") is None


def _asset_events(uri: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        )


def test_a_failed_audit_publishes_nothing_and_the_next_good_run_publishes(nightly, demo_lake):
    """Issue #13 end to end: the sales feed of DS delivers 5 % of its rows. The audit fails the
    row count of processed.sales against its published history (three dates), so the run fails,
    main of every table stays where it was, no asset event is emitted and the run's branch is kept.
    Once the feed is whole again, the rerun publishes."""
    import json

    from include.lake import open_catalog

    lake = demo_lake.as_uri()
    catalog = open_catalog(lake)
    touched = ("processed.sales", "processed.customers", "curated.sales_rolling_30d")
    main_before = {t: catalog.load_table(t).current_snapshot().snapshot_id for t in touched}
    sales_before = len(catalog.load_table("processed.sales").scan(row_filter=f"dt = '{DS}'").to_pandas())
    asset = f"{lake}/warehouse/curated/sales_rolling_30d"
    events_before = _asset_events(asset)
    [landing] = (demo_lake / "landing" / "sales" / f"dt={DS}").glob("*.csv")
    whole = landing.read_text()
    header, *lines = whole.splitlines()
    kept = lines[: max(1, len(lines) // 20)]
    landing.write_text("\n".join([header, *kept]) + "\n")
    try:
        failed = run_pipeline_dag("nightly", DS, {"outputs": ["sales_rolling_30d"]})
    finally:
        landing.write_text(whole)

    assert failed.state == "failed"
    assert failed.task_states["run_audit"] == "failed"
    assert failed.task_states["run_publish"] == "upstream_failed"
    assert failed.task_states["register_sales_rolling_30d"] == "upstream_failed"
    catalog = open_catalog(lake)
    for table in touched:  # readers see exactly what they saw before
        loaded = catalog.load_table(table)
        assert loaded.current_snapshot().snapshot_id == main_before[table], table
        assert P.audit_branch(failed.run_id) in loaded.metadata.refs, table  # kept for a look
    assert (
        len(catalog.load_table("processed.sales").scan(row_filter=f"dt = '{DS}'").to_pandas()) == sales_before
    )
    assert _asset_events(asset) == events_before
    # the audit's results name the failed check with its numbers; the report shows them
    from spark_jobs.paths import audit_uri

    results = json.loads(Path(audit_uri(str(demo_lake), DS, P.audit_branch(failed.run_id))).read_text())
    [count] = [r for r in results if (r["table"], r["check"]) == ("processed.sales", "row_count_vs_history")]
    assert (count["status"], count["severity"]) == ("fail", "error")
    assert count["numbers"]["rows"] <= len(kept) < count["numbers"]["low"]  # ingest may quarantine some
    # the branch holds the bad data, for a person to look at
    sales = catalog.load_table("processed.sales")
    on_branch = sales.scan(
        row_filter=f"dt = '{DS}'", snapshot_id=sales.metadata.refs[P.audit_branch(failed.run_id)].snapshot_id
    ).to_pandas()
    assert len(on_branch) == count["numbers"]["rows"]
    report_file = (
        demo_lake / "_runs" / "reports" / "dag_id=customer_analytics_nightly" / f"dt={DS}" / "report.json"
    )
    report = json.loads(report_file.read_text())
    assert count in report["checks"]["results"]
    assert report["checks"]["errors"] >= 1
    # locally nothing goes to CloudWatch: the metrics the run would publish stay in its report
    cloudwatch = report["cloudwatch"]
    assert (cloudwatch["published"], cloudwatch["reason"]) == (False, "local target: no AWS call")
    datums = {(d["MetricName"], len(d["Dimensions"])): d["Value"] for d in cloudwatch["metric_data"]}
    assert (datums[("RunFailed", 2)], datums[("RunSucceeded", 2)]) == (1.0, 0.0)
    assert datums[("AuditErrors", 2)] == report["checks"]["errors"]
    assert report["run"]["duration_seconds"] > 0

    others = sorted(set(P.OUTPUTS) - {"sales_rolling_30d"})
    catalog = open_catalog(lake)
    others_before = {o: catalog.load_table(f"curated.{o}").current_snapshot().snapshot_id for o in others}
    good = run_pipeline_dag("nightly", DS, {"outputs": ["sales_rolling_30d"]})

    assert good.state == "success", good.task_states
    assert good.task_states["run_publish"] == "success"
    # Issue #19 with the real jobs: the steps the subset needs ran; the others, features and
    # segments downstream of ingest_sales among them, were skipped and committed nothing
    needed = {s.name for s in P.steps_for(["sales_rolling_30d"])}
    assert {t: good.task_states[t] for t in RUN_TASKS} == {
        f"run_{s.name}": "success" if s.name in needed else "skipped" for s in P.PIPELINE
    }
    catalog = open_catalog(lake)
    for output in others:
        assert catalog.load_table(f"curated.{output}").current_snapshot().snapshot_id == others_before[output]
    sales = catalog.load_table("processed.sales")
    assert sales.current_snapshot().snapshot_id != main_before["processed.sales"]
    assert sales.current_snapshot().summary.additional_properties["pipeline.run-id"] == good.run_id
    assert len(sales.scan(row_filter=f"dt = '{DS}'").to_pandas()) == sales_before
    assert P.audit_branch(good.run_id) not in sales.metadata.refs  # published, then dropped
    assert _asset_events(asset) == events_before + 1
