"""The emr-serverless target's job runs run for real: the JobRunPlayer hands each job run's entry
point arguments and lineage `--conf` to a StepRunner (local Spark against moto's S3 and Glue,
started on the code bundle; each job run's `--py-files` in moto's S3, as the DAG uploaded it, must
hold those very bytes), and the job run ends as the job did. pyiceberg's
Glue catalog (a reader sharing no code with the jobs' Spark) then reads the rows the local target's
run of the same landing data wrote, as tests/dags/test_emr_spark.py does for the EMR steps.
"""

from __future__ import annotations

import pandas as pd
import pytest

from include import pipeline as P
from tests.harness.aws_fakes import StepRunner
from tests.harness.nightly import NIGHTLY_DS as DS
from tests.harness.nightly import NIGHTLY_HISTORY_START as HISTORY_START
from tests.harness.nightly import demo_landing
from tests.harness.serverless_runs import ServerlessRun, run_serverless
from tests.harness.settings import SERVERLESS_ENV

pytestmark = pytest.mark.ops  # a whole nightly with every job run in local Spark: make test-ops

LAKE = SERVERLESS_ENV["PIPELINE_LAKE"]
PREFIX = SERVERLESS_ENV["PIPELINE_GLUE_DATABASE_PREFIX"]


@pytest.fixture(scope="module")
def aws(fake_aws, module_monkeypatch):
    for key, value in SERVERLESS_ENV.items():
        module_monkeypatch.setenv(key, value)
    return fake_aws


@pytest.fixture(scope="module")
def runner(aws, tmp_path_factory):
    from include.packaging import build_bundle

    steps = StepRunner(aws, tmp_path_factory.mktemp("serverless-job-runs"))
    bundle = build_bundle()  # the player checks each job run's --py-files holds these very bytes
    steps.start_with(bundle.zip_name, bundle.zip_bytes)
    yield steps
    steps.stop()


@pytest.fixture(scope="module")
def nightly(aws, runner, tmp_path_factory) -> ServerlessRun:
    landing = demo_landing(tmp_path_factory.mktemp("serverless-landing") / "lake") / "landing"
    aws.reset()
    aws.s3.create_bucket(Bucket="lake-bucket")
    for path in sorted(landing.rglob("*")):
        if path.is_file():
            key = f"lake/landing/{path.relative_to(landing).as_posix()}"
            aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=path.read_bytes())
    return run_serverless(
        aws,
        "nightly",
        DS,
        {"cluster_profile": "dev", "ingest_start_ds": HISTORY_START},
        reset=False,
        run=runner,
    )


def _glue_catalog(aws):
    from include.lake import open_catalog

    keys = {"access-key-id": "testing", "secret-access-key": "testing", "region": "us-east-1"}
    properties = {f"{svc}.{k}": v for svc in ("glue", "s3") for k, v in keys.items()}
    return open_catalog(LAKE, properties={**properties, "glue.endpoint": aws.url, "s3.endpoint": aws.url})


def test_every_job_run_ran_for_real_and_the_run_published(nightly, runner):
    assert nightly.run.state == "success", (nightly.run.task_states, runner.output)
    assert {state for _, state in nightly.finished} == {"SUCCESS"}
    assert len(nightly.finished) == len(P.STEPS) + 2  # every step, the audit and publish
    assert list(nightly.applications.values()) == ["TERMINATED"]


def test_pyiceberg_reads_from_glue_and_s3_the_rows_the_local_run_wrote(nightly, aws, local_nightly):
    from include.lake import read_date

    catalog = _glue_catalog(aws)
    for output in P.OUTPUTS:
        table = catalog.load_table(f"{PREFIX}_curated.{output}")
        on_s3 = table.scan(row_filter=f"dt = '{DS}'").to_pandas()
        local = read_date(local_nightly.lake, "curated", output, DS)
        assert len(on_s3) > 0, output
        assert table.metadata_location.startswith(f"{LAKE}/warehouse/curated/{output}/metadata/")
        on_s3 = on_s3.drop(columns=["dt"])
        key = list(local.columns[:2])
        pd.testing.assert_frame_equal(
            on_s3[list(local.columns)].sort_values(key).reset_index(drop=True),
            local.sort_values(key).reset_index(drop=True),
            check_exact=False,
            rtol=1e-9,
            obj=output,
        )
        # what readers see is what this run published
        assert table.current_snapshot().summary.additional_properties["pipeline.run-id"] == nightly.run.run_id
