"""AWS for the DAG tests: moto in this process, what the DAG asked of it, and someone playing EMR.

moto never runs EMR steps, so `EmrStepPlayer` does: a thread that moves each submitted step to
COMPLETED (or FAILED, for the step names it is told to fail) a moment after it appears, in the
order they were submitted, by reaching into moto's EMR backend (same process as the server).
A step it is told to hold stays RUNNING until a deferred trigger (aiobotocore) has polled it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import recorder
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def start_moto_server() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@dataclass
class AwsRequest:
    """One request the code under test made: e.g. action 'ElasticMapReduce.RunJobFlow' and its JSON body."""

    action: str
    body: Any
    method: str
    url: str
    user_agent: str
    service: str = ""  # signing name of the request's credential scope: ec2, iam, sts, s3, ...


class FakeAws:
    def __init__(self, url: str) -> None:
        self.url = url

    def install(self, mp: Any) -> None:
        """Every AWS client (boto3, aiobotocore, Airflow's connection) talks to moto with fake keys."""
        env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {"conn_type": "aws", "extra": {"region_name": REGION, "endpoint_url": self.url}}
            ),
        }
        for key, value in env.items():
            mp.setenv(key, value)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.url)

    @property
    def s3(self) -> Any:
        return self.client("s3")

    def reset(self) -> None:
        """Forget every resource and every recorded request."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))  # noqa: S310
        recorder.reset_recording()
        recorder.start_recording()

    def requests(self) -> list[AwsRequest]:
        """Recorded requests, oldest first (JSON-protocol bodies decoded)."""
        path = Path(os.environ["MOTO_RECORDER_FILEPATH"])
        out = []
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            raw = entry.get("body") or ""
            body: Any = base64.b64decode(raw) if entry.get("body_encoded") else raw.encode()
            target = headers.get("x-amz-target", "")
            if target:
                body = json.loads(body or b"{}")
            scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", headers.get("authorization", ""))
            out.append(
                AwsRequest(
                    target,
                    body,
                    entry["method"],
                    entry["url"],
                    headers.get("user-agent", ""),
                    scope.group(1) if scope else "",
                )
            )
        return out

    def calls(self, action: str) -> list[Any]:
        return [r.body for r in self.requests() if r.action == action]

    def async_polled_steps(self) -> set[str]:
        """Ids of the EMR steps a deferred trigger (aiobotocore) has asked about."""
        return {
            step_id
            for r in self.requests()
            if r.action in ("ElasticMapReduce.DescribeStep", "ElasticMapReduce.ListSteps")
            and "aiobotocore" in r.user_agent
            for step_id in [r.body.get("StepId"), *r.body.get("StepIds", [])]
            if step_id
        }

    def emr_backend(self) -> Any:
        return get_backend("emr")[DEFAULT_ACCOUNT_ID][REGION]


@dataclass
class EmrStepPlayer:
    """Plays EMR: completes each step `delay(name)` seconds after it appears; fails those `fail(name)` picks.

    A step `hold(name)` picks also waits until a trigger polled it: its sensor certainly deferred,
    however slow the machine (a delay alone races with the sensor's first poke).
    """

    aws: FakeAws
    fail: Callable[[str], bool] = lambda name: False
    delay: Callable[[str], float] = lambda name: 0.2
    hold: Callable[[str], bool] = lambda name: False
    finished: list[tuple[str, str]] = field(default_factory=list)  # (step name, final state), in order
    # Player loop round in which each step (by name) was first seen and in which it ended: a step
    # added only after another ended was first seen in a later round.
    seen_round: dict[str, int] = field(default_factory=dict)
    ended_round: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> EmrStepPlayer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        rounds = 0
        while not self._stop.wait(0.1):
            rounds += 1
            backend = self.aws.emr_backend()
            for cluster in list(backend.clusters.values()):
                for step in list(cluster.steps):  # submission order
                    if step.state not in ("PENDING", "RUNNING"):
                        continue
                    first_seen = self._seen.setdefault(step.id, time.monotonic())
                    self.seen_round.setdefault(step.name, rounds)
                    if time.monotonic() - first_seen < self.delay(step.name):
                        continue
                    if self.hold(step.name) and step.id not in self.aws.async_polled_steps():
                        continue
                    step.state = "FAILED" if self.fail(step.name) else "COMPLETED"
                    self.finished.append((step.name, step.state))
                    self.ended_round[step.name] = rounds
