"""The fixtures every folder of Airflow tests uses: the metadata DB, moto as AWS, the emr target's
settings. Registered for the whole suite by tests/conftest.py (`pytest_plugins`); a folder's
conftest imports tests.harness.airflow_home first, so Airflow is set up before it is imported.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def airflow_db(aws_callers_found_without_source) -> None:
    """A migrated metadata DB (dag.test needs one); once per session, ~10 s."""
    from tests.harness.airflow_home import migrate_db

    migrate_db()


@pytest.fixture(scope="session")
def aws_callers_found_without_source():
    """The amazon provider's hooks name their caller in the user agent by walking the call stack
    with `inspect.stack()`, which also reads the source lines of every frame (thousands of files'
    lines per hook; about 0.5 s a hook on a busy machine, a tenth of an EMR DAG run). The same walk
    with `inspect.stack(0)` finds the same frames and functions without reading any source, so the
    hooks' requests, user agents included, are unchanged."""
    import inspect

    from airflow.providers.amazon.aws.hooks import base_aws  # after the folder's conftest set Airflow up

    class _Inspect:
        def __getattr__(self, name: str):
            return getattr(inspect, name)

        @staticmethod
        def stack(context: int = 0):
            return inspect.stack(context)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base_aws, "inspect", _Inspect())
        yield


@pytest.fixture(scope="session")
def moto_url():
    """moto as a real HTTP endpoint in this process: serves boto3 and aiobotocore (deferred triggers)."""
    from tests.harness.aws_fakes import start_moto_server

    server, url = start_moto_server()
    yield url
    server.stop()


@pytest.fixture(scope="module")
def fake_aws(moto_url, module_monkeypatch, airflow_db):
    """Fresh moto state, AWS env and the emr target's settings, for one test module."""
    from tests.harness.aws_fakes import FakeAws
    from tests.harness.settings import EMR_ENV

    aws = FakeAws(moto_url)
    aws.install(module_monkeypatch)
    for key, value in EMR_ENV.items():
        module_monkeypatch.setenv(key, value)
    aws.reset()
    aws.s3.create_bucket(Bucket="lake-bucket")
    return aws
