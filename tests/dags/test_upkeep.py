"""The upkeep DAGs under dag.test(): a rollback from the form (local lake, and Glue on moto), and the
weekly maintenance step on a transient cluster (moto, the step played)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from include import lake as L
from include import pipeline as P
from tests.harness.aws_fakes import EmrStepPlayer, job_args
from tests.harness.dag_runs import run_pipeline_dag
from tests.harness.settings import EMR_ENV

RUNS = ("manual__2024-06-01T02:00:00+00:00", "manual__2024-06-02T02:00:00+00:00")
SCHEMA = pa.schema([("ticker", pa.string()), ("dt", pa.date32())])


def _two_runs(catalog, ident: str) -> list[int]:
    """A table with one commit per run; returns the snapshot ids, oldest first."""
    namespace = ident.split(".")[0]
    if namespace not in {n[0] for n in catalog.list_namespaces()}:
        catalog.create_namespace(namespace)
    table = catalog.create_table(ident, schema=SCHEMA)
    for i, run in enumerate(RUNS):
        rows = pd.DataFrame({"ticker": [f"T{i}"], "dt": [pd.Timestamp(f"2024-06-0{i + 1}").date()]})
        table.append(pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False),
                     snapshot_properties={"pipeline.run-id": run})  # fmt: skip
        table = catalog.load_table(ident)
    return [s.snapshot_id for s in table.snapshots()]


@pytest.fixture
def local_env(lake, monkeypatch, airflow_db):
    monkeypatch.setenv("PIPELINE_TARGET", "local")
    monkeypatch.setenv("PIPELINE_LAKE", lake)
    return lake


@pytest.mark.parametrize("apply", [False, True])
def test_the_rollback_form_takes_a_table_back_to_before_the_run_only_when_asked(local_env, apply):
    catalog = L.open_catalog(local_env)
    snapshots = _two_runs(catalog, "curated.stock_daily")
    conf = {"table": "curated.stock_daily", "before_run": RUNS[1], "apply": apply}
    run = run_pipeline_dag("rollback", None, conf, xcom_tasks=("rollback",))
    assert run.state == "success", run.task_states
    assert run.xcoms["rollback"] == {
        "table": "curated.stock_daily",
        "target_snapshot": snapshots[0],
        "undone": [snapshots[1]],
        "applied": apply,
    }
    current = catalog.load_table("curated.stock_daily").current_snapshot().snapshot_id
    assert current == (snapshots[0] if apply else snapshots[1])


def test_the_rollback_form_refuses_a_run_that_never_wrote_the_table(local_env):
    _two_runs(L.open_catalog(local_env), "curated.stock_daily")
    run = run_pipeline_dag("rollback", None, {"table": "curated.stock_daily", "before_run": "manual__other"})
    assert run.state == "failed"


@pytest.mark.slow
def test_the_rollback_form_works_on_the_glue_catalog_with_the_dags_aws_connection(fake_aws):
    from include.settings import load_settings
    from include.upkeep import _aws_properties

    catalog = L.open_catalog(EMR_ENV["PIPELINE_LAKE"], properties=_aws_properties(load_settings()))
    ident = f"{EMR_ENV['PIPELINE_GLUE_DATABASE_PREFIX']}_curated.stock_daily"
    snapshots = _two_runs(catalog, ident)
    conf = {"table": "curated.stock_daily", "before_run": RUNS[1], "apply": True}
    run = run_pipeline_dag("rollback", None, conf)
    assert run.state == "success", run.task_states
    assert catalog.load_table(ident).current_snapshot().snapshot_id == snapshots[0]


def _spark_submit_options(step: dict, entrypoint: str) -> list[str]:
    """A step's spark-submit command up to its entrypoint (what runs the job, not the job's own args)."""
    args = step["HadoopJarStep"]["Args"]
    return args[: args.index(entrypoint) + 1]


@pytest.mark.parametrize(
    "lineage",
    [{}, {"lineage_url": "http://marquez:5000"}, {"lineage": False}],
    ids=["lineage to the lake", "lineage to a server", "no lineage"],
)
def test_the_maintenance_step_is_submitted_as_the_nightlys_steps_are(lineage):
    """Same code, same OpenLineage listener jar (--jars), same spark.openlineage.* settings."""
    from include.dag_factory import build_nightly_dag
    from include.packaging import code_location
    from include.planning import plan_nightly
    from include.settings import Settings
    from include.upkeep import build_maintenance_dag, plan_maintenance

    settings = Settings(
        target="emr",
        lake="s3://lake-bucket/lake",
        code_uri="s3://lake-bucket/lake/_code",
        log_uri="s3://lake-bucket/lake/_emr_logs/",
        subnet_id="subnet-0123456789abcdef0",
        **lineage,
    )
    code = code_location(settings, "0.1.0-abc")
    run = "manual__2024-06-30T02:00:00+00:00"
    nightly = plan_nightly(
        settings,
        dag_id="nightly",
        run_id=run,
        ds="2024-06-30",
        params={"cluster_profile": "dev", "outputs": list(P.OUTPUTS)},
        code=code,
    )
    maintenance = plan_maintenance(
        settings, dag_id="maintenance", run_id=run, ds="2024-06-30", keep_days=14, code=code
    )
    # what the DAGs' own step tasks render from their runs' plans (include/targets/emr.py)
    nightly_dag, maintenance_dag = build_nightly_dag(settings), build_maintenance_dag(settings)
    (maintain,) = maintenance_dag.get_task("run_maintain").from_plan(maintenance)["steps"]
    options = _spark_submit_options(maintain, code["entrypoint"])
    for step in ("ingest_sales", "graph", "audit", "publish"):
        (nightly_step,) = nightly_dag.get_task(f"run_{step}").from_plan(nightly)["steps"]
        assert options == _spark_submit_options(nightly_step, code["entrypoint"]), step
    assert ("--jars" in options) == settings.lineage
    if settings.lineage:
        assert options[options.index("--jars") + 1] == code["jars"]
        assert f"spark.openlineage.namespace={settings.lineage_namespace}" in options
    assert any(a.startswith("spark.openlineage.transport.url=") for a in options) == bool(
        settings.lineage_url
    )
    assert not any("openlineage" in a for a in options) or settings.lineage


@pytest.mark.slow
def test_weekly_maintenance_runs_one_maintain_step_on_a_transient_cluster(fake_aws):
    with EmrStepPlayer(fake_aws) as emr:
        run = run_pipeline_dag("maintenance", "2024-06-30", {"keep_days": 21})
    assert run.state == "success", run.task_states
    steps = [s for c in fake_aws.emr_backend().clusters.values() for s in c.steps]
    # logical date Sunday 2024-06-30 02:00: the last whole week ended Sunday 2024-06-23 04:00 UTC
    assert [job_args(s.args)[:6] for s in steps] == [
        ["maintain", "--ds", "2024-06-23", "--lake", EMR_ENV["PIPELINE_LAKE"], "--run-id"]
    ]
    assert job_args(steps[0].args)[-2:] == ["--keep-days", "21"]
    assert [state for _, state in emr.finished] == ["COMPLETED"]
    assert [c.state for c in fake_aws.emr_backend().clusters.values()] == ["TERMINATED"]
