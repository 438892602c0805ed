"""The local target: one warm Spark application per run as its setup (stopped as its teardown),
one `python -m spark_jobs ...` task per step, run on that application (or, without it, in a
process of its own)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from airflow.sdk import task

from include.lineage import spark_properties
from include.settings import PROJECT_ROOT, Settings
from plugins.spark_job import SparkJobSubprocessOperator

log = logging.getLogger(__name__)


def spark_server_socket(dag_id: str, run_id: str) -> str:
    """Where a local run's warm Spark application listens: one Unix socket per run (short path)."""
    digest = hashlib.sha1(f"{dag_id}|{run_id}".encode()).hexdigest()[:16]  # noqa: S324 (a name, not a secret)
    return os.path.join(tempfile.gettempdir(), f"spark-jobs-{digest}.sock")


def local_job(
    settings: Settings, task_id: str, commands: Any, spark_server: Any
) -> SparkJobSubprocessOperator:
    """One local task running job command lines (the nightly's steps, the backfill's, maintain),
    on the run's warm Spark application when there is one, else in a process of its own."""
    return SparkJobSubprocessOperator(
        task_id=task_id,
        commands=commands,
        cwd=str(PROJECT_ROOT),
        env={"SPARK_LOCAL_IP": "127.0.0.1"},
        spark_server=spark_server,
        lineage=spark_properties(settings),
    )


def local_spark(settings: Settings, plan: Any) -> tuple[Any, Any]:
    """start_spark (setup) and stop_spark (teardown): the local run's warm Spark application, the
    local twin of the EMR cluster. Steps whose worker cannot reach it run in a process of their own."""

    @task(task_id="start_spark", retries=0)
    def start_spark(path: str) -> str:
        from spark_jobs import server

        log_file = f"{path}.log"
        pid = server.start(path, env={"SPARK_LOCAL_IP": "127.0.0.1"}, log=log_file)
        log.info("Spark application %s ready at %s (its log: %s)", pid, path, log_file)
        return path

    @task(task_id="stop_spark", retries=0)
    def stop_spark(path: str) -> None:
        from spark_jobs import server

        log.info("stopping the Spark application at %s: %s", path, server.stop(path))

    start = start_spark(plan["spark_server"])
    stop = stop_spark(plan["spark_server"]).as_teardown(setups=start)
    return start, stop


class LocalTarget:
    """Steps as `spark_jobs` command lines, on the run's warm Spark application when
    PIPELINE_LOCAL_SPARK_SERVER is on (its setup), else each in a process of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def preflight(self, plan: Any) -> None:
        return None  # nothing to check before a local run starts

    def setup(self, plan: Any) -> tuple[list[Any], Any | None]:
        if not self.settings.local_spark_server:
            return [], None
        start, stop = local_spark(self.settings, plan)
        return [start], stop

    def step(self, plan: Any, task_id: str, commands: Any) -> SparkJobSubprocessOperator:
        # an empty command list skips the task (no requested output needs the step)
        return local_job(self.settings, task_id, commands, plan["spark_server"])

    def steps_done(self) -> None:
        return None  # the audit itself waits for every step (none failed, one at least ran)

    def batches(self, plan: Any, task_id: str) -> SparkJobSubprocessOperator:
        # the steps, then the audit of every date, then publish: one command list
        return local_job(self.settings, task_id, plan["commands"], plan["spark_server"])

    def teardown(self, teardown: Any | None, after: Sequence[Any], *, step_logs: bool = True) -> None:
        if teardown is not None:
            list(after) >> teardown
