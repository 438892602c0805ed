"""Run Spark job command lines as local subprocesses (`python -m <module> ARGS...`), one after another.

The local twin of an EMR step: the same argument list, run with Spark in local mode. Output is
streamed to the task log; a `<METRICS_PREFIX>{json}` line is collected and returned (XCom);
a non-zero exit fails the task with the job's own one-line reason. Exit code 2 (bad input)
fails without retry, since running the same input again cannot help; so does exit code 3 (an
audit that found a blocking problem). With `spark_server` (the run's warm local Spark
application, spark_jobs/server.py) the commands run there instead of in a process each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

EXIT_BAD_INPUT = 2
EXIT_AUDIT_FAILED = 3
LINEAGE_VAR = "SPARK_JOBS_LINEAGE"  # read by spark_jobs.cli: the job's spark.openlineage.* properties


class SparkJobSubprocessOperator(BaseOperator):
    """Run `[python, -m, module, *args]` for each argument list in `commands`, in order.

    :param commands: argument lists (templated; an XComArg works), e.g. [["graph", "--ds", ...]]
    :param module: the package to run with `python -m`
    :param python: interpreter (default: the worker's own)
    :param cwd: working directory; also put first on PYTHONPATH so `module` is importable
    :param env: extra environment variables for the jobs (on top of the worker's)
    :param metrics_prefix: line prefix of the job's machine-readable metrics
    :param spark_server: socket of the run's warm Spark application (spark_jobs.server), templated;
        when it answers, the commands run there instead of in a new process each
    :param lineage: the jobs' `spark.openlineage.*` properties (transport, namespace); each job
        also gets this task's OpenLineage run as its parent (Airflow's OpenLineage provider)
    """

    template_fields: Sequence[str] = ("commands", "spark_server")
    template_fields_renderers = {"commands": "json"}
    ui_color = "#e4f0e8"

    def __init__(
        self,
        *,
        commands: Sequence[Sequence[str]] | Any,
        module: str = "spark_jobs",
        python: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        metrics_prefix: str = "SPARK_JOBS_METRICS ",
        spark_server: str | None = None,
        lineage: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.commands = commands
        self.module = module
        self.python = python
        self.cwd = cwd
        self.env = dict(env or {})
        self.metrics_prefix = metrics_prefix
        self.spark_server = spark_server
        self.lineage = dict(lineage or {})

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env["PYTHONUNBUFFERED"] = "1"  # stream the job's log lines as they happen
        if self.cwd:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (self.cwd, env.get("PYTHONPATH"))))
        return env

    def execute(self, context: Any) -> list[dict[str, Any]]:
        commands = self.commands
        if not isinstance(commands, list) or not all(
            isinstance(cmd, list) and all(isinstance(a, str) for a in cmd) for cmd in commands
        ):
            raise AirflowFailException(f"commands must be a list of lists of strings, got {commands!r}")
        if not commands:
            # The plan gives a step no command when no requested output needs it.
            raise AirflowSkipException("nothing to run: the run's outputs do not need this step")
        env = self._environment()
        lineage = self._lineage(context)
        if lineage:
            env[LINEAGE_VAR] = json.dumps(lineage)
        return [self._run(cmd, env, lineage) for cmd in commands]

    def _lineage(self, context: Any) -> dict[str, str]:
        """The jobs' lineage properties plus this task's run as their parent (as the amazon
        provider's EMR operator injects it into spark-submit)."""
        if not self.lineage:
            return {}
        try:
            from airflow.providers.common.compat.openlineage.utils.spark import (
                inject_parent_job_information_into_spark_properties,
            )

            return inject_parent_job_information_into_spark_properties(dict(self.lineage), context)
        except Exception as exc:  # lineage never fails a task
            self.log.warning("lineage: no parent run for the jobs (%s)", exc)
            return dict(self.lineage)

    def _run(self, args: list[str], env: dict[str, str], lineage: dict[str, str]) -> dict[str, Any]:
        tail: deque[str] = deque(maxlen=30)
        metrics: dict[str, Any] = {}

        def on_line(line: str) -> None:
            nonlocal metrics
            tail.append(line)
            if line.startswith(self.metrics_prefix):
                metrics = json.loads(line[len(self.metrics_prefix) :])
                self.log.info("metrics: %s", json.dumps(metrics, sort_keys=True))
            else:
                self.log.info("%s", line)

        if self.spark_server and _server_running(self.spark_server):
            from spark_jobs.server import run_job

            self.log.info("Running %s on the run's Spark application (%s)", args, self.spark_server)
            code = run_job(self.spark_server, args, on_line, lineage)
        else:
            code = self._run_process(args, env, on_line)
        if code != 0:
            reason = _reason(tail, self.module)
            message = f"{' '.join(args[:1])} exited with code {code}: {reason}"
            if code in (EXIT_BAD_INPUT, EXIT_AUDIT_FAILED):  # the same input gives the same no
                raise AirflowFailException(message)
            raise AirflowException(message)
        return metrics

    def _run_process(self, args: list[str], env: dict[str, str], on_line: Any) -> int:
        argv = [self.python or sys.executable, "-m", self.module, *args]
        self.log.info("Running %s", argv)
        # An argument list, never a shell string: no parameter value is ever interpreted.
        with subprocess.Popen(  # noqa: S603
            argv,
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc:
            assert proc.stdout is not None  # noqa: S101 (stdout=PIPE)
            for raw in proc.stdout:
                on_line(raw.rstrip("\n"))
            return proc.wait()


def _server_running(path: str) -> bool:
    from spark_jobs.server import is_running

    return is_running(path)


def _reason(tail: Sequence[str], module: str) -> str:
    """The job's one-line reason (last line naming the module), else the last non-empty line."""
    lines = [line for line in tail if line.strip()]
    for line in reversed(lines):
        if line.startswith(module):
            return line
    return lines[-1] if lines else "no output"
