"""Fixtures for the fault tests: Airflow set up first, moto in this process with EMR's missing parts
(this folder's `moto_url` replaces tests/harness/fixtures.py's)."""

from __future__ import annotations

import pytest

import tests.harness.airflow_home  # noqa: F401  (first: sets up Airflow before it is imported)
from tests.harness.aws_fakes import FakeAws, start_moto_server
from tests.reliability.emr_faults import emr_with_faults


@pytest.fixture(scope="session")
def moto_url():
    server, url = start_moto_server()
    with emr_with_faults():
        yield url
    server.stop()


@pytest.fixture(scope="module")
def moto_env(moto_url, module_monkeypatch) -> FakeAws:
    aws = FakeAws(moto_url)
    aws.install(module_monkeypatch)
    return aws


@pytest.fixture
def aws(moto_env) -> FakeAws:
    """Fresh moto state with the lake's bucket, for one test."""
    moto_env.reset()
    moto_env.s3.create_bucket(Bucket="lake-bucket")
    return moto_env
