"""EMR operators that survive faults: idempotent cluster and step creation, failures that explain
themselves, and kills that cancel what they started.

The provider's operators create a cluster and add a step again on every try, cancel nothing when
a task is killed, and report a failed step without its log. These subclasses keep the provider's
interfaces (XComs, deferral, links) and find a run's cluster by its tags and a run's step by its
name (`plugins/emr_naming.py`: dag, date, step and run in one string).
"""

from __future__ import annotations

import ast
import gzip
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger, EmrStepSensorTrigger
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from botocore.exceptions import BotoCoreError, ClientError

from plugins.emr_naming import run_of, run_tags

# Every AWS client of the DAGs: throttling (EMR's API limits are low and shared by every sensor
# of the account), 5xx and connection errors are retried with exponential backoff and jitter.
# "standard" rather than "adaptive": each task builds fresh clients, so adaptive's client-side
# rate learning would start from zero every time. Set on the operators, it wins over a
# connection's `config_kwargs` (botocore's precedence), so every deployment gets it.
AWS_RETRY_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 10}}

ACTIVE_STEP_STATES = ("PENDING", "CANCEL_PENDING", "RUNNING")
REUSABLE_STEP_STATES = frozenset({"PENDING", "RUNNING", "COMPLETED"})
FAILED_STEP_STATES = frozenset({"CANCELLED", "FAILED", "INTERRUPTED"})
ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
ENDED_CLUSTER_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})
STDERR_LINES = 20
STEP_LOG_LINES = 200  # lines of each of a step's stdout and stderr copied into the task log
STEP_LOG_WAIT_SECONDS = 120  # how long a task waits for EMR to upload a step's logs after it ended
STEP_LOG_FILES = ("stdout", "stderr")
_LOG_POLL_SECONDS = 10.0  # between two looks for a step's logs in S3
# what the log wait sleeps and reads the time with (tests replace them: no test waits for real)
_sleep = time.sleep
_clock = time.monotonic
_ERROR_LINE = re.compile(r"error|exception|traceback|caused by|failed", re.IGNORECASE)


# ---- what the operators share (plain boto3 clients, so they are tested without Airflow) -------
def list_steps(client: Any, cluster_id: str, states: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The cluster's steps (ListSteps summaries, newest first), optionally only those in `states`."""
    kwargs: dict[str, Any] = {"ClusterId": cluster_id}
    if states:
        kwargs["StepStates"] = list(states)
    return [s for page in client.get_paginator("list_steps").paginate(**kwargs) for s in page["Steps"]]


def cluster_end(cluster: Mapping[str, Any]) -> str | None:
    """'cluster j-.. is TERMINATED_WITH_ERRORS: CODE: message' for a cluster that ended or is ending."""
    status = cluster["Status"]
    if status["State"] not in ENDED_CLUSTER_STATES:
        return None
    reason = status.get("StateChangeReason") or {}
    why = ": ".join(str(v) for v in (reason.get("Code"), reason.get("Message")) if v)
    return f"cluster {cluster['Id']} is {status['State']}" + (f": {why}" if why else "")


def cancel_steps(client: Any, cluster_id: str, step_ids: Sequence[str], log: Any) -> list[str]:
    """Ask EMR to cancel `step_ids` (best effort: logged, never raised); returns the ids EMR accepted."""
    if not step_ids:
        return []
    try:
        response = client.cancel_steps(
            ClusterId=cluster_id, StepIds=list(step_ids), StepCancellationOption="SEND_INTERRUPT"
        )
    except (ClientError, BotoCoreError) as exc:
        log.warning("Could not cancel steps %s on %s: %s", list(step_ids), cluster_id, exc)
        return []
    accepted = []
    for info in response.get("CancelStepsInfoList", []):
        if info.get("Status") == "SUBMITTED":
            accepted.append(info["StepId"])
        else:
            log.warning("EMR refused to cancel step %s: %s", info.get("StepId"), info.get("Reason"))
    log.info("Cancelling steps %s on %s", accepted, cluster_id)
    return accepted


def cancel_run_steps(
    client: Any, cluster_id: str, run: tuple[str, str] | None, log: Any, keep: Iterable[str] = ()
) -> list[str]:
    """Cancel the run's steps still pending or running on the cluster (all of them when run is None)."""
    keep = set(keep)
    active = [
        s["Id"]
        for s in list_steps(client, cluster_id, ACTIVE_STEP_STATES)
        if s["Id"] not in keep
        and s["Status"]["State"] != "CANCEL_PENDING"
        and (run is None or run_of(s["Name"]) == run)
    ]
    return cancel_steps(client, cluster_id, active, log)


def tagged_clusters(
    client: Any,
    tags: Mapping[str, str],
    *,
    states: Sequence[str] = ACTIVE_CLUSTER_STATES,
    name: str | None = None,
) -> Iterator[dict[str, Any]]:
    """DescribeCluster of each cluster in `states` carrying all `tags` (ListClusters has no tags)."""
    for page in client.get_paginator("list_clusters").paginate(ClusterStates=list(states)):
        for summary in page["Clusters"]:
            if name is not None and summary["Name"] != name:
                continue
            cluster = client.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            have = {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}
            if all(have.get(k) == v for k, v in tags.items()):
                yield cluster


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

    def copy(self, cluster_id: str, step_ids: Sequence[str]) -> dict[str, str]:
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
        deadline = _clock() + self.wait_seconds
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
        """Call `done` every 10 s until it says True or the deadline passed; its last answer."""
        if done():
            return True
        if deadline - _clock() > 0:
            self.log.info("waiting up to %s s for EMR to upload %s", _seconds(deadline - _clock()), what)
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


def copy_step_logs(op: Any, cluster_id: str, step_ids: Sequence[str]) -> dict[str, str]:
    """`StepLogCopier` with an operator's clients, settings and log; a failure to copy is a warning:
    the logs are information, the steps' states decide the task. The step logs read, by URI."""
    try:
        s3 = S3Hook(aws_conn_id=op.aws_conn_id, region_name=op.region_name, config=op.botocore_config)
        copier = StepLogCopier(op.hook.conn, s3, op.log, op.step_log_lines, op.step_log_wait_seconds)
        return copier.copy(cluster_id, step_ids)
    except Exception as exc:  # never fail (or retry) a task over its logs
        op.log.warning("step logs not copied: %s: %s", type(exc).__name__, exc)
        return {}


def _seconds(value: float) -> str:
    return f"{value:g}"


def ran(step: Mapping[str, Any]) -> bool:
    """Whether an ended step ran (and so has logs): a step cancelled while pending never started."""
    status = step["Status"]
    return status["State"] != "CANCELLED" or bool((status.get("Timeline") or {}).get("StartDateTime"))


def add_steps_once(
    hook: EmrHook,
    job_flow_id: str,
    steps: Sequence[dict[str, Any]],
    log: Any,
    added: list[str],
    execution_role_arn: str | None = None,
) -> tuple[list[str], list[str]]:
    """Add the `steps` the cluster does not have yet; returns (step ids in order, their states).

    A step is known by its name (run + date + step): one PENDING, RUNNING or COMPLETED is
    followed instead of added again; a FAILED or CANCELLED one is added anew (the task was
    cleared to run it again). Refuses (AirflowFailException) while another step of the same run
    has failed or the cluster has ended. The ids added are appended to `added` as soon as EMR
    returns them, so a kill right after still knows what to cancel.
    """
    names = [s["Name"] for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names must be unique (they identify the steps): {names}")
    client = hook.conn
    ended = cluster_end(client.describe_cluster(ClusterId=job_flow_id)["Cluster"])
    if ended:
        raise AirflowFailException(f"not adding {names}: {ended}")

    on_cluster = list_steps(client, job_flow_id)  # newest first
    runs = {run_of(n) for n in names} - {None}
    broken = [
        s
        for s in on_cluster
        if s["Status"]["State"] in FAILED_STEP_STATES and s["Name"] not in names and run_of(s["Name"]) in runs
    ]
    if broken:
        raise AirflowFailException(
            f"not adding {names}: step {broken[0]['Name']} ({broken[0]['Id']}) of this run "
            f"ended {broken[0]['Status']['State']}"
        )
    found: dict[str, dict[str, Any]] = {}
    for s in on_cluster:
        if s["Name"] in names and s["Status"]["State"] in REUSABLE_STEP_STATES:
            found.setdefault(s["Name"], s)
    for name, s in found.items():
        log.info(
            "Step %s is already on %s as %s (%s): following it",
            name,
            job_flow_id,
            s["Id"],
            s["Status"]["State"],
        )
    to_add = [s for s in steps if s["Name"] not in found]
    if to_add:
        added.extend(
            hook.add_job_flow_steps(
                job_flow_id=job_flow_id, steps=to_add, execution_role_arn=execution_role_arn
            )
        )
    new = iter(added[-len(to_add) :] if to_add else [])
    ids, states = [], []
    for name in names:
        if name in found:
            ids.append(found[name]["Id"])
            states.append(found[name]["Status"]["State"])
        else:
            ids.append(next(new))
            states.append("PENDING")
    return ids, states


# ---- the cluster -----------------------------------------------------------------------------
class EmrRunClusterOperator(EmrCreateJobFlowOperator):
    """Create the run's cluster once; a retry takes the one its earlier try started.

    The run is read from the request's tags (project, dag_id, run_id). RunJobFlow has no client
    token, so a lost response or a retried request can start a cluster nobody knows of: when
    creation fails, every cluster tagged with the run is terminated (best effort) before failing.
    """

    def execute(self, context: Any) -> str | None:
        overrides = self.job_flow_overrides
        if isinstance(overrides, str):
            overrides = self.job_flow_overrides = ast.literal_eval(overrides)
        tags = {t["Key"]: t["Value"] for t in overrides.get("Tags", [])}
        mine = {k: tags[k] for k in ("project", "dag_id", "run_id") if k in tags}
        client = self.hook.conn
        if len(mine) == 3:
            for cluster in tagged_clusters(client, mine, name=overrides.get("Name")):
                self.log.info(
                    "Cluster %s of this run is already %s: using it",
                    cluster["Id"],
                    cluster["Status"]["State"],
                )
                return cluster["Id"]
        try:
            return super().execute(context)
        except Exception as exc:
            if len(mine) == 3:
                for cluster in tagged_clusters(client, mine):
                    self.log.warning("Terminating %s, started by the failed creation", cluster["Id"])
                    client.terminate_job_flows(JobFlowIds=[cluster["Id"]])
            raise AirflowException(f"EMR did not create the cluster: {exc}") from exc


class EmrRunTeardownOperator(AwsBaseOperator[EmrHook]):
    """Cancel the run's pending and running steps, then terminate its cluster(s); says why one ended.

    Runs as the DAG's teardown, whatever happened (also after the run was marked failed from the
    UI). Besides `job_flow_id` (None when creation failed) it terminates every active cluster
    tagged with this run, so a cluster started by a failed or retried creation goes too.

    :return: one line per cluster: what was done
    """

    aws_hook_class = EmrHook
    template_fields: Sequence[str] = aws_template_fields("job_flow_id")
    ui_color = "#f9c915"

    def __init__(self, *, job_flow_id: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_flow_id = job_flow_id

    def execute(self, context: Any) -> list[str]:
        client = self.hook.conn
        ids = [self.job_flow_id] if self.job_flow_id and self.job_flow_id != "None" else []
        tags = run_tags(context["dag"].dag_id, context["run_id"])
        ids += [c["Id"] for c in tagged_clusters(client, tags) if c["Id"] not in ids]
        if not ids:
            self.log.info("No cluster of this run to terminate")
        done = []
        for cluster_id in ids:
            cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
            ended = cluster_end(cluster)
            if ended:
                self.log.warning("%s", ended)
                done.append(ended)
                continue
            cancelled = cancel_run_steps(client, cluster_id, None, self.log)
            client.terminate_job_flows(JobFlowIds=[cluster_id])
            done.append(f"cluster {cluster_id}: cancelled {len(cancelled)} steps, terminating")
            self.log.info("%s", done[-1])
        return done


# ---- steps -----------------------------------------------------------------------------------
class EmrIdempotentAddStepsOperator(EmrAddStepsOperator):
    """Add steps unless the cluster already has them (`add_steps_once`): a retry adds no duplicate.

    Cancels the steps it added when the task is killed. Never waits: a sensor does
    (`EmrRunStepSensor`).
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("deferrable") or kwargs.get("wait_for_completion"):
            raise ValueError("EmrIdempotentAddStepsOperator never waits; use EmrRunStepSensor")
        super().__init__(**kwargs)
        self._added: tuple[str, list[str]] | None = None

    def execute(self, context: Any) -> list[str]:
        steps = ast.literal_eval(self.steps) if isinstance(self.steps, str) else list(self.steps or [])
        if not steps:
            # The plan gives a step nothing to add when no requested output needs it.
            raise AirflowSkipException("no step to add: the run's outputs do not need this step")
        job_flow_id = self.job_flow_id or self.hook.get_cluster_id_by_name(
            str(self.job_flow_name), self.cluster_states
        )
        if not job_flow_id:
            raise AirflowException(f"No cluster found for name: {self.job_flow_name}")
        if self.openlineage_inject_parent_job_info:
            steps = self._inject_openlineage_parent_job_information(steps, context)
        self._added = (job_flow_id, [])
        ids, _ = add_steps_once(
            self.hook,
            job_flow_id,
            steps,
            self.log,
            self._added[1],
            execution_role_arn=self.execution_role_arn,
        )
        return ids

    def on_kill(self) -> None:
        if self._added and self._added[1]:
            cancel_steps(self.hook.conn, self._added[0], self._added[1], self.log)


class EmrStepCancelOnKillTrigger(EmrStepSensorTrigger):
    """The provider's step trigger, plus: a user killing the deferred task cancels the step."""

    async def on_kill(self) -> None:
        async with await self.hook().get_async_conn() as client:
            step = (
                await client.describe_step(
                    ClusterId=self.waiter_args["ClusterId"], StepId=self.waiter_args["StepId"]
                )
            )["Step"]
            if step["Status"]["State"] in ("PENDING", "RUNNING"):
                await client.cancel_steps(
                    ClusterId=self.waiter_args["ClusterId"],
                    StepIds=[step["Id"]],
                    StepCancellationOption="SEND_INTERRUPT",
                )
                self.log.info("Cancelled step %s", step["Id"])


class EmrStepsCancelOnKillTrigger(EmrAddStepsTrigger):
    """The provider's steps trigger, plus: a user killing the deferred task cancels the steps."""

    async def on_kill(self) -> None:
        cluster_id, step_ids = self.waiter_args["ClusterId"], self.waiter_args["StepIds"]
        async with await self.hook().get_async_conn() as client:
            steps = (await client.list_steps(ClusterId=cluster_id, StepIds=step_ids))["Steps"]
            active = [s["Id"] for s in steps if s["Status"]["State"] in ("PENDING", "RUNNING")]
            if active:
                await client.cancel_steps(
                    ClusterId=cluster_id, StepIds=active, StepCancellationOption="SEND_INTERRUPT"
                )
                self.log.info("Cancelled steps %s", active)


class StepFailureReport:
    """Why a step ended badly, read from EMR and the step's log, and the run's other steps cancelled."""

    def __init__(self, emr: Any, s3: S3Hook, log: Any) -> None:
        self.emr, self.s3, self.log = emr, s3, log

    def fail(
        self, cluster_id: str, step: Mapping[str, Any], logs: Mapping[str, str] | None = None
    ) -> AirflowFailException:
        """Log everything known about the ended `step`, cancel its run's other steps, return the error.

        `logs`: step logs already read (by URI, from `StepLogCopier.copy`), not read again."""
        status = step["Status"]
        lines = [f"EMR step {step['Name']} ({step['Id']}) on cluster {cluster_id} ended {status['State']}"]
        details = status.get("FailureDetails") or {}
        reason = (
            details.get("Message")
            or details.get("Reason")
            or (status.get("StateChangeReason") or {}).get("Message")
        )
        if reason:
            lines.append(f"reason: {reason}")
        cluster = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        ended = cluster_end(cluster)
        if ended:
            lines.append(ended)
        uri = stderr_uri(cluster.get("LogUri"), cluster_id, step["Id"])
        if uri is None:
            lines.append("the cluster has no LogUri: no step logs in S3")
        else:
            lines.append(f"step stderr: {uri}")
            errors = None
            if status["State"] != "CANCELLED":
                known = (logs or {}).get(uri)
                errors = error_lines(known) if known is not None else read_error_lines(self.s3, uri)
            if errors:
                lines.append("first error lines of stderr:")
                lines.extend(f"    {line}" for line in errors)
            elif status["State"] != "CANCELLED":
                lines.append("(stderr not readable yet: EMR uploads step logs every few minutes)")
        if details.get("LogFile"):
            lines.append(f"EMR's failure log: {details['LogFile']}")
        cancelled = cancel_run_steps(self.emr, cluster_id, run_of(step["Name"]), self.log, keep=[step["Id"]])
        if cancelled:
            lines.append(f"cancelled the run's other active steps: {cancelled}")
        message = "\n".join(lines)
        self.log.error("%s", message)
        return AirflowFailException(message)


class EmrRunStepSensor(EmrStepSensor):
    """Wait for a step (deferring to a trigger that cancels it on kill); explain and contain a failure.

    When the step ends FAILED, CANCELLED or INTERRUPTED the task fails without retry (the step
    stays failed), logging the S3 URI of the step's stderr, its first error lines when readable,
    and EMR's reason when the cluster itself ended (spot capacity lost, bootstrap failure); the
    run's other pending and running steps are cancelled, so the teardown comes without waiting
    for them. Errors while waiting (throttling, network) fail the try and are retried.

    Once the step ended (completed or failed, deferred or poking), the last `step_log_lines` lines
    of its stdout and stderr and of its driver's are copied from the cluster's LogUri into this
    task's log, waiting at most `step_log_wait_seconds` for EMR to upload them (`StepLogCopier`).

    :param step_log_lines: lines of each log (step and driver stdout and stderr) to copy (0: none)
    :param step_log_wait_seconds: the longest wait for EMR to upload the step's logs
    """

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

    def execute(self, context: Any) -> None:
        if not self.deferrable:
            super().execute(context=context)
        elif not self.poke(context):
            self.defer(
                timeout=timedelta(seconds=self.max_attempts * self.poke_interval),
                trigger=EmrStepCancelOnKillTrigger(
                    job_flow_id=self.job_flow_id,
                    step_id=self.step_id,
                    waiter_delay=int(self.poke_interval),
                    waiter_max_attempts=self.max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )

    def poke(self, context: Any) -> bool:
        step = self.get_emr_response(context=context)["Step"]
        state = step["Status"]["State"]
        self.log.info("Step %s is %s", self.step_id, state)
        if state in self.target_states:
            self._copy_logs(step)
            return True
        if state in self.failed_states:
            raise self._report().fail(self.job_flow_id, step, self._copy_logs(step))
        return False

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if event and event.get("status") == "success":
            self.log.info("Step %s completed", self.step_id)
            self._copy_logs({"Id": self.step_id, "Status": {"State": "COMPLETED"}})
            return
        step = self.hook.conn.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id)["Step"]
        state = step["Status"]["State"]
        if state in self.failed_states:
            raise self._report().fail(self.job_flow_id, step, self._copy_logs(step))
        if state in self.target_states:
            self._copy_logs(step)
            return
        raise AirflowException(f"waiting for step {self.step_id} stopped while it is {state}: {event}")

    def on_kill(self) -> None:
        client = self.hook.conn
        state = client.describe_step(ClusterId=self.job_flow_id, StepId=self.step_id)["Step"]["Status"][
            "State"
        ]
        if state in ("PENDING", "RUNNING"):
            cancel_steps(client, self.job_flow_id, [self.step_id], self.log)

    def _s3(self) -> S3Hook:
        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, config=self.botocore_config)

    def _report(self) -> StepFailureReport:
        return StepFailureReport(self.hook.conn, self._s3(), self.log)

    def _copy_logs(self, step: Mapping[str, Any]) -> dict[str, str]:
        if self.step_log_lines > 0 and ran(step):
            return copy_step_logs(self, self.job_flow_id, [step["Id"]])
        return {}
