"""Shared fixtures: one local SparkSession for the whole session, throwaway lakes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest_plugins = ("tests.harness.fixtures",)  # Airflow's DB and moto, for every Airflow test folder

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


@pytest.fixture(scope="session", autouse=True)
def botocore_models_loaded_once():
    """Every boto3 session of a test process shares one botocore loader, so the service models
    and endpoint data (JSON files of megabytes) are parsed once per process, not once per
    session: Airflow's AWS hooks make a session per client, about 0.3 s of parsing each, some
    twenty per EMR DAG run. Within one session botocore already hands the same loaded models to
    every client; this widens that cache to the process (what the tests assert is unchanged)."""
    import functools

    import botocore.session

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.session, "create_loader", functools.cache(botocore.session.create_loader))
        yield


@pytest.fixture(scope="session")
def spark():
    """The local Spark of the jobs (Iceberg, its SQL extensions), sized for small test data: two
    input partitions, so rows meet across partitions, and one after a shuffle (adaptive execution
    would coalesce the few rows of a test to one anyway; the fewer tasks save a tenth of the Spark
    tests' time)."""
    from spark_jobs.session import local_builder

    session = (
        local_builder("tests", master="local[2]")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def lake_spark(spark, lake):
    """The session whose catalog `lake` serves this test's lake."""
    from spark_jobs.tables import bind

    return bind(spark, lake)


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A fresh, empty lake as a file:// URI (the jobs' --lake)."""
    root = tmp_path / "lake"
    root.mkdir()
    return root.as_uri()


@pytest.fixture(scope="module")
def module_monkeypatch():
    """A monkeypatch shared by a module's fixtures (environment, AWS endpoints), undone after it."""
    with pytest.MonkeyPatch.context() as mp:
        yield mp


# ---- make test's two workers (pytest-xdist) --------------------------------------------------
# Every test file runs whole on one worker, so its module fixtures (a pipeline run, a moto
# account) are made once; files that share a session fixture's pipeline run go together.
SAME_WORKER = {
    "tests/dags/test_emr_spark.py": "local nightly lake",  # compares with the local run's rows (ops)
    "tests/dags/test_serverless_spark.py": "local nightly lake",  # the same, for the job runs
    "tests/dags/test_local_target.py": "local nightly lake",
    "tests/dags/test_lineage.py": "local nightly lake",  # reads the local run's lineage
    "tests/dags/test_airflow_commands.py": "local nightly lake",  # its dag.test() is that run
}


def pytest_collection_modifyitems(session, config, items):
    """`make test` deselects the `ops` tests (and says so) unless OPS_TESTS=1 (`make test-ops`).

    Then the longest unit of work (the files sharing the local nightly run, ~half of the suite's
    time) first, so the other worker takes everything else meanwhile (make test keeps this
    order: --no-loadscope-reorder)."""
    if os.environ.get("OPS_TESTS") != "1":
        ops = [item for item in items if item.get_closest_marker("ops")]
        if ops:
            config.hook.pytest_deselected(items=ops)
            items[:] = [item for item in items if not item.get_closest_marker("ops")]
    first = [item for item in items if _file_of(item.nodeid) in SAME_WORKER]
    rest = [item for item in items if _file_of(item.nodeid) not in SAME_WORKER]
    items[:] = first + longest_files_first(rest)


def _file_of(nodeid: str) -> str:
    """tests/dags/test_x.py::test_y[z] -> tests/dags/test_x.py (the unit the workers share out)."""
    return nodeid.split("::", 1)[0]


# A run's time per test file (`python -m bench.suite_times REPORT --write-order tests/file_times.json`).
FILE_TIMES = Path(__file__).with_name("file_times.json")


def longest_files_first(items: list) -> list:
    """The files longest first, each file's tests in their order: the workers take the long
    files early and the short ones fill in at the end, so both end at about the same time
    (alphabetical order left the Spark job files, 15-40 s each, for the end: one worker waited
    up to half a minute for the other). A file not in the table counts as a median one."""
    times = json.loads(FILE_TIMES.read_text()) if FILE_TIMES.is_file() else {}
    median = sorted(times.values())[len(times) // 2] if times else 0.0
    position: dict[str, int] = {}
    for item in items:
        position.setdefault(_file_of(item.nodeid), len(position))

    def key(item) -> tuple[float, int]:
        path = _file_of(item.nodeid)
        return (-times.get(path, median), position[path])

    return sorted(items, key=key)  # stable: a file's tests keep their order


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = _file_of(nodeid)
            return SAME_WORKER.get(path, path)

    return ByFile(config, log)
