"""AWS for the DAG tests: moto in this process, what the DAG asked of it, and someone playing EMR.

moto never runs EMR steps, so `EmrStepPlayer` does: a thread that moves each submitted step to
COMPLETED (or FAILED, for the step names it is told to fail) a moment after it appears, in the
order they were submitted, by reaching into moto's EMR backend (same process as the server).
A step it is told to hold stays RUNNING until a deferred trigger (aiobotocore) has polled it.

Given `run`, the player runs each step's job command line for real (local Spark against moto's
S3 and Glue, see `StepRunner`) and the step ends as the job did. Without it, a completed step
leaves what a job that committed nothing leaves: its metrics record for the run.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import threading
import time
import traceback
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
        # what requests() parsed of the recorder's file so far (the player asks ten times a
        # second; a run uploads the 43 MB listener jar once): each record is parsed once
        self._lock = threading.Lock()
        self._offset = 0
        self._parsed: list[AwsRequest] = []

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
        self.forget_requests()

    def forget_requests(self) -> None:
        """Start the recorded requests afresh."""
        with self._lock:
            recorder.reset_recording()
            self._offset, self._parsed = 0, []
        recorder.start_recording()

    def requests(self) -> list[AwsRequest]:
        """Recorded requests, oldest first (JSON-protocol bodies decoded)."""
        path = Path(os.environ["MOTO_RECORDER_FILEPATH"])
        with self._lock:
            if path.exists():
                if path.stat().st_size < self._offset:  # the recording was started afresh
                    self._offset, self._parsed = 0, []
                with path.open("rb") as recorded:
                    recorded.seek(self._offset)
                    chunk = recorded.read()
                end = chunk.rfind(b"\n") + 1  # whole lines only: the last may be half written
                if end:
                    self._parsed += self._parse(chunk[:end].decode())
                    self._offset += end
            return list(self._parsed)

    @staticmethod
    def _parse(text: str) -> list[AwsRequest]:
        out = []
        for entry in _records(text):
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            raw = entry.get("body") or ""
            body: Any = base64.b64decode(raw) if entry.get("body_encoded") else raw.encode()
            if "gzip" in headers.get("content-encoding", ""):  # botocore compresses large PutMetricData
                body = gzip.decompress(body)
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

    def s3_backend(self) -> Any:
        return get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]


def _records(text: str) -> list[dict]:
    """The recorder's JSON records. It writes a record and its newline in two writes, so while
    one thread records a large body (the 43 MB listener jar) another's record can land between
    them: two records on one line, each whole."""
    decoder, records = json.JSONDecoder(), []
    for line in text.splitlines():
        at = 0
        while at < len(line):
            record, at = decoder.raw_decode(line, at)
            records.append(record)
            while at < len(line) and line[at].isspace():
                at += 1
    return records


class HarnessError(AssertionError):
    """A fake of AWS failed: the test's failure is the harness's own, not the code's under test."""


def _error(exc: BaseException) -> str:
    """An exception in one line, then its traceback, for a harness error's message."""
    return f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc)).rstrip()


def fails_once(step: str) -> Callable[[str], bool]:
    """An EmrStepPlayer's `fail`: the step's first attempt fails, every later attempt is played."""
    failed: list[str] = []

    def fail(name: str) -> bool:
        if f"|{step}|" in name and not failed:
            failed.append(name)
            return True
        return False

    return fail


@dataclass
class EmrStepPlayer:
    """Plays EMR: completes each step `delay(name)` seconds after it appears; fails those `fail(name)` picks.

    A step `hold(name)` picks also waits until a trigger polled it: its sensor certainly deferred,
    however slow the machine (a delay alone races with the sensor's first poke).
    """

    aws: FakeAws
    # the step's job command line and spark-submit --conf -> its exit code (a StepRunner)
    run: Callable[..., int] | None = None
    fail: Callable[[str], bool] = lambda name: False
    delay: Callable[[str], float] = lambda name: 0.2
    hold: Callable[[str], bool] = lambda name: False
    finished: list[tuple[str, str]] = field(default_factory=list)  # (step name, final state), in order
    # Player loop round in which each step (by name) was first seen and in which it ended: a step
    # added only after another ended was first seen in a later round.
    seen_round: dict[str, int] = field(default_factory=dict)
    ended_round: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # the player's own failures, per step

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> EmrStepPlayer:
        # The jobs' own parser and path rule, imported here in the test's thread: the player's
        # thread only reads moto's state and writes into it (no import, no HTTP, no boto3 session).
        from spark_jobs.cli import parse_args
        from spark_jobs.paths import metrics_uri

        self._parse_args, self._metrics_uri = parse_args, metrics_uri
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        """Stop playing; if the player itself failed, that is the test's failure, said first.

        A step the player could not play ends FAILED, so the DAG run fails too: without this the
        test would only see a failed task and never learn that the harness, not the DAG, broke."""
        self._stop.set()
        self._thread.join()
        if self.errors:
            raise HarnessError(
                "the EMR step player (tests/harness/aws_fakes.py) failed, so the run's failure is the "
                "harness's, not the DAG's:\n" + "\n".join(self.errors)
            ) from exc

    def _loop(self) -> None:
        try:
            self._rounds()
        except BaseException as exc:  # the DAG would wait on its steps for ever: say why at once
            self.errors.append(f"the player stopped: {_error(exc)}")
            raise

    def _rounds(self) -> None:
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
                    try:
                        step.state = "FAILED" if self.fail(step.name) else self._play(step)
                    except Exception as exc:  # a broken fake fails the step, not the whole test by a hang
                        self.errors.append(f"step {step.name}: {_error(exc)}")
                        step.state = "FAILED"
                    self.finished.append((step.name, step.state))
                    self.ended_round[step.name] = rounds

    def _play(self, step: Any) -> str:
        submit = spark_submit(step.args)
        args = submit.args
        if self.run is not None:
            step.state = "RUNNING"
            return "COMPLETED" if self.run(args, conf=submit.conf) == 0 else "FAILED"
        self._report(args)
        return "COMPLETED"

    def _report(self, args: list[str]) -> None:
        """The metrics record a job leaves (spark_jobs/cli.py), here of a job that committed nothing.

        Written straight into moto's S3 (this process's), as the player moves steps in moto's EMR:
        what the stand-in cluster does is no request of the DAG's, so it is neither recorded with
        the DAG's requests nor made through a boto3 session and the server from this thread."""
        parsed = self._parse_args(args)
        uri = self._metrics_uri(parsed.lake, parsed.job, parsed.ds, parsed.dataset)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        record = {"job": parsed.job, "ds": str(parsed.ds), "run_id": parsed.run_id}
        self.aws.s3_backend().put_object(bucket, key, json.dumps(record).encode())


@dataclass
class SparkSubmit:
    """A command-runner step's `spark-submit [options] ENTRYPOINT ARGS...`, taken apart."""

    py_files: str
    entrypoint: str
    args: list[str]
    jars: str | None = None
    conf: dict[str, str] = field(default_factory=dict)


def spark_submit(step_args: list[str]) -> SparkSubmit:
    """Options in any order (the provider's OpenLineage injection puts its --conf first)."""
    assert step_args[0] == "spark-submit", step_args[:1]
    rest, options, conf = list(step_args[1:]), {}, {}
    while rest and rest[0].startswith("--"):
        flag, value = rest.pop(0), rest.pop(0)
        if flag == "--conf":
            key, _, val = value.partition("=")
            conf[key] = val
        else:
            assert flag in ("--deploy-mode", "--py-files", "--jars"), flag
            options[flag[2:].replace("-", "_")] = value
    assert options.pop("deploy_mode") == "cluster"
    return SparkSubmit(entrypoint=rest[0], args=rest[1:], conf=conf, **options)


def job_args(step_args: list[str]) -> list[str]:
    """What follows the entrypoint in a command-runner spark-submit step: the job's command line."""
    return spark_submit(step_args).args


class StepRunner:
    """Runs EMR steps' job command lines as the cluster would, on moto's S3 and Glue.

    The code is what the steps name: the zip and entrypoint the DAG uploaded, fetched from S3 at
    the first step, on the path of one warm local Spark application (spark_jobs.server, started
    from the zip in an empty directory, s3:// through s3a and Iceberg's S3FileIO at moto).
    """

    def __init__(self, aws: FakeAws, workdir: Path) -> None:
        self.aws, self.workdir = aws, workdir
        self.socket = str(workdir / "spark.sock")
        self.output: dict[str, list[str]] = {}  # step's job + dates -> its output lines
        self.started = False

    def _start(self, py_files: str) -> None:
        bucket, _, key = py_files.removeprefix("s3://").partition("/")
        self.start_with(Path(key).name, self.aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def start_with(self, zip_name: str, zip_bytes: bytes) -> None:
        """Start the warm application on this code zip (from the test's thread: a player's thread
        must not read os.environ, which Airflow's task runner changes meanwhile)."""
        from spark_jobs import server

        code = self.workdir / "code"
        code.mkdir(exist_ok=True)
        zip_path = code / zip_name
        zip_path.write_bytes(zip_bytes)
        self.zip_bytes = zip_bytes
        empty = self.workdir / "empty"
        empty.mkdir(exist_ok=True)
        env = {
            "PYTHONPATH": str(zip_path),  # nothing of the project importable but the zip
            "SPARK_JOBS_JARS_DIR": str(Path(__file__).resolve().parents[2] / ".cache" / "jars"),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_MASTER": "local[2]",
            "SPARK_SHUFFLE_PARTITIONS": "4",
        }
        server.start(self.socket, s3=True, env=env, log=self.workdir / "spark.log", cwd=empty)
        self.started = True

    def __call__(self, args: list[str], py_files: str | None = None, conf: dict | None = None) -> int:
        """Run one step's job command line; `conf`: its spark-submit --conf (the lineage settings)."""
        from spark_jobs import server

        if not self.started:
            self._start(py_files or self._code_of_the_run())
        lines: list[str] = []
        lineage = {k: v for k, v in (conf or {}).items() if k.startswith("spark.openlineage.")}
        code = server.run_job(self.socket, args, lines.append, lineage)
        self.output[" ".join(args[:4])] = lines
        return code

    def _code_of_the_run(self) -> str:
        backend = self.aws.emr_backend()
        for cluster in backend.clusters.values():
            for step in cluster.steps:
                return spark_submit(step.args).py_files
        raise LookupError("no step on any cluster names the code")

    def stop(self) -> None:
        from spark_jobs import server

        if self.started:
            server.stop(self.socket)
