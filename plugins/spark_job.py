"""Run Spark job command lines as local subprocesses (`python -m <module> ARGS...`), one after another.

The local twin of an EMR step: the same argument list, run with Spark in local mode. Output is
streamed to the task log; a `<METRICS_PREFIX>{json}` line is collected and returned (XCom);
a non-zero exit fails the task with the job's own one-line reason. Exit code 2 (bad input)
fails without retry, since running the same input again cannot help; so does exit code 3 (an
audit that found a blocking problem). With `spark_server` (the run's warm local Spark
application, spark_jobs/server.py) the commands run there instead of in a process each.

Killed (Mark failed, an execution timeout, the worker stopping: Airflow calls `on_kill`), the task
ends the whole process tree of the job it is running: SIGTERM to `python -m <module>` and every
process below it (its Spark JVM is spark-submit's child), SIGKILL to what is left after
`kill_grace_seconds`. The job stays in the task's process group, so the task supervisor's own
group signals reach it too, and a SIGKILL of the task (no on_kill) still takes the job along.
A job running in the run's warm application cannot be ended apart from it (it runs in the
application's one Python thread and JVM, in a session of its own), so on_kill ends the
application's process tree the same way: the job neither runs on nor commits later, the run's
teardown (`stop_spark`) finds nothing left to stop instead of waiting for the job, and a step
queued behind it fails and, retried, runs in a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from spark_jobs.protocol import EXIT_AUDIT_FAILED, EXIT_BAD_INPUT, LINEAGE_VAR, METRICS_PREFIX

# Airflow's task supervisor sends SIGKILL 5 s after the SIGTERM that runs on_kill: the tree's
# own SIGKILL must come before that, or the task process dies with the job's tree still alive.
KILL_GRACE_SECONDS = 3.0


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
    :param kill_grace_seconds: on kill, how long the job's processes get to end after SIGTERM
        before SIGKILL (keep it under the task supervisor's 5 s)
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
        metrics_prefix: str = METRICS_PREFIX,
        spark_server: str | None = None,
        lineage: Mapping[str, str] | None = None,
        kill_grace_seconds: float = KILL_GRACE_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kill_grace_seconds = kill_grace_seconds
        self._running: tuple[str, int] | None = None  # (what, pid) whose process tree runs the job
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

            pid = socket_peer_pid(self.spark_server)
            self._running = ("the run's Spark application", pid) if pid else None
            server = self.spark_server
            self.log.info("Running %s on the run's Spark application (%s, pid %s)", args, server, pid)
            try:
                code = run_job(self.spark_server, args, on_line, lineage)
            finally:
                self._running = None
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
        # An argument list, never a shell string: no parameter value is ever interpreted. In the
        # task's process group (no session of its own): what signals the task's group reaches the job.
        with subprocess.Popen(  # noqa: S603
            argv,
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc:
            self._running = ("the job", proc.pid)
            try:
                assert proc.stdout is not None  # noqa: S101 (stdout=PIPE)
                for raw in proc.stdout:
                    on_line(raw.rstrip("\n"))
                return proc.wait()
            finally:
                self._running = None

    def on_kill(self) -> None:
        if self._running is None:
            return
        what, pid = self._running
        self.log.warning("Killed: ending the process tree of %s (pid %d)", what, pid)
        survivors = end_process_tree(pid, self.kill_grace_seconds)
        if survivors:
            self.log.error("still alive after SIGKILL: %s", survivors)


# ---- ending a process tree (Linux: /proc; elsewhere only the process group) ----------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)", comm may hold spaces
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie has ended: only its exit status is left)."""
    stat = _stat(pid)
    if stat is not None:
        return stat[0] not in ("Z", "X")
    if os.path.isdir("/proc"):
        return False
    try:  # no /proc: signal 0 asks whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc; [] without /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[1], []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: Iterable[int], group: int | None, sig: signal.Signals) -> None:
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def end_process_tree(pid: int, grace_seconds: float = KILL_GRACE_SECONDS) -> list[int]:
    """SIGTERM `pid`, its process group when it leads one (not the caller's), and every descendant;
    SIGKILL whatever of them still runs after `grace_seconds`. Returns the pids still alive (none)."""
    if pid == os.getpid():
        raise ValueError("refusing to end the calling process's own tree")
    tree = [pid, *descendants(pid)]
    try:
        group = pid if os.getpgid(pid) == pid and os.getpgid(pid) != os.getpgrp() else None
    except ProcessLookupError:
        group = None
    _signal(tree, group, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        # what the tree started meanwhile belongs to it too
        tree += [p for p in descendants(pid) if p not in tree]
        if not any(alive(p) for p in tree):
            return []
        time.sleep(0.05)
    tree += [p for p in descendants(pid) if p not in tree]
    _signal([p for p in tree if alive(p)], group, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.05)
    return [p for p in tree if alive(p)]


def socket_peer_pid(path: str) -> int | None:
    """The pid of the process listening on the Unix socket `path` (Linux SO_PEERCRED), else None."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)  # a probe: the server reads an empty line and goes on
            creds = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
        pid, _, _ = struct.unpack("3i", creds)
    except OSError:
        return None
    return pid or None


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
