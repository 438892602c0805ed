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
from include.run_plan import RunPlan
from include.settings import PROJECT_ROOT, Settings
from include.targets import FromRunPlan
from plugins.spark_job import SparkJobSubprocessOperator

log = logging.getLogger(__name__)


def spark_server_socket(dag_id: str, run_id: str) -> str:
    """Where a local run's warm Spark application listens: one Unix socket per run (short path)."""
    digest = hashlib.sha1(f"{dag_id}|{run_id}".encode()).hexdigest()[:16]  # noqa: S324 (a name, not a secret)
    return os.path.join(tempfile.gettempdir(), f"spark-jobs-{digest}.sock")


class PlannedJobOperator(FromRunPlan, SparkJobSubprocessOperator):
    """A local task running a planned step's command lines (`plan_step`), or a backfill's every
    step in order (`plan_step=None`), on the run's warm Spark application when there is one,
    else in a process of its own. No command (no requested output needs the step): it skips."""

    template_fields: Sequence[str] = (*SparkJobSubprocessOperator.template_fields, "run_plan")

    def __init__(self, *, run_plan: Any, plan_step: str | None, **kwargs: Any) -> None:
        super().__init__(commands=[], spark_server=None, **kwargs)
        self.run_plan = run_plan
        self.plan_step = plan_step

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        return {"commands": plan.commands(self.plan_step), "spark_server": plan.spark_server}


def local_job(settings: Settings, task_id: str, run_plan: Any, step: str | None) -> PlannedJobOperator:
    """One local task of the run's plan (the nightly's steps, the backfill's, maintain)."""
    return PlannedJobOperator(
        task_id=task_id,
        run_plan=run_plan,
        plan_step=step,
        cwd=str(PROJECT_ROOT),
        env={"SPARK_LOCAL_IP": "127.0.0.1"},
        lineage=spark_properties(settings),
    )


def local_spark(settings: Settings, run_plan: Any) -> tuple[Any, Any]:
    """start_spark (setup) and stop_spark (teardown): the local run's warm Spark application, the
    local twin of the EMR cluster. Steps whose worker cannot reach it run in a process of their own."""

    @task(task_id="start_spark", retries=0)
    def start_spark(run_plan: dict[str, Any]) -> str:
        from spark_jobs import server

        path = _socket(run_plan)
        log_file = f"{path}.log"
        pid = server.start(path, env={"SPARK_LOCAL_IP": "127.0.0.1"}, log=log_file)
        log.info("Spark application %s ready at %s (its log: %s)", pid, path, log_file)
        return path

    @task(task_id="stop_spark", retries=0)
    def stop_spark(run_plan: dict[str, Any]) -> None:
        from spark_jobs import server

        path = _socket(run_plan)
        log.info("stopping the Spark application at %s: %s", path, server.stop(path))

    start = start_spark(run_plan)
    stop = stop_spark(run_plan).as_teardown(setups=start)
    return start, stop


def _socket(run_plan: dict[str, Any]) -> str:
    path = RunPlan.from_xcom(run_plan).spark_server
    if path is None:
        raise ValueError("the run's plan has no Spark application (PIPELINE_LOCAL_SPARK_SERVER was off)")
    return path


class LocalTarget:
    """Steps as `spark_jobs` command lines, on the run's warm Spark application when
    PIPELINE_LOCAL_SPARK_SERVER is on (its setup), else each in a process of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def preflight(self) -> None:
        return None  # nothing to check before a local run starts

    def setup(self, run_plan: Any) -> tuple[list[Any], Any | None]:
        if not self.settings.local_spark_server:
            return [], None
        start, stop = local_spark(self.settings, run_plan)
        return [start], stop

    def step(self, run_plan: Any, task_id: str, step: str) -> PlannedJobOperator:
        return local_job(self.settings, task_id, run_plan, step)

    def steps_done(self) -> None:
        return None  # the audit itself waits for every step (none failed, one at least ran)

    def batches(self, run_plan: Any, task_id: str) -> PlannedJobOperator:
        # the steps, then the audit of every date, then publish: one command list
        return local_job(self.settings, task_id, run_plan, None)

    def teardown(self, teardown: Any | None, after: Sequence[Any], *, step_logs: bool = True) -> None:
        if teardown is not None:
            list(after) >> teardown
