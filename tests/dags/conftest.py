"""Fixtures for the DAG tests: the local target's nightly run the session's tests share.

Airflow's DB, moto and the emr target's settings are tests/harness/fixtures.py's.
"""

from __future__ import annotations

import pytest

import tests.harness.airflow_home  # noqa: F401  (first: sets up Airflow before it is imported)
from tests.harness.nightly import (
    LOCAL_RUN_SHUFFLE_PARTITIONS,
    NIGHTLY_DS,
    NIGHTLY_HISTORY_START,
    LocalNightly,
    demo_landing,
)


@pytest.fixture(scope="session")
def local_nightly(tmp_path_factory, airflow_db) -> LocalNightly:
    """The local target's nightly DAG under dag.test() for NIGHTLY_DS, history from the start date
    (what `airflow dags test` runs: the DAG parsed from its file, its Deadline Alert included)."""
    from include import pipeline as P
    from include.run_local import DAG_FILES, load_dag, run_dag_test
    from tests.harness.dag_runs import record_run

    root = demo_landing(tmp_path_factory.mktemp("local-nightly") / "lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_TARGET", "local")
        mp.setenv("PIPELINE_LAKE", root.as_uri())
        mp.setenv("PIPELINE_RETRIES", "0")  # a failed job shows at once, not after a delay
        mp.setenv("SPARK_SHUFFLE_PARTITIONS", LOCAL_RUN_SHUFFLE_PARTITIONS)
        dag = load_dag(DAG_FILES["nightly"])
        run = run_dag_test(dag, NIGHTLY_DS, {"ingest_start_ds": NIGHTLY_HISTORY_START})
        record = record_run(dag, run.run_id, xcom_tasks=(*(f"run_{s.name}" for s in P.PIPELINE), "plan"))
    return LocalNightly(root, record, dag)
