"""The run's warm Spark application under Airflow 3's task supervisor, without the rest of Airflow.

The supervisor hands a task process its "requests" socket as stdin (fd 0) and, once the task
exits, waits up to 60 s for every copy of that socket to close before it frees the executor slot.
`start_spark` starts a server that outlives the task: it must not keep a copy. (It did: each run's
start_spark held one of `make airflow`'s two task slots for a minute after it had succeeded.)
Slow (a JVM): `make test-ops`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.instance import ROOT

pytestmark = pytest.mark.ops


def test_start_spark_leaves_the_task_supervisors_socket_to_the_task(tmp_path: Path):
    from spark_jobs import server

    path = tmp_path / "spark.sock"
    supervisor, task_end = socket.socketpair()  # the supervisor's end and the task's fd 0
    start = "import sys; from spark_jobs import server; print(server.start(sys.argv[1], log=sys.argv[2]))"
    task = subprocess.run(
        [sys.executable, "-c", start, str(path), str(tmp_path / "spark.log")],
        stdin=task_end.fileno(),
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    task_end.close()
    try:
        assert task.returncode == 0, task.stderr[-3000:]
        pid = int(task.stdout.split()[-1])
        assert server.is_running(path)  # the application outlives the task that started it ...
        assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
        supervisor.settimeout(5)
        assert supervisor.recv(1) == b""  # ... and the task's socket closed when the task exited
    finally:
        server.stop(path)
        supervisor.close()
