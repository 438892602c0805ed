"""Fixtures for the DAG tests: Airflow's home and DB, pipeline settings per target, moto as AWS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.conftest_airflow as airflow_setup  # first: sets up Airflow before it is imported
from tests.dags.aws_fakes import FakeAws, start_moto_server
from tests.dags.dag_runs import DagRunRecord

EMR_ENV = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://lake-bucket/lake",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
    "PIPELINE_EMR_MASTER_SG": "sg-0123456789abcdef0",
    "PIPELINE_EMR_CORE_SG": "sg-0fedcba9876543210",
    "PIPELINE_EMR_POLL_SECONDS": "1",
    # the stand-in cluster writes no step logs: the sensors look once and say where they would be
    "PIPELINE_EMR_STEP_LOG_WAIT_SECONDS": "0",
    "PIPELINE_RETRIES": "0",  # a retry delay would stall dag.test(); retries are checked on the structure
    "PIPELINE_GLUE_DATABASE_PREFIX": "analytics_test",
    # These runs are about the DAG, in an account holding only the lake bucket; preflight is
    # tested against the deployed stack of infra/ (tests/infra/).
    "PIPELINE_EMR_PREFLIGHT": "false",
}


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB (dag.test needs one); once per session, ~10 s."""
    airflow_setup.migrate_db()


@pytest.fixture(scope="session")
def moto_url():
    """moto as a real HTTP endpoint in this process: serves boto3 and aiobotocore (deferred triggers)."""
    server, url = start_moto_server()
    yield url
    server.stop()


@pytest.fixture(scope="module")
def fake_aws(moto_url, module_monkeypatch, airflow_db):
    """Fresh moto state, AWS env and the emr target's settings, for one test module."""
    aws = FakeAws(moto_url)
    aws.install(module_monkeypatch)
    for key, value in EMR_ENV.items():
        module_monkeypatch.setenv(key, value)
    aws.reset()
    aws.s3.create_bucket(Bucket="lake-bucket")
    return aws


# One nightly run of the local target on a seeded demo lake, shared by the tests that only read
# what it did (tests/dags/test_local_target.py) and the emr target's run of the same commands on
# S3 (tests/dags/test_emr_target.py, which compares its tables with these).
NIGHTLY_DS = "2024-06-28"  # a Friday: the market was open, so stock_daily has rows
NIGHTLY_HISTORY_START = "2024-06-25"  # three published dates before NIGHTLY_DS: the audit has history
NIGHTLY_SEED = 5
NIGHTLY_SCALE = 0.002


@dataclass
class LocalNightly:
    lake: Path
    run: DagRunRecord


def demo_landing(root: Path) -> Path:
    """The landing files both targets' nightly runs read (same seed, same days)."""
    from include.demo_data import generate

    generate(str(root), NIGHTLY_HISTORY_START, NIGHTLY_DS, scale=NIGHTLY_SCALE, seed=NIGHTLY_SEED)
    return root


@pytest.fixture(scope="session")
def local_nightly(tmp_path_factory, airflow_db) -> LocalNightly:
    """The local target's nightly DAG under dag.test() for NIGHTLY_DS, history from the start date."""
    from include import pipeline as P
    from tests.dags.dag_runs import run_pipeline_dag

    root = demo_landing(tmp_path_factory.mktemp("local-nightly") / "lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_TARGET", "local")
        mp.setenv("PIPELINE_LAKE", root.as_uri())
        mp.setenv("PIPELINE_RETRIES", "0")  # a failed job shows at once, not after a delay
        run = run_pipeline_dag(
            "nightly",
            NIGHTLY_DS,
            {"ingest_start_ds": NIGHTLY_HISTORY_START},
            xcom_tasks=(*(f"run_{s.name}" for s in P.PIPELINE), "plan"),
        )
    return LocalNightly(root, run)
