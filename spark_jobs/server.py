"""A warm local Spark application that runs job command lines, one after another, in one JVM.

The local twin of an EMR cluster's lifetime: started once per pipeline run (the local DAG's
`start_spark` task), it runs each step's unchanged command line (`graph --ds ... --lake ...`)
and is stopped at the end (`stop_spark`, a teardown). Starting Spark with Iceberg costs seconds
per process; here a step pays only its own work. Steps stay isolated: each gets a new session of
the application (own SQL settings, catalogs, temporary views), its cached data is dropped
afterwards, and a job that fails leaves the application as it was for the next one.

    python -m spark_jobs.server start --socket PATH [--s3]   # returns once the server is ready
    python -m spark_jobs.server stop --socket PATH

Protocol (a Unix socket, one job per connection): the client sends one JSON line
{"argv": [...], "lineage": {spark.openlineage.* properties}}; the server streams the job's output
lines back and ends with "<EXIT_MARK> <code>". Jobs run one at a time, in arrival order.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

EXIT_MARK = "\x00spark_jobs.server exit"
READY_TIMEOUT = 180.0


class _ConnectionWriter(io.TextIOBase):
    """A text stream that sends whole lines to the client (the job's stdout and stderr)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = ""
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.lock:
            self.buffer += text
            *lines, self.buffer = self.buffer.split("\n")
            for line in lines:
                self._send(line)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            if self.buffer:
                self._send(self.buffer)
                self.buffer = ""

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the client went away: the job still finishes
            self.conn.sendall((line + "\n").encode("utf-8", errors="replace"))


class _CurrentStderr(io.TextIOBase):
    """Where log records go: whatever sys.stderr is while a job runs."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return sys.stderr.write(text)


def _serve(path: str, s3: bool) -> None:
    from spark_jobs import cli, session

    logging.basicConfig(level=logging.INFO, stream=_CurrentStderr(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    base = session.local_builder("spark_jobs.server", s3=s3).getOrCreate()
    base.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    session._SHARED = base
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.settimeout(0.5)
    try:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                line = conn.makefile("r", encoding="utf-8").readline()
                if not line.strip():
                    continue  # a probe (is_running): connected and left
                request = json.loads(line)
                code = 0 if request.get("stop") else _run_job(conn, request, cli)
                with contextlib.suppress(OSError):
                    conn.sendall(f"{EXIT_MARK} {code}\n".encode())
                if request.get("stop"):
                    break
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        base.stop()


def _run_job(conn: socket.socket, request: dict, cli, now: Callable[[], float] = time.time) -> int:
    """`python -m spark_jobs ARGV` in this process, its output sent to the client; the job's
    timings get how long it waited for this application (jobs run one at a time)."""
    from spark_jobs import session

    base = session._SHARED
    argv = [str(a) for a in request.get("argv") or []]
    sent = request.get("sent_at")  # the client's clock: same machine (a Unix socket)
    queued = max(0.0, now() - float(sent)) if isinstance(sent, (int, float)) else None
    out = _ConnectionWriter(conn)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    try:
        return int(cli.main(argv, lineage=request.get("lineage") or {}, queued_seconds=queued))
    except SystemExit as exc:
        return int(exc.code or 0)
    except BaseException as exc:  # a job's crash must not end the server
        print(f"spark_jobs.server: {argv[:1]} crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        out.flush()
        sys.stdout, sys.stderr = saved
        # Whatever the job cached, opened or left running goes, so the next job starts clean.
        with contextlib.suppress(Exception):
            session.release_sessions()
        base.catalog.clearCache()
        for query in base.streams.active:
            query.stop()


# ---- the client side -----------------------------------------------------------------------
def is_running(path: str | os.PathLike) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
        return True
    except OSError:
        return False


def run_job(
    path: str | os.PathLike,
    argv: list[str],
    on_line: Callable[[str], None],
    lineage: dict[str, str] | None = None,
) -> int:
    """Run one job command line on the server; each output line goes to on_line. Its exit code.

    `lineage`: the job's `spark.openlineage.*` properties (its parent run, the transport)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        request = {"argv": list(argv), "lineage": dict(lineage or {}), "sent_at": time.time()}
        sock.sendall((json.dumps(request) + "\n").encode())
        for raw in sock.makefile("r", encoding="utf-8", errors="replace"):
            line = raw.rstrip("\n")
            if line.startswith(EXIT_MARK):
                return int(line.rsplit(" ", 1)[1])
            on_line(line)
    raise ConnectionError(f"the local Spark application at {path} ended while running {argv[:1]}")


def start(path: str | os.PathLike, *, s3: bool = False, env: dict[str, str] | None = None,
          log: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None) -> int:  # fmt: skip
    """Start a server in its own process (it outlives the caller) and wait until it accepts jobs."""
    if is_running(path):
        return 0
    command = [
        sys.executable,
        "-m",
        "spark_jobs.server",
        "serve",
        "--socket",
        str(path),
        *(["--s3"] if s3 else []),
    ]
    out = open(log or os.devnull, "ab")  # noqa: SIM115 (handed to the child)
    # stdin from /dev/null: the caller's stdin may be a channel its parent waits on to close (an
    # Airflow 3 task's is its supervisor's socket), and the server outlives the caller.
    proc = subprocess.Popen(  # noqa: S603 (our own module, an argument list)
        command,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if is_running(path):
            return proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"the local Spark application exited with {proc.returncode} (log: {log})")
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"the local Spark application did not start within {READY_TIMEOUT:.0f} s (log: {log})")


def stop(path: str | os.PathLike) -> bool:
    """Ask the server to end (after the job it is running); False when none was running."""
    if not is_running(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(b'{"stop": true}\n')
        sock.recv(64)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=("serve", "start", "stop"))
    parser.add_argument("--socket", required=True, help="Unix socket path")
    parser.add_argument("--s3", action="store_true", help="also Spark's s3:// (lakes on S3 or a stand-in)")
    parser.add_argument("--log", help="start: where the server's own output goes")
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args.socket, args.s3)
    elif args.command == "start":
        start(args.socket, s3=args.s3, log=args.log)
    else:
        stop(args.socket)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
