"""Killing a local step (Mark failed, a timeout: Airflow calls on_kill) ends the job's whole process
tree, its Spark JVM included, whether the job runs in a process of its own or in the run's warm
Spark application.

The jobs here are stand-ins that start a real Spark JVM (pyspark's gateway: spark-submit's java,
as `python -m spark_jobs` does) and then wait for ever. The processes are found and checked in
/proc, by exact pid, independently of the operator's own helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

READY_TIMEOUT = 240  # a bound for the JVM to come up on a loaded machine, not an expectation

# A job that starts Spark's JVM, says which process it is, and never ends by itself.
JVM_JOB = """
import json, os, sys, time
from pyspark.java_gateway import launch_gateway
gateway = launch_gateway()
with open(os.environ["READY_FILE"], "w") as f:
    json.dump({"pid": os.getpid()}, f)
print("jvm is up", flush=True)
time.sleep(3600)
"""

# The run's warm application, as far as the operator sees it: a Unix socket server in a session of
# its own that takes probes (an empty line) and runs a job (one JSON line) in its own JVM.
FAKE_SERVER = """
import json, os, socket, sys, time
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(16)
while True:
    conn, _ = server.accept()
    line = conn.makefile("r").readline()
    if not line.strip():
        conn.close()
        continue
    from pyspark.java_gateway import launch_gateway
    gateway = launch_gateway()
    with open(os.environ["READY_FILE"], "w") as f:
        json.dump({"pid": os.getpid()}, f)
    conn.sendall(b"jvm is up\\n")
    time.sleep(3600)
"""

# A job whose processes ignore SIGTERM: only SIGKILL ends them.
STUBBORN_JOB = """
import json, os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"])
time.sleep(0.5)  # the child ignores SIGTERM before anyone can send it
with open(os.environ["READY_FILE"], "w") as f:
    json.dump({"pid": os.getpid(), "child": child.pid}, f)
time.sleep(3600)
"""


# ---- /proc, read here independently of plugins.spark_job ----------------------------------------
def running(pid: int) -> bool:
    """The process exists and has not ended (a zombie has: only its exit status is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def tree(pid: int) -> list[int]:
    """pid and every running process below it, by /proc/<pid>/task/<tid>/children (a zombie left
    by spark-submit's launcher scripts is not running: it is not part of what must end)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return [p for p in found if running(p)]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def wait_ready(ready: Path, runner: Runner) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        assert runner.thread.is_alive(), f"the task ended before its job was up: {runner.error!r}"
        assert time.monotonic() < deadline, "the job's JVM did not come up"
        time.sleep(0.2)
    time.sleep(0.1)  # the file is written in one call; let it be closed
    return json.loads(ready.read_text())


class Runner:
    """The operator's execute in a thread (the task's main thread, blocked on its job)."""

    def __init__(self, op) -> None:
        self.op = op
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.op.execute({})
        except BaseException as exc:  # what the task would fail with
            self.error = exc

    def join(self) -> BaseException | None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "execute did not return once its job was killed"
        return self.error


@pytest.fixture
def leftovers():
    """Pids a test saw; whatever of them a failing test leaves running is SIGKILLed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def job_dir(tmp_path: Path, monkeypatch) -> Path:
    for module, code in (("jvmjob", JVM_JOB), ("stubbornjob", STUBBORN_JOB)):
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text("")
        (tmp_path / module / "__main__.py").write_text(code)
    monkeypatch.setenv("READY_FILE", str(tmp_path / "ready.json"))
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    return tmp_path


def operator(job_dir: Path, module: str, **kwargs):
    from plugins.spark_job import SparkJobSubprocessOperator

    commands = [["graph", "--ds", "2024-06-28"]]
    return SparkJobSubprocessOperator(
        task_id="run_graph", commands=commands, module=module, cwd=str(job_dir), **kwargs
    )


def test_killing_a_step_ends_its_job_process_and_the_spark_jvm_below_it(job_dir, leftovers):
    from airflow.sdk.exceptions import AirflowException

    op = operator(job_dir, "jvmjob")
    runner = Runner(op)
    job = wait_ready(job_dir / "ready.json", runner)["pid"]
    processes = tree(job)
    leftovers += processes
    jvms = [p for p in processes if comm(p) == "java"]
    assert len(jvms) == 1, {p: comm(p) for p in processes}  # spark-submit's JVM, below the job
    assert all(running(p) for p in processes)

    op.on_kill()

    assert [p for p in processes if running(p)] == []
    error = runner.join()
    assert isinstance(error, AirflowException)
    assert str(error).startswith("graph exited with code -15")  # SIGTERM ended it
    op.on_kill()  # nothing running any more: nothing to do, no error


def test_killing_a_step_in_the_warm_application_ends_the_application_and_its_jvm(job_dir, leftovers):
    path = str(job_dir / "spark.sock")
    server = start_fake_server(path)
    try:
        op = operator(job_dir, "jvmjob", spark_server=path)
        runner = Runner(op)
        assert wait_ready(job_dir / "ready.json", runner)["pid"] == server.pid  # the job runs there
        processes = tree(server.pid)
        leftovers += processes
        jvms = [p for p in processes if comm(p) == "java"]
        assert len(jvms) == 1, {p: comm(p) for p in processes}
        assert all(running(p) for p in processes)

        op.on_kill()

        server.wait(timeout=10)  # reap it (its parent is this test): a zombie is not running anyway
        assert [p for p in processes if running(p)] == []
        assert isinstance(runner.join(), ConnectionError)  # "the local Spark application ... ended"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_what_ignores_sigterm_is_killed_after_the_grace_period(job_dir, leftovers):
    from airflow.sdk.exceptions import AirflowException

    op = operator(job_dir, "stubbornjob", kill_grace_seconds=0.5)
    runner = Runner(op)
    ready = wait_ready(job_dir / "ready.json", runner)
    processes = tree(ready["pid"])
    leftovers += processes
    assert sorted(processes) == sorted([ready["pid"], ready["child"]])

    op.on_kill()

    assert [p for p in processes if running(p)] == []
    error = runner.join()
    assert isinstance(error, AirflowException)
    assert str(error).startswith("graph exited with code -9")  # only SIGKILL ended it


def test_killing_a_task_that_runs_nothing_does_nothing(job_dir):
    operator(job_dir, "jvmjob").on_kill()  # before execute: no process to end, no error


def test_the_process_tree_helper_refuses_the_callers_own_process():
    from plugins.spark_job import end_process_tree

    with pytest.raises(ValueError, match="own tree"):
        end_process_tree(os.getpid())


# ---- the real "Mark failed": Airflow's task supervisor, told by the API that the task is failed ---
KILL_DAG = """
from airflow.sdk import DAG
from plugins.spark_job import SparkJobSubprocessOperator

with DAG("kill_test", schedule=None):
    SparkJobSubprocessOperator(
        task_id="run_graph", commands=[["graph"]], module="jvmjob", cwd={cwd!r}, spark_server={server!r}
    )
"""
RUN_CONTEXT = {
    "dag_run": {
        "dag_id": "kill_test",
        "run_id": "manual__1",
        "logical_date": "2024-06-28T00:00:00Z",
        "start_date": "2024-06-28T00:00:00Z",
        "run_type": "manual",
        "run_after": "2024-06-28T00:00:00Z",
        "data_interval_start": None,
        "data_interval_end": None,
        "end_date": None,
        "state": "running",
        "partition_key": None,
        "consumed_asset_events": [],
    },
    "max_tries": 0,
    "should_retry": False,
}


def start_fake_server(path: str) -> subprocess.Popen:
    """The stand-in warm application, started as spark_jobs.server.start does: a session of its own
    (so the task supervisor's signals to the task's process group do not reach it)."""
    server = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, path], stdin=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert server.poll() is None, "the stand-in server exited"
        assert time.monotonic() < deadline, "the stand-in server did not start"
        time.sleep(0.05)
    return server


@pytest.mark.ops  # Airflow's real task supervisor and two Spark JVMs: make test-ops
@pytest.mark.parametrize("on", ["process", "warm application"])
def test_marking_a_running_local_step_failed_leaves_no_process_of_its_job(
    job_dir, monkeypatch, capsys, leftovers, on
):
    """Airflow's own supervisor runs the task (a forked task runner, heartbeats); once the job's JVM
    is up, the execution API answers the heartbeat as it does after "Mark failed" (409: the task is
    no longer running) and the supervisor kills the task's process group: SIGTERM (the task runner
    calls on_kill), SIGKILL 5 s later. No process of the job's tree may be left. (Airflow 3.3's
    supervisor signals the task's whole process group, which the job's own process shares: that
    variant would pass without on_kill too. The warm application has a session of its own: only
    on_kill reaches it.)"""
    import uuid

    import httpx
    from airflow.sdk.api.client import Client
    from airflow.sdk.api.datamodels._generated import BundleInfo, TaskInstance
    from airflow.sdk.execution_time.supervisor import supervise_task

    path = str(job_dir / "spark.sock")
    server = start_fake_server(path) if on == "warm application" else None
    (job_dir / "kill_dag.py").write_text(KILL_DAG.format(cwd=str(job_dir), server=path if server else None))
    marked_failed = threading.Event()

    def api(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/run"):
            return httpx.Response(200, json=RUN_CONTEXT)
        if path.endswith("/heartbeat"):
            if marked_failed.is_set():
                detail = {"reason": "not_running", "message": "not running", "current_state": "failed"}
                return httpx.Response(409, json={"detail": detail})
            return httpx.Response(204)
        return httpx.Response(200, json={})

    found: dict[int, str] = {}  # pid -> its command name, when the job's JVM was up

    def mark_failed_once_the_jvm_is_up() -> None:
        ready = job_dir / "ready.json"
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.1)
        if ready.exists():
            found.update({p: comm(p) for p in tree(json.loads(ready.read_text())["pid"])})
        marked_failed.set()  # the user clicks "Mark failed"

    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")
    watcher = threading.Thread(target=mark_failed_once_the_jvm_is_up, daemon=True)
    watcher.start()
    ti = TaskInstance(
        id=uuid.uuid4(),
        task_id="run_graph",
        dag_id="kill_test",
        run_id="manual__1",
        try_number=1,
        dag_version_id=uuid.uuid4(),
    )
    try:
        supervise_task(
            ti=ti,
            bundle_info=BundleInfo(name="dags-folder"),
            dag_rel_path=str(job_dir / "kill_dag.py"),
            token="",
            client=Client(base_url=None, dry_run=True, token="", transport=httpx.MockTransport(api)),
        )
        watcher.join(timeout=5)
        if server is not None:
            server.wait(timeout=10)  # reap it (the test is its parent): a zombie is not running anyway
        processes = list(found)
        leftovers += processes
        assert list(found.values()).count("java") == 1, found
        if server is not None:
            assert processes[0] == server.pid  # the job ran in the application
        # the supervisor's and the task's log (structlog, to this process's stdout)
        log = capsys.readouterr().out
        assert "Server indicated the task shouldn't be running anymore" in log
        what = "the run's Spark application" if server else "the job"
        assert f"Killed: ending the process tree of {what} (pid {processes[0]})" in log  # on_kill ran
        assert [p for p in processes if running(p)] == []
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
