"""A step's logs on EMR: where the cluster's LogUri keeps them, how a task reads them, the copy
of their last lines into the task log once a step ended (`StepLogCopier`), and the task that
copies the run's completed steps' logs after the teardown (`EmrRunStepLogsOperator`).

EMR uploads step and container logs to S3 some minutes after they were written; every reader
here treats a log that is not there yet as not yet, never as an error.
"""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from botocore.exceptions import BotoCoreError, ClientError

from plugins.aws_trigger import s3_hook
from plugins.emr_client import ALL_CLUSTER_STATES, list_steps, tagged_clusters
from plugins.emr_naming import run_of, run_tags, safe_name

STDERR_LINES = 20
STEP_LOG_LINES = 200  # lines of each of a step's stdout and stderr copied into the task log
STEP_LOG_WAIT_SECONDS = 120  # how long a task waits for EMR to upload a step's logs after it ended
STEP_LOG_FILES = ("stdout", "stderr")
_LOG_POLL_SECONDS = 10.0  # between two looks for a step's logs in S3
# what the log wait sleeps and reads the time with (tests replace them: no test waits for real)
_sleep = time.sleep
_clock = time.monotonic
_ERROR_LINE = re.compile(r"error|exception|traceback|caused by|failed", re.IGNORECASE)


def step_log_uri(log_uri: str | None, cluster_id: str, step_id: str, name: str) -> str | None:
    """Where EMR puts a step's log `name` (stdout, stderr, controller, syslog):
    `<LogUri>/<cluster-id>/steps/<step-id>/<name>.gz`."""
    if not log_uri:
        return None
    return f"{_log_base(log_uri)}/{cluster_id}/steps/{step_id}/{name}.gz"


def _log_base(log_uri: str) -> str:
    """The cluster's LogUri as an s3:// prefix without a trailing slash (DescribeCluster may say s3n://)."""
    return re.sub(r"^s3[an]?://", "s3://", log_uri).rstrip("/")


def stderr_uri(log_uri: str | None, cluster_id: str, step_id: str) -> str | None:
    """Where EMR puts a step's stderr: `<LogUri>/<cluster-id>/steps/<step-id>/stderr.gz`."""
    return step_log_uri(log_uri, cluster_id, step_id, "stderr")


def error_lines(text: str, limit: int = STDERR_LINES) -> list[str]:
    """From the first line that looks like an error, `limit` lines; without one, the last `limit`."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if _ERROR_LINE.search(line)), None)
    return lines[first : first + limit] if first is not None else lines[-limit:]


def read_log(s3: S3Hook, uri: str) -> str | None:
    """A step log in S3 as text (gunzipped); None when it cannot be read (EMR uploads every ~5 min)."""
    bucket, key = S3Hook.parse_s3_url(uri)
    try:
        body = s3.get_key(key, bucket_name=bucket).get()["Body"].read()
    except (ClientError, BotoCoreError):
        return None
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            return None
    return body.decode("utf-8", errors="replace")


def read_error_lines(s3: S3Hook, uri: str, limit: int = STDERR_LINES) -> list[str] | None:
    """The first error lines of a step log in S3; None when it cannot be read (EMR uploads every ~5 min)."""
    text = read_log(s3, uri)
    return None if text is None else error_lines(text, limit)


def log_exists(s3: S3Hook, uri: str) -> bool:
    """Whether EMR uploaded the log object yet (an S3 error counts as not yet: the wait goes on)."""
    bucket, key = S3Hook.parse_s3_url(uri)
    try:
        return bool(s3.check_for_key(key, bucket_name=bucket))
    except (ClientError, BotoCoreError):
        return False


def tail_block(label: str, uri: str, text: str, limit: int) -> str:
    """`label` (uri), the last `limit` lines of `text`, each indented; says when lines were left out."""
    lines = text.splitlines()
    shown = lines[-limit:] if limit > 0 else []
    if len(shown) < len(lines):
        head = f"{label} ({uri}): last {len(shown)} of {len(lines)} lines"
    else:
        head = f"{label} ({uri}): {len(lines)} lines"
    return "\n".join([head, *(f"    {line}" for line in shown)])


class StepLogCopier:
    """Copy the last lines of ended steps' logs from the cluster's LogUri into a task log.

    Per step, its own stdout and stderr (`<LogUri>/<cluster>/steps/<step>/{stdout,stderr}.gz`:
    what spark-submit printed) and, the steps running `spark-submit --deploy-mode cluster`, its
    driver's: the stdout and stderr of the YARN application's first container (the application
    master, where the driver runs), `<LogUri>/<cluster>/containers/<application>/<container>/`,
    the application id read from the step's stderr. EMR uploads logs some time after the step
    ended (its log pushing is periodic), so the copier waits, at most `wait_seconds` for all the
    steps together (looking every 10 s), then logs one block per log, e.g. "step <id> driver
    stdout (s3://...): last N of M lines" and the lines. A log still missing after the wait is
    one line saying where it will be. Never fails the task: a log is information, the step's
    state decides. `lines=0` copies nothing (and waits for nothing). `copy` returns the step logs
    it read, by URI, for a failure report to use (`StepFailureReport.fail`).
    """

    def __init__(
        self, emr: Any, s3: S3Hook, log: Any, lines: int = STEP_LOG_LINES, wait_seconds: float = 0
    ) -> None:
        self.emr, self.s3, self.log = emr, s3, log
        self.lines, self.wait_seconds = lines, wait_seconds

    def copy(self, cluster_id: str, step_ids: Sequence[str], *, waited: bool = False) -> dict[str, str]:
        """`waited`: the caller already waited `wait_seconds` (deferred): look once, say so."""
        read: dict[str, str] = {}
        if self.lines <= 0 or not step_ids:
            return read
        try:
            log_uri = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"].get("LogUri")
        except (ClientError, BotoCoreError) as exc:
            self.log.warning("step logs not copied: DescribeCluster %s failed: %s", cluster_id, exc)
            return read
        if not log_uri:
            self.log.info("step logs not copied: cluster %s has no LogUri", cluster_id)
            return read
        deadline = _clock() + (0 if waited else self.wait_seconds)
        step_logs = {
            step_id: [(name, step_log_uri(log_uri, cluster_id, step_id, name)) for name in STEP_LOG_FILES]
            for step_id in step_ids
        }
        uris = [uri for logs in step_logs.values() for _, uri in logs]
        missing = set(uris)

        def uploaded() -> bool:
            missing.difference_update([u for u in missing if log_exists(self.s3, u)])
            return not missing

        self._wait(uploaded, deadline, f"{len(uris)} step logs")
        drivers: dict[str, str] = {}  # step id -> its YARN application
        for step_id, logs in step_logs.items():
            for name, uri in logs:
                text = None if uri in missing else read_log(self.s3, uri)
                self._block(f"step {step_id} {name}", uri, text)
                if text is not None:
                    read[uri] = text
                if name == "stderr" and text and (app := _APPLICATION.search(text)):
                    drivers[step_id] = app.group(0)
        for step_id, app in drivers.items():
            self._driver(log_uri, cluster_id, step_id, app, deadline)
        return read

    def _driver(self, log_uri: str, cluster_id: str, step_id: str, app: str, deadline: float) -> None:
        folder = f"{_log_base(log_uri)}/{cluster_id}/containers/{app}/"
        found: list[str] = []

        def uploaded() -> bool:
            container = driver_container(self.s3, folder)
            uris = [f"{folder}{container}/{name}.gz" for name in STEP_LOG_FILES] if container else []
            if uris and all(log_exists(self.s3, u) for u in uris):
                found[:] = uris
            return bool(found)

        self._wait(uploaded, deadline, f"the driver logs of {app}")
        if not found:
            waited = _seconds(self.wait_seconds)
            self.log.info(
                "step %s driver (%s): not in S3 after waiting %s s; EMR will upload its logs under %s",
                step_id,
                app,
                waited,
                folder,
            )
            return
        for name, uri in zip(STEP_LOG_FILES, found, strict=True):
            self._block(f"step {step_id} driver {name}", uri, read_log(self.s3, uri))

    def _block(self, label: str, uri: str, text: str | None) -> None:
        if text is None:
            waited = _seconds(self.wait_seconds)
            self.log.info("%s: not in S3 after waiting %s s; EMR will upload it to %s", label, waited, uri)
        else:
            self.log.info("%s", tail_block(label, uri, text, self.lines))

    def _wait(self, done: Any, deadline: float, what: str) -> bool:
        return wait_for_logs(done, deadline, self.log, f"EMR to upload {what}")


def wait_for_logs(done: Any, deadline: float, log: Any, what: str) -> bool:
    """Call `done` every 10 s until it says True or the deadline (on `_clock`) passed; its last
    answer. The EMR steps' and the EMR Serverless job runs' log copies both wait with it."""
    if done():
        return True
    if deadline - _clock() > 0:
        log.info("waiting up to %s s for %s", _seconds(deadline - _clock()), what)
    while (left := deadline - _clock()) > 0:
        _sleep(min(_LOG_POLL_SECONDS, left))
        if done():
            return True
    return False


# the application spark-submit started (its stderr says "Submitted application application_...")
_APPLICATION = re.compile(r"\bapplication_\d+_\d+\b")
# a YARN application master's container: container_[e<epoch>_]<cluster ts>_<app>_<attempt>_000001
_AM_CONTAINER = re.compile(r"^container_(?:e\d+_)?\d+_\d+_(\d+)_0*1$")


def driver_container(s3: S3Hook, folder: str) -> str | None:
    """The container of the application's driver (its last attempt's master) among the container
    folders under `folder` (`<LogUri>/<cluster>/containers/<application>/`); None when none is there."""
    bucket, prefix = S3Hook.parse_s3_url(folder)
    try:
        keys = s3.list_keys(bucket_name=bucket, prefix=prefix)
    except (ClientError, BotoCoreError):
        return None
    masters = {
        name: int(match.group(1))
        for name in {k[len(prefix) :].split("/", 1)[0] for k in keys}
        if (match := _AM_CONTAINER.match(name))
    }
    return max(masters, key=masters.__getitem__) if masters else None


def copy_step_logs(
    op: Any, cluster_id: str, step_ids: Sequence[str], *, waited: bool = False
) -> dict[str, str]:
    """`StepLogCopier` with an operator's clients, settings and log; a failure to copy is a warning:
    the logs are information, the steps' states decide the task. The step logs read, by URI.
    `waited`: the operator already waited for the upload (deferred), so the copier looks once."""
    try:
        s3 = s3_hook(op)
        copier = StepLogCopier(op.hook.conn, s3, op.log, op.step_log_lines, op.step_log_wait_seconds)
        return copier.copy(cluster_id, step_ids, waited=waited)
    except Exception as exc:  # never fail (or retry) a task over its logs
        op.log.warning("step logs not copied: %s: %s", type(exc).__name__, exc)
        return {}


def _seconds(value: float) -> str:
    return f"{value:g}"


def ran(step: Mapping[str, Any]) -> bool:
    """Whether an ended step ran (and so has logs): a step cancelled while pending never started."""
    status = step["Status"]
    return status["State"] != "CANCELLED" or bool((status.get("Timeline") or {}).get("StartDateTime"))


class EmrRunStepLogsOperator(AwsBaseOperator[EmrHook]):
    """The tails of the run's completed steps' logs, copied into this task's log after the teardown.

    Off the critical path: no step waits for EMR to upload its logs (it pushes them every few
    minutes, and the rest as the cluster terminates), and no cluster lives longer for them. Finds
    every cluster of the run by its tags (a repaired run has several), in the order they were
    created, and on each the run's COMPLETED steps by their names, oldest first; copies the last
    `step_log_lines` lines of each step's stdout and stderr and of its driver's (`StepLogCopier`).
    While some step's stdout or stderr is not in S3 yet it waits deferred (no worker slot held),
    looking every 30 s, at most `step_log_wait_seconds` in all; a log still missing then is one
    line saying where it will be. A step that ended badly had its logs copied into its own
    task's log already. Never fails the run over a log.

    :return: "<cluster id> <step name>" of each step whose logs it looked for
    """

    aws_hook_class = EmrHook
    ui_color = "#f9c915"
    look_again_seconds = 30

    def __init__(
        self,
        *,
        step_log_lines: int = STEP_LOG_LINES,
        step_log_wait_seconds: float = STEP_LOG_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_log_lines = step_log_lines
        self.step_log_wait_seconds = step_log_wait_seconds

    def execute(self, context: Any, deadline: float | None = None) -> list[str]:
        if self.step_log_lines <= 0:
            self.log.info("PIPELINE_EMR_STEP_LOG_LINES=0: no step logs copied")
            return []
        try:
            found = self._completed_steps(context)
        except (ClientError, BotoCoreError) as exc:  # a log is information: never fail the run over it
            self.log.warning("step logs not copied: the run's steps could not be listed: %s", exc)
            return []
        if not found:
            self.log.info("no completed step of this run on any of its clusters: no logs to copy")
            return []
        waited = deadline is not None
        if self.step_log_wait_seconds > 0:
            now = time.time()
            deadline = now + self.step_log_wait_seconds if deadline is None else deadline
            missing = self._missing(found)
            if missing and now < deadline:
                wait = min(self.look_again_seconds, deadline - now)
                self.log.info("%d step logs not in S3 yet: looking again in %.0f s (deferred)", missing, wait)
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=wait)),
                    method_name="look_again",
                    kwargs={"deadline": deadline},
                )
        looked = []
        for cluster, steps in found:
            self.log.info("cluster %s: the logs of %d completed steps", cluster["Id"], len(steps))
            copy_step_logs(self, cluster["Id"], [s["Id"] for s in steps], waited=waited)
            looked += [f"{cluster['Id']} {s['Name']}" for s in steps]
        return looked

    def look_again(self, context: Any, event: Any = None, deadline: float | None = None) -> list[str]:
        return self.execute(context, deadline=deadline)

    def _completed_steps(self, context: Any) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        run = (safe_name(dag_id), safe_name(run_id))
        client = self.hook.conn
        clusters = sorted(
            tagged_clusters(client, run_tags(dag_id, run_id), states=ALL_CLUSTER_STATES),
            key=lambda c: c["Status"]["Timeline"]["CreationDateTime"],
        )
        found = []
        for cluster in clusters:
            steps = [
                s
                for s in reversed(list_steps(client, cluster["Id"], ["COMPLETED"]))  # oldest first
                if run_of(s["Name"]) == run
            ]
            if steps:
                found.append((cluster, steps))
        return found

    def _missing(self, found: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
        """How many of the steps' stdout and stderr are not in S3 yet (no LogUri: none to wait for)."""
        s3 = s3_hook(self)
        uris = [
            step_log_uri(cluster.get("LogUri"), cluster["Id"], step["Id"], name)
            for cluster, steps in found
            for step in steps
            for name in STEP_LOG_FILES
        ]
        return sum(1 for uri in uris if uri is not None and not log_exists(s3, uri))
