"""Airflow for the tests: a throwaway AIRFLOW_HOME (own sqlite DB), this project's dags/ and plugins/.

Airflow reads AIRFLOW_HOME and its configuration once, when first imported, so the conftest of
every test folder that touches Airflow imports this module first, before anything imports
Airflow (a conftest is imported before the test files of its folder). No module of the harness
imports Airflow at its top, so importing one never gets ahead of this.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from include.lineage import AIRFLOW_EMIT_IN_THREAD
from include.run_local import airflow_env

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-tests-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ.update(airflow_env(AIRFLOW_HOME))
# The tests write the same DAG id parsed for both targets back to back (tests/harness/scheduling.py):
# Airflow skips writing a DAG whose last version is younger than this interval (30 s by default),
# so on a fast machine the metadata DB would keep the other target's DAG.
os.environ["AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL"] = "0"
# moto's request recorder (what the DAG asked AWS) writes here; read by tests/harness/aws_fakes.py.
os.environ["MOTO_RECORDER_FILEPATH"] = str(AIRFLOW_HOME / "moto_requests.jsonl")
for var in [v for v in os.environ if v.startswith("PIPELINE_")]:
    del os.environ[var]  # the developer's own settings must not leak into the tests
# Airflow's OpenLineage provider (the tasks' and DAG runs' events), as `make demo` sets it up but
# into one file for the session; the jobs' own events go under each run's lake (include.lineage).
OPENLINEAGE_EVENTS = AIRFLOW_HOME / "openlineage.jsonl"
os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "customer_market_analytics"
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
    {"type": "file", "log_file_path": str(OPENLINEAGE_EVENTS), "append": True}
)
os.environ.update(AIRFLOW_EMIT_IN_THREAD)  # emitted from a thread of the task, as `make demo` does


def migrate_db() -> None:
    from airflow.utils.db import upgradedb

    upgradedb()
