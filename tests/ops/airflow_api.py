"""A small client of Airflow 3's public REST API (/api/v2), used as the UI uses it: a JWT from
/auth/token, then plain JSON requests. Waiting helpers fail with what went wrong, not a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

DONE = {"success", "failed"}


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        token = httpx.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        token.raise_for_status()
        self.token = token.json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{self.base_url}/api/v2",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    # ---- what the UI does ----------------------------------------------------------------
    def trigger_like_the_ui_form(
        self, dag_id: str, logical_date: str | None, overrides: dict[str, Any]
    ) -> dict:
        """The trigger form: it shows every Param with its default (from the DAG details), the
        user changes some, and on submit the UI unpauses the DAG ("Unpause on trigger", checked
        by default) and POSTs the whole form as conf with the logical date (none for a DAG
        without a schedule, whose form leaves it empty)."""
        params = self.get(f"/dags/{dag_id}/details")["params"]
        conf = {name: spec.get("value") for name, spec in params.items()}
        unknown = set(overrides) - set(conf)
        assert not unknown, f"the trigger form has no fields {unknown}"
        conf.update(overrides)
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {
            "conf": conf,
            "logical_date": logical_date,
            "data_interval_start": None,
            "data_interval_end": None,
        }
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)

    # ---- reading state -------------------------------------------------------------------
    def dag_runs(self, dag_id: str, **params: Any) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="logical_date", **params)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        # JSON (the API refuses text/plain): structured records whose `event` is the log line.
        body = self.get(path, full_content=True)
        content = body.get("content", body)
        if isinstance(content, str):
            return content
        return "\n".join(
            str(item.get("event", item)) if isinstance(item, dict) else str(item) for item in content
        )

    def failure_report(self, dag_id: str, run_id: str, tail: int = 25) -> str:
        """The failed tasks of a run with the last lines of their logs: what a person would read."""
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] in ("failed", "upstream_failed", "up_for_retry"):
                lines.append(f"--- {ti['task_id']}: {ti['state']} (try {ti['try_number']})")
                if ti["state"] != "upstream_failed" and ti["try_number"]:
                    log = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"])
                    lines.extend(log.splitlines()[-tail:])
        return "\n".join(lines) or "(no failed task)"


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 5) -> Any:
    """Call `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def wait_for_run(api: AirflowApi, dag_id: str, run_id: str, timeout: float) -> dict:
    """Until the run is finished; fails with the failed tasks' logs if it did not succeed."""

    def finished() -> dict | None:
        run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in DONE else None

    run = wait_for(f"run {run_id} of {dag_id}", finished, timeout, interval=10)
    assert run["state"] == "success", f"run {run_id} {run['state']}:\n{api.failure_report(dag_id, run_id)}"
    return run
