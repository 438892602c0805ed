"""EMR steps' stdout and stderr tails are copied from the cluster's LogUri into a task log: a
failed step's into its own task's log, before the failure report; the completed steps' into the
`step_logs` task's after the teardown, so no step waits for EMR to upload them (moto; the test
writes the log objects EMR would).

No test waits for real: the copier's clock and sleep are replaced by a fake clock that a sleep
advances (and that can make EMR "upload" a log while the task waits).
"""

from __future__ import annotations

import gzip
import re
import time
from dataclasses import dataclass

import pytest
import structlog
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from plugins import emr_step_logs
from plugins.emr_naming import emr_step_name
from plugins.emr_step_batches import EmrStepBatchesOperator
from plugins.emr_step_logs import EmrRunStepLogsOperator, tail_block
from plugins.emr_steps import EmrRunStepOperator
from tests.reliability.emr_faults import context, run_cluster, set_step_state, step, step_states

RUN = "manual__2024-06-28T02:00:00+00:00"
NAME = emr_step_name("nightly_dag", RUN, "2024-06-28", "graph")
LOGS = "s3://lake-bucket/lake/_emr_logs"  # run_cluster's LogUri
STDOUT = [f"stdout line {i}" for i in range(1, 8)]  # 7 lines
STDERR = [f"26/06/28 02:10:{i:02d} INFO Client: Application report (state: RUNNING)" for i in range(5)]


class FakeTime:
    """The copier's clock and sleep: sleeping advances the clock; `on_sleep` runs at each sleep."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(emr_step_logs, "_clock", fake.clock)
    monkeypatch.setattr(emr_step_logs, "_sleep", fake.sleep)
    return fake


def put_log(aws, cluster: str, step_id: str, name: str, lines: list[str]) -> str:
    key = f"lake/_emr_logs/{cluster}/steps/{step_id}/{name}.gz"
    aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))
    return f"s3://lake-bucket/{key}"


def add(cluster: str, name: str) -> list[str]:
    """The step task's start: its step added to the cluster, the task deferred."""
    op = EmrRunStepOperator(task_id="run_graph", job_flow_id=cluster, steps=[step(name)])
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(run_id=RUN))
    return [deferred.value.trigger.step_id]


def step_task(cluster: str, step_id: str, lines: int = 3, wait: float = 0) -> StepTask:
    op = EmrRunStepOperator(
        task_id="run_graph",
        job_flow_id=cluster,
        steps=[step(NAME)],
        step_log_lines=lines,
        step_log_wait_seconds=wait,
    )
    return StepTask(op, cluster, step_id)


@dataclass
class StepTask:
    """The step task resumed by its trigger's event once the step ended."""

    op: EmrRunStepOperator
    cluster: str
    step_id: str

    def step_ended(self) -> str:
        event = {"status": "ended", "cluster_id": self.cluster, "step_id": self.step_id}
        return self.op.execute_complete(context(run_id=RUN), event)


def step_logs(lines: int = 3, wait: float = 0) -> list[str]:
    """The run's step_logs task, after the teardown."""
    op = EmrRunStepLogsOperator(task_id="step_logs", step_log_lines=lines, step_log_wait_seconds=wait)
    return op.execute(context(run_id=RUN))


@pytest.fixture
def task_log():
    """What the operators log, one string per record (their loggers are structlog's)."""
    with structlog.testing.capture_logs() as records:
        yield TaskLog(records)


class TaskLog:
    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def text(self) -> str:
        """Every record so far, forgotten once read."""
        text = "\n".join(r["event"] for r in self.records)
        self.records.clear()
        return text


def block(log: str, label: str) -> list[str]:
    """The block headed `label (...)`: its header, then its lines (indented by 4 in the log)."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{label} ("))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        body.append(line[4:])
    return [lines[start], *body]


# ---- the block itself --------------------------------------------------------------------------
def test_a_block_holds_exactly_the_last_lines_and_says_how_many_were_left_out():
    assert tail_block("step s-1 stdout", "s3://b/k", "a\nb\nc\nd\n", 2) == (
        "step s-1 stdout (s3://b/k): last 2 of 4 lines\n    c\n    d"
    )
    assert (
        tail_block("step s-1 stdout", "s3://b/k", "a\nb\n", 5)
        == "step s-1 stdout (s3://b/k): 2 lines\n    a\n    b"
    )
    assert tail_block("step s-1 stderr", "s3://b/k", "", 5) == "step s-1 stderr (s3://b/k): 0 lines"


# ---- the step task and the step_logs task ----------------------------------------------------
def test_a_completed_steps_stdout_and_stderr_tails_are_copied_into_the_task_log(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    out_uri = put_log(aws, cluster, step_id, "stdout", STDOUT)
    err_uri = put_log(aws, cluster, step_id, "stderr", STDERR)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    task_log.text()

    step_logs(lines=3)

    log = task_log.text()
    assert block(log, f"step {step_id} stdout") == [
        f"step {step_id} stdout ({out_uri}): last 3 of 7 lines",
        "stdout line 5",
        "stdout line 6",
        "stdout line 7",
    ]
    assert block(log, f"step {step_id} stderr") == [
        f"step {step_id} stderr ({err_uri}): last 3 of 5 lines",
        *STDERR[-3:],
    ]
    assert log.index(f"step {step_id} stdout (") < log.index(f"step {step_id} stderr (")
    assert fake_time.sleeps == []  # both were there: no wait


def test_a_log_shorter_than_the_limit_is_copied_whole(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    out_uri = put_log(aws, cluster, step_id, "stdout", STDOUT)
    put_log(aws, cluster, step_id, "stderr", STDERR)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    task_log.text()
    step_logs(lines=200)
    assert block(task_log.text(), f"step {step_id} stdout") == [
        f"step {step_id} stdout ({out_uri}): 7 lines",
        *STDOUT,
    ]


def test_a_failed_steps_tails_are_copied_and_then_the_failure_is_reported(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    put_log(aws, cluster, step_id, "stdout", STDOUT)
    stderr = [*STDERR, 'Exception in thread "main" org.apache.spark.SparkException: failed status']
    err_uri = put_log(aws, cluster, step_id, "stderr", stderr)
    set_step_state(aws, cluster, step_id, "FAILED")
    task_log.text()

    with pytest.raises(AirflowFailException, match="ended FAILED"):
        step_task(cluster, step_id, lines=2).step_ended()

    log = task_log.text()
    assert block(log, f"step {step_id} stdout")[1:] == ["stdout line 6", "stdout line 7"]
    assert block(log, f"step {step_id} stderr") == [
        f"step {step_id} stderr ({err_uri}): last 2 of 6 lines",
        STDERR[-1],
        stderr[-1],
    ]
    # the tails come first, the failure report (with its first error lines) after them
    assert log.index(f"step {step_id} stderr (") < log.index("ended FAILED")


def test_a_completed_step_ends_its_task_at_once_without_reading_or_waiting_for_its_logs(
    aws, task_log, fake_time
):
    """Logs off the critical path: the next step starts when this one ended, not when EMR has
    uploaded its logs; S3 is not even asked."""
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    aws.forget_requests()
    task_log.text()
    assert step_task(cluster, step_id, lines=3, wait=120).step_ended() == step_id
    assert fake_time.sleeps == []
    assert [r for r in aws.requests() if "_emr_logs" in r.url] == []
    assert "step_logs task" in task_log.text()


def test_step_logs_copies_every_completed_step_of_the_run_on_each_of_its_clusters_in_order(
    aws, task_log, fake_time
):
    """A repaired run has two clusters: the tails of both clusters' completed steps, the first
    cluster's first; a failed step (its logs are in its own task's log) and another run's step
    are left out."""
    first = run_cluster(aws, run_id=RUN, name="first")
    (done,) = add(first, NAME)
    put_log(aws, first, done, "stdout", ["first cluster"])
    put_log(aws, first, done, "stderr", [])
    set_step_state(aws, first, done, "COMPLETED")
    failed_name = emr_step_name("nightly_dag", RUN, "2024-06-28", "segments")
    (failed,) = add(first, failed_name)
    set_step_state(aws, first, failed, "FAILED")
    aws.client("emr").terminate_job_flows(JobFlowIds=[first])
    second = run_cluster(aws, run_id=RUN, name="second")
    (again,) = add(second, NAME)
    put_log(aws, second, again, "stdout", ["second cluster"])
    put_log(aws, second, again, "stderr", [])
    set_step_state(aws, second, again, "COMPLETED")
    foreign = run_cluster(aws, run_id="manual__other", name="other")
    task_log.text()

    assert step_logs(lines=1) == [f"{first} {NAME}", f"{second} {NAME}"]
    log = task_log.text()
    assert re.findall(r"step (s-\w+) (stdout|stderr) \(", log) == [
        (done, "stdout"),
        (done, "stderr"),
        (again, "stdout"),
        (again, "stderr"),
    ]
    assert block(log, f"step {done} stdout")[1:] == ["first cluster"]
    assert block(log, f"step {again} stdout")[1:] == ["second cluster"]
    assert foreign not in log


def test_step_logs_waits_deferred_for_logs_emr_has_not_uploaded_yet(aws, task_log, fake_time):
    """No worker slot held while EMR uploads: the task defers and looks again, until every
    step's stdout and stderr is there (or its wait is over)."""
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    op = EmrRunStepLogsOperator(task_id="step_logs", step_log_lines=2, step_log_wait_seconds=120)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(run_id=RUN))
    assert deferred.value.method_name == "look_again"
    deadline = deferred.value.kwargs["deadline"]
    assert before + 120 <= deadline <= time.time() + 120
    assert "2 step logs not in S3 yet: looking again in 30 s (deferred)" in task_log.text()
    put_log(aws, cluster, step_id, "stdout", STDOUT)  # EMR's log pushing: stdout first ...
    with pytest.raises(TaskDeferred):
        op.look_again(context(run_id=RUN), None, deadline=deadline)
    assert "1 step logs not in S3 yet" in task_log.text()
    put_log(aws, cluster, step_id, "stderr", STDERR)  # ... then stderr
    assert op.look_again(context(run_id=RUN), None, deadline=deadline) == [f"{cluster} {NAME}"]
    log = task_log.text()
    assert block(log, f"step {step_id} stdout")[1:] == ["stdout line 6", "stdout line 7"]
    assert block(log, f"step {step_id} stderr")[1:] == STDERR[-2:]
    assert "not in S3" not in log
    assert fake_time.sleeps == []  # never slept on a worker


def test_a_log_missing_after_the_wait_is_one_line_saying_where_it_will_be(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    out_uri = put_log(aws, cluster, step_id, "stdout", STDOUT)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    op = EmrRunStepLogsOperator(task_id="step_logs", step_log_lines=2, step_log_wait_seconds=25)
    task_log.text()
    op.look_again(context(run_id=RUN), None, deadline=time.time() - 1)  # its 25 s are over
    log = task_log.text()
    assert fake_time.sleeps == []
    err_uri = f"{LOGS}/{cluster}/steps/{step_id}/stderr.gz"
    missing = [line for line in log.splitlines() if "not in S3" in line]
    assert len(missing) == 1
    assert missing[0].endswith(
        f"step {step_id} stderr: not in S3 after waiting 25 s; EMR will upload it to {err_uri}"
    )
    assert block(log, f"step {step_id} stdout")[0] == f"step {step_id} stdout ({out_uri}): last 2 of 7 lines"


# ---- the driver (spark-submit --deploy-mode cluster: the YARN application master's container) -----
APP = "application_1719540000000_0001"
SUBMITTED = [
    f"26/06/28 02:10:02 INFO Client: Submitted application {APP}",
    f"26/06/28 02:10:09 INFO Client: Application report for {APP} (state: FINISHED)",
]


def put_container_log(aws, cluster: str, container: str, name: str, lines: list[str]) -> str:
    key = f"lake/_emr_logs/{cluster}/containers/{APP}/{container}/{name}.gz"
    aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))
    return f"s3://lake-bucket/{key}"


def test_the_drivers_stdout_and_stderr_come_from_the_last_attempts_application_master(
    aws, task_log, fake_time
):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    put_log(aws, cluster, step_id, "stdout", [])
    put_log(aws, cluster, step_id, "stderr", SUBMITTED)
    first_master = "container_1719540000000_0001_01_000001"
    put_container_log(aws, cluster, first_master, "stdout", ["attempt 1 driver"])
    put_container_log(aws, cluster, first_master, "stderr", ["attempt 1 driver"])
    put_container_log(aws, cluster, "container_1719540000000_0001_02_000002", "stdout", ["an executor"])
    master = "container_1719540000000_0001_02_000001"  # the second attempt's master: the driver that ended
    driver = [f"driver line {i}" for i in range(4)] + ['SPARK_JOBS_METRICS {"job": "graph"}']
    out_uri = put_container_log(aws, cluster, master, "stdout", driver)
    traceback = ["Traceback (most recent call last):", "boom"]
    err_uri = put_container_log(aws, cluster, master, "stderr", traceback)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    task_log.text()

    step_logs(lines=3)

    log = task_log.text()
    assert block(log, f"step {step_id} driver stdout") == [
        f"step {step_id} driver stdout ({out_uri}): last 3 of 5 lines",
        "driver line 2",
        "driver line 3",
        'SPARK_JOBS_METRICS {"job": "graph"}',
    ]
    assert block(log, f"step {step_id} driver stderr") == [
        f"step {step_id} driver stderr ({err_uri}): 2 lines",
        *traceback,
    ]
    assert "attempt 1" not in log
    assert "an executor" not in log
    # the step's own logs first, then its driver's
    assert log.index(f"step {step_id} stderr (") < log.index(f"step {step_id} driver stdout (")


def test_driver_logs_not_uploaded_after_the_wait_are_one_line_naming_their_folder(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    put_log(aws, cluster, step_id, "stdout", [])
    put_log(aws, cluster, step_id, "stderr", SUBMITTED)
    set_step_state(aws, cluster, step_id, "FAILED")
    task_log.text()
    with pytest.raises(AirflowFailException):
        step_task(cluster, step_id, wait=15).step_ended()
    log = task_log.text()
    assert fake_time.sleeps == [10, 5]  # the step logs were there; the driver's were waited for
    missing = [line for line in log.splitlines() if "not in S3" in line]
    assert missing == [
        f"step {step_id} driver ({APP}): not in S3 after waiting 15 s; EMR will upload its logs under "
        f"{LOGS}/{cluster}/containers/{APP}/"
    ]


def test_zero_lines_copies_nothing_and_asks_s3_nothing(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    put_log(aws, cluster, step_id, "stdout", STDOUT)
    set_step_state(aws, cluster, step_id, "COMPLETED")
    aws.forget_requests()
    task_log.text()
    step_logs(lines=0, wait=120)
    assert "stdout" not in task_log.text()
    assert [r for r in aws.requests() if "_emr_logs" in r.url] == []
    assert fake_time.sleeps == []


def test_a_step_cancelled_before_it_started_has_no_logs_to_wait_for(aws, task_log, fake_time):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    set_step_state(aws, cluster, step_id, "CANCELLED")  # moto: no StartDateTime, as a pending step
    task_log.text()
    with pytest.raises(AirflowFailException, match="ended CANCELLED"):
        step_task(cluster, step_id, wait=120).step_ended()
    assert fake_time.sleeps == []
    assert "not in S3" not in task_log.text()


# ---- the backfill's batches --------------------------------------------------------------------
BACKFILL = "customer_analytics_backfill"


def batch_name(ds: str, s: str) -> str:
    return emr_step_name(BACKFILL, RUN, ds, s)


def test_each_step_of_a_finished_batch_gets_its_tails_in_the_order_added(aws, task_log, fake_time):
    cluster = run_cluster(aws, dag_id=BACKFILL, run_id=RUN)
    batches = [[step(batch_name("a..b", "ingest_sales")), step(batch_name("a..b", "ingest_customers"))]]
    op = EmrStepBatchesOperator(
        task_id="run_steps", job_flow_id=cluster, batches=batches, step_log_lines=1, step_log_wait_seconds=0
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(run_id=RUN))
    first, second = deferred.value.trigger.waiter_args["StepIds"]
    for i, step_id in enumerate((first, second)):
        put_log(aws, cluster, step_id, "stdout", [f"{step_id} out {n}" for n in range(3)])
        put_log(aws, cluster, step_id, "stderr", [f"{step_id} err {n}" for n in range(i + 1)])
        set_step_state(aws, cluster, step_id, "COMPLETED")
    task_log.text()

    assert op.execute_complete(context(), {"status": "success"}, index=0, done=[first, second]) == [
        first,
        second,
    ]
    log = task_log.text()
    headers = re.findall(r"step (s-\w+) (stdout|stderr) \(", log)
    assert headers == [(first, "stdout"), (first, "stderr"), (second, "stdout"), (second, "stderr")]
    assert block(log, f"step {first} stdout")[1:] == [f"{first} out 2"]
    assert block(log, f"step {second} stderr")[1:] == [f"{second} err 1"]


def test_a_failed_batch_copies_the_tails_of_its_ended_steps_then_reports(aws, task_log, fake_time):
    cluster = run_cluster(aws, dag_id=BACKFILL, run_id=RUN)
    batches = [[step(batch_name("a..b", "ingest_sales")), step(batch_name("a..b", "ingest_customers"))]]
    op = EmrStepBatchesOperator(
        task_id="run_steps", job_flow_id=cluster, batches=batches, step_log_lines=5, step_log_wait_seconds=0
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(run_id=RUN))
    failed, running = deferred.value.trigger.waiter_args["StepIds"]
    put_log(aws, cluster, failed, "stdout", ["partial"])
    put_log(aws, cluster, failed, "stderr", ["Traceback (most recent call last):", "ValueError: bad"])
    set_step_state(aws, cluster, failed, "FAILED")
    set_step_state(aws, cluster, running, "RUNNING")
    task_log.text()

    event = {"status": "failure", "value": [failed, running]}
    with pytest.raises(AirflowFailException, match="ended FAILED"):
        op.execute_complete(context(), event, index=0, done=[])
    log = task_log.text()
    assert re.findall(r"step (s-\w+) (stdout|stderr) \(", log) == [(failed, "stdout"), (failed, "stderr")]
    assert block(log, f"step {failed} stderr")[1:] == [
        "Traceback (most recent call last):",
        "ValueError: bad",
    ]
    assert step_states(aws, cluster)[batch_name("a..b", "ingest_customers")] == "CANCELLED"


def test_a_failure_to_copy_the_logs_is_a_warning_not_a_failed_task(aws, task_log, fake_time, monkeypatch):
    cluster = run_cluster(aws, run_id=RUN)
    (step_id,) = add(cluster, NAME)
    put_log(aws, cluster, step_id, "stdout", STDOUT)
    put_log(aws, cluster, step_id, "stderr", STDERR)
    set_step_state(aws, cluster, step_id, "COMPLETED")

    def broken(s3, uri):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(emr_step_logs, "read_log", broken)
    task_log.text()
    step_logs()  # no exception
    assert task_log.records[-1] == {
        "event": "step logs not copied: RuntimeError: unexpected",
        "log_level": "warning",
    }
