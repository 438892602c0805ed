"""EMR Serverless for the DAG tests: moto's emr-serverless backend, and someone playing its job runs.

moto creates applications STARTED and job runs SUCCESS at once, and never runs anything.
`JobRunPlayer` makes it behave as the service does for the DAG: an application is CREATED until
started, a job run is SUBMITTED until the player ends it SUCCESS (or FAILED, for the names it is
told to fail, with a driver stderr in the job run's S3 log URI as Serverless leaves one) a moment
after it appears, in the order they were started. It also lets moto take the emr-spark-8.x labels
(its label check predates that line) and list the job runs of an application that has none yet
(moto raises where the service answers an empty list).

Given `run` (a `tests.harness.aws_fakes.StepRunner`), the player runs each job run's entry point
arguments for real (local Spark against moto's S3 and Glue, the code from the job run's
`--py-files`) and the job run ends as the job did. Without it, a job run that succeeds leaves what
a job that committed nothing leaves: its metrics record for the run.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from tests.harness.aws_fakes import REGION, FakeAws, HarnessError, _error

ACTIVE = ("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING")
FAILED_DETAILS = "Job failed, please check complete logs in configured logging destination. ExitCode: 1."


def serverless_backend() -> Any:
    return get_backend("emr-serverless")[DEFAULT_ACCOUNT_ID][REGION]


@dataclass
class ServerlessRequest:
    action: str  # CreateApplication, StartJobRun, GetJobRun, ...
    application_id: str | None
    job_run_id: str | None
    body: Any
    user_agent: str


_ROUTES = [
    ("POST", r"/applications", "CreateApplication"),
    ("GET", r"/applications", "ListApplications"),
    ("GET", r"/applications/([^/]+)", "GetApplication"),
    ("DELETE", r"/applications/([^/]+)", "DeleteApplication"),
    ("POST", r"/applications/([^/]+)/start", "StartApplication"),
    ("POST", r"/applications/([^/]+)/stop", "StopApplication"),
    ("POST", r"/applications/([^/]+)/jobruns", "StartJobRun"),
    ("GET", r"/applications/([^/]+)/jobruns", "ListJobRuns"),
    ("GET", r"/applications/([^/]+)/jobruns/([^/]+)", "GetJobRun"),
    ("DELETE", r"/applications/([^/]+)/jobruns/([^/]+)", "CancelJobRun"),
]


def serverless_requests(aws: FakeAws) -> list[ServerlessRequest]:
    """The emr-serverless requests the code under test made, oldest first (REST: by method and path)."""
    out = []
    for r in aws.requests():
        if r.service != "emr-serverless":
            continue
        path = r.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        for method, pattern, action in _ROUTES:
            match = re.fullmatch(pattern, "/" + path)
            if r.method == method and match:
                ids = [*match.groups(), None, None]
                body = json.loads(r.body or b"{}") if r.body else {}
                out.append(ServerlessRequest(action, ids[0], ids[1], body, r.user_agent))
                break
    return out


def calls(aws: FakeAws, action: str) -> list[ServerlessRequest]:
    return [r for r in serverless_requests(aws) if r.action == action]


@dataclass
class JobRunPlayer:
    """Plays EMR Serverless: ends each job run `delay(name)` seconds after it appears; FAILED for
    those `fail(name)` picks. A job run `hold(name)` picks also waits until a deferred trigger
    (aiobotocore) has asked about it."""

    aws: FakeAws
    run: Callable[..., int] | None = None  # a StepRunner: (args, py_files=, conf=) -> exit code
    fail: Callable[[str], bool] = lambda name: False
    delay: Callable[[str], float] = lambda name: 0.2
    hold: Callable[[str], bool] = lambda name: False
    finished: list[tuple[str, str]] = field(default_factory=list)  # (job run name, final state)
    seen_round: dict[str, int] = field(default_factory=dict)
    ended_round: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._patches: list[Any] = []

    def __enter__(self) -> JobRunPlayer:
        from moto.emrserverless import models

        from spark_jobs.cli import parse_args
        from spark_jobs.paths import metrics_uri

        self._parse_args, self._metrics_uri = parse_args, metrics_uri
        create, list_runs = (
            models.EMRServerlessBackend.create_application,
            models.EMRServerlessBackend.list_job_runs,
        )

        def create_application(backend: Any, **kwargs: Any) -> Any:
            label = kwargs["release_label"]
            kwargs["release_label"] = "emr-7.0.0" if label.startswith("emr-spark-") else label
            application = create(backend, **kwargs)
            application.release_label = label
            return application

        def list_job_runs(backend: Any, application_id: str, *args: Any, **kwargs: Any) -> Any:
            backend.get_application(application_id)  # an unknown application still raises
            backend.job_runs.setdefault(application_id, [])
            return list_runs(backend, application_id, *args, **kwargs)

        self._patches = [
            mock.patch.object(models, "APPLICATION_STATUS", "CREATED"),
            mock.patch.object(models, "JOB_STATUS", "SUBMITTED"),
            mock.patch.object(models.EMRServerlessBackend, "create_application", create_application),
            mock.patch.object(models.EMRServerlessBackend, "list_job_runs", list_job_runs),
        ]
        for patch in self._patches:
            patch.start()
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._stop.set()
        self._thread.join()
        for patch in reversed(self._patches):
            patch.stop()
        if self.errors:
            raise HarnessError(
                "the EMR Serverless job run player (tests/harness/serverless_fakes.py) failed, so the "
                "run's failure is the harness's, not the DAG's:\n" + "\n".join(self.errors)
            ) from exc

    def async_polled(self) -> set[str]:
        """Ids of the job runs a deferred trigger (aiobotocore) has asked about."""
        return {
            r.job_run_id
            for r in serverless_requests(self.aws)
            if r.action == "GetJobRun" and "aiobotocore" in r.user_agent and r.job_run_id
        }

    def _loop(self) -> None:
        try:
            rounds = 0
            while not self._stop.wait(0.1):
                rounds += 1
                self._round(rounds)
        except BaseException as exc:
            self.errors.append(f"the player stopped: {_error(exc)}")
            raise

    def _round(self, rounds: int) -> None:
        backend = serverless_backend()
        for runs in list(backend.job_runs.values()):
            for job_run in list(runs):
                if job_run.state not in ACTIVE:
                    continue
                first = self._seen.setdefault(job_run.id, time.monotonic())
                self.seen_round.setdefault(job_run.name, rounds)
                if time.monotonic() - first < self.delay(job_run.name):
                    continue
                if self.hold(job_run.name) and job_run.id not in self.async_polled():
                    continue
                try:
                    if self.fail(job_run.name):
                        self._failed(job_run)
                    else:
                        job_run.state = self._play(job_run)
                        if job_run.state == "FAILED":
                            job_run.state_details = FAILED_DETAILS
                except Exception as exc:
                    self.errors.append(f"job run {job_run.name}: {_error(exc)}")
                    job_run.state = "FAILED"
                if job_run.state in ("SUCCESS", "FAILED"):  # a cancelled one was ended by the DAG
                    self.finished.append((job_run.name, job_run.state))
                    self.ended_round[job_run.name] = rounds

    def _play(self, job_run: Any) -> str:
        submit = job_run.job_driver["sparkSubmit"]
        args = list(submit["entryPointArguments"])
        params = shlex.split(submit.get("sparkSubmitParameters", ""))
        options = dict(zip(params[::2], params[1::2], strict=True))
        conf = dict(v.split("=", 1) for k, v in zip(params[::2], params[1::2], strict=True) if k == "--conf")
        if self.run is not None:
            job_run.state = "RUNNING"
            # the runner was started on the bundle (StepRunner.start_with, in the test's thread):
            # it runs the code the job run names only if that is what the DAG uploaded there
            bucket, _, key = options["--py-files"].removeprefix("s3://").partition("/")
            uploaded = self.aws.s3_backend().get_object(bucket, key).value
            if uploaded != getattr(self.run, "zip_bytes", uploaded):
                raise AssertionError(f"{options['--py-files']} is not the code the runner runs")
            code = self.run(args, py_files=options["--py-files"], conf=conf)
            if code != 0:
                self._driver_stderr(job_run, f"the job exited {code}\n")
            return "SUCCESS" if code == 0 else "FAILED"
        parsed = self._parse_args(args)
        uri = self._metrics_uri(parsed.lake, parsed.job, parsed.ds, parsed.dataset)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        record = {"job": parsed.job, "ds": str(parsed.ds), "run_id": parsed.run_id}
        self.aws.s3_backend().put_object(bucket, key, json.dumps(record).encode())
        return "SUCCESS"

    def _failed(self, job_run: Any) -> None:
        self._driver_stderr(
            job_run,
            "INFO SparkContext: Running Spark version 4.1.1-amzn-0\n"
            "Traceback (most recent call last):\n"
            f'  File "spark_jobs_main.py", line 9, in <module>\n'
            f"ValueError: the player failed {job_run.name}\n",
        )
        job_run.state, job_run.state_details = "FAILED", FAILED_DETAILS

    def _driver_stderr(self, job_run: Any, text: str) -> None:
        """What Serverless leaves in the job run's log URI: the driver's stderr, gzipped."""
        monitoring = (job_run.configuration_overrides or {}).get("monitoringConfiguration") or {}
        log_uri = (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")
        if not log_uri:
            return
        base = log_uri.rstrip("/").removeprefix("s3://")
        bucket, _, prefix = base.partition("/")
        key = f"{prefix}/applications/{job_run.application_id}/jobs/{job_run.id}/SPARK_DRIVER/stderr.gz"
        self.aws.s3_backend().put_object(bucket, key, gzip.compress(text.encode()))


def application_states() -> dict[str, str]:
    """Application id -> state, oldest first."""
    return {a.id: a.state for a in serverless_backend().applications.values()}


def job_run_states() -> list[tuple[str, str, str]]:
    """(application id, job run name, state) of every job run, in the order started."""
    return [(app, r.name, r.state) for app, runs in serverless_backend().job_runs.items() for r in runs]
