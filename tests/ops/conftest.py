"""Ops tests: a real Airflow and a browser (the `ops` marker, registered in pyproject.toml).

They run only under `make test-ops` (OPS_TESTS=1); `make test` deselects them, and says so,
instead of skipping them (tests/conftest.py). The fast compose checks run everywhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.airflow_api import AirflowApi, wait_for, wait_for_run
from tests.ops.instance import (
    BACKFILL_DATES,
    DAG_ID,
    DEMO_SCALE,
    HISTORY_START,
    ROOT,
    RUN_DS,
    RUN_TIMEOUT,
    SCRIPT,
    Server,
)


# ---- a real Airflow for the session (ops tests only) ------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ops_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from include.demo_data import generate

    lake = tmp_path_factory.mktemp("ops_lake")
    generate(str(lake), HISTORY_START, BACKFILL_DATES[-1], scale=DEMO_SCALE, seed=7)
    return lake


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory: pytest.TempPathFactory, ops_lake: Path) -> Iterator[Server]:
    """`scripts/airflow_local.py start` (what `make airflow` runs) on free ports and its own state."""
    state = tmp_path_factory.mktemp("airflow_server")
    # No retries: a failure shows at once, and every task runs exactly once.
    env = {**os.environ, "PIPELINE_RETRIES": "0", "PIPELINE_TARGET": "local"}
    argv = [sys.executable, str(SCRIPT), "start", "--state-dir", str(state), "--lake", str(ops_lake)]
    argv += ["--port", str(_free_port()), "--pg-port", str(_free_port()), "--wait", "300"]
    started = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    try:
        instance = (
            json.loads((state / "instance.json").read_text()) if (state / "instance.json").exists() else {}
        )
        server = Server(f"http://localhost:{instance.get('port')}", state, instance)
        assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\n{server.logs_tail()}"
        yield server
    finally:
        subprocess.run(
            [sys.executable, str(SCRIPT), "stop", "--state-dir", str(state)], check=False, cwd=ROOT
        )


@pytest.fixture(scope="session")
def api(airflow_server: Server) -> AirflowApi:
    from scripts.airflow_local import ADMIN_PASSWORD, ADMIN_USER

    return AirflowApi(airflow_server.url, ADMIN_USER, ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def nightly_dag(api: AirflowApi) -> dict:
    """The nightly DAG once the dag-processor has parsed it (an import error fails at once)."""

    def parsed() -> dict | None:
        errors = api.get("/importErrors")["import_errors"]
        assert not errors, "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
        response = api.http.get(f"/dags/{DAG_ID}")
        return response.json() if response.status_code == 200 else None

    return wait_for(f"the dag-processor to parse {DAG_ID}", parsed, timeout=300)


@pytest.fixture(scope="session")
def nightly_run(api: AirflowApi, nightly_dag: dict) -> dict:
    """One run of the nightly DAG for RUN_DS, triggered the way the UI's trigger form does it."""
    # The logical date the schedule gives day RUN_DS (02:00 UTC), so a later backfill of the same
    # day would find this run instead of adding a second one.
    run = api.trigger_like_the_ui_form(
        DAG_ID, f"{RUN_DS}T02:00:00Z", {"ingest_start_ds": HISTORY_START, "cluster_profile": "dev"}
    )
    return wait_for_run(api, DAG_ID, run["dag_run_id"], RUN_TIMEOUT)
