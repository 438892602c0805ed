"""Fixtures for the DAG tests: Airflow's home and DB, pipeline settings per target, moto as AWS."""

from __future__ import annotations

import pytest

import tests.conftest_airflow as airflow_setup  # first: sets up Airflow before it is imported
from tests.dags.aws_fakes import FakeAws, start_moto_server

EMR_ENV = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://lake-bucket/lake",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
    "PIPELINE_EMR_MASTER_SG": "sg-0123456789abcdef0",
    "PIPELINE_EMR_CORE_SG": "sg-0fedcba9876543210",
    "PIPELINE_EMR_POLL_SECONDS": "1",
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
