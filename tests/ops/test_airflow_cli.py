"""`airflow dags test` as a user types it: a throwaway AIRFLOW_HOME, this project's dags/ and
plugins/, a demo lake, the nightly DAG with its Deadline Alert (in-process: tests/dags/
test_airflow_commands.py). A subprocess of its own (the CLI reads AIRFLOW_HOME once), about a
minute on 2 cores: `make test-ops`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.instance import DAG_ID, ROOT

pytestmark = pytest.mark.ops

AIRFLOW = Path(sys.executable).parent / "airflow"
DS = "2024-06-28"


def test_airflow_dags_test_of_the_nightly_exits_0_on_a_demo_lake(tmp_path):
    from tests.harness.nightly import demo_landing

    lake = demo_landing(tmp_path / "lake")
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": str(ROOT),
            "PIPELINE_LAKE": str(lake),
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
    )

    def airflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(AIRFLOW), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
        )

    migrated = airflow("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    done = airflow("dags", "test", DAG_ID, DS, "-c", json.dumps({"outputs": ["stock_daily"]}))
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    with sqlite3.connect(home / "airflow.db") as db:
        runs = db.execute("SELECT run_type, state, id FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchall()
        ((run_type, state, run_pk),) = runs
        assert (run_type, state) == ("manual", "success")
        # the DAG as parsed keeps its deadline; the manual run has none to miss
        references = [json.loads(r) for (r,) in db.execute("SELECT reference FROM deadline_alert")]
        reference = "plugins.deadline_reference.ScheduledRunLogicalDate"
        assert [r["__class_path"] for r in references] == [reference]
        assert db.execute("SELECT count(*) FROM deadline WHERE dagrun_id = ?", (run_pk,)).fetchone() == (0,)
