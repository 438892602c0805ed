"""The warm local Spark application's queue: the client stamps when it sent a job, the server
hands the job how long it waited (jobs run one at a time), and the job records it in its timings.
No Spark: the server's job runner with a stand-in for the CLI and the shared application."""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from spark_jobs import server, session


class _Conn:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data


@pytest.fixture
def shared_application(monkeypatch):
    catalog = SimpleNamespace(clearCache=lambda: None)
    base = SimpleNamespace(catalog=catalog, streams=SimpleNamespace(active=[]))
    monkeypatch.setattr(session, "_SHARED", base)
    monkeypatch.setattr(session, "release_sessions", lambda: None)
    return base


def _cli(calls: list):
    def main(argv, lineage, queued_seconds):
        calls.append((argv, lineage, queued_seconds))
        return 0

    return SimpleNamespace(main=main)


@pytest.mark.parametrize(
    ("sent_at", "now", "queued"),
    [(100.0, 107.25, 7.25), (100, 100.5, 0.5), (200.0, 199.0, 0.0), (None, 5.0, None), ("x", 5.0, None)],
)
def test_the_server_gives_each_job_the_time_it_waited_for_the_application(
    shared_application, sent_at, now, queued
):
    calls: list = []
    request = {"argv": ["graph", "--ds", "2024-06-08"], "lineage": {"a": "b"}}
    if sent_at is not None:
        request["sent_at"] = sent_at
    code = server._run_job(_Conn(), request, _cli(calls), now=lambda: now)
    assert code == 0
    # a clock that went back counts as no wait; a request without a stamp has no queue time
    assert calls == [(["graph", "--ds", "2024-06-08"], {"a": "b"}, queued)]


def test_the_client_stamps_the_request_with_the_time_it_sent_it(tmp_path):
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    received: list[dict] = []

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            received.append(json.loads(conn.makefile("r").readline()))
            conn.sendall(b"a line of the job\n" + f"{server.EXIT_MARK} 0\n".encode())

    thread = threading.Thread(target=serve_one)
    thread.start()
    lines: list[str] = []
    before = time.time()
    code = server.run_job(path, ["graph", "--ds", "2024-06-08"], lines.append, {"k": "v"})
    after = time.time()
    thread.join()
    listener.close()
    assert code == 0
    assert lines == ["a line of the job"]
    (request,) = received
    assert set(request) == {"argv", "lineage", "sent_at"}
    assert (request["argv"], request["lineage"]) == (["graph", "--ds", "2024-06-08"], {"k": "v"})
    assert before <= request["sent_at"] <= after
