"""Faults around EMR steps, injected in moto (in process): retried adds, failed steps, kills,
clusters that die under the run. The operators run directly with a minimal context.
"""

from __future__ import annotations

import asyncio
import gzip

import pytest
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from plugins.emr_naming import emr_step_name
from plugins.emr_step_logs import error_lines, stderr_uri
from plugins.emr_steps import (
    EmrIdempotentAddStepsOperator,
    EmrRunStepSensor,
    EmrStepCancelOnKillTrigger,
)
from tests.reliability.emr_faults import context, lose_cluster, run_cluster, set_step_state, step, step_states

RUN = "manual__2024-06-28T02:00:00+00:00"
NAME = emr_step_name("nightly_dag", RUN, "2024-06-28", "graph")
OTHER = emr_step_name("nightly_dag", RUN, "2024-06-28", "sales_rolling")


def add(cluster_id: str, *steps: dict) -> list[str]:
    op = EmrIdempotentAddStepsOperator(task_id="add_graph", job_flow_id=cluster_id, steps=list(steps))
    return op.execute(context(run_id=RUN))


def sensor(cluster_id: str, step_id: str) -> EmrRunStepSensor:
    return EmrRunStepSensor(
        task_id="wait_graph",
        job_flow_id=cluster_id,
        step_id=step_id,
        deferrable=True,
        step_log_wait_seconds=0,
    )


def test_an_empty_step_list_skips_the_add_task_without_asking_aws_anything(aws):
    """The plan gives a step nothing to add when no requested output needs it."""
    from airflow.sdk.exceptions import AirflowSkipException

    cluster = run_cluster(aws, run_id=RUN)
    before = len(aws.requests())
    op = EmrIdempotentAddStepsOperator(task_id="add_segments", job_flow_id=cluster, steps=[])
    with pytest.raises(AirflowSkipException, match="do not need this step"):
        op.execute(context(run_id=RUN))
    assert len(aws.requests()) == before
    assert aws.emr_backend().clusters[cluster].steps == []


# ---- a retried add-steps task adds no duplicate ------------------------------------------------
def test_the_providers_operator_adds_the_step_again_on_a_retry(aws):
    """The fault itself: without the idempotent operator a retry duplicates the step."""
    cluster = run_cluster(aws, run_id=RUN)
    for _ in range(2):
        EmrAddStepsOperator(task_id="add_graph", job_flow_id=cluster, steps=[step(NAME)]).execute(context())
    assert list(step_states(aws, cluster)) == [NAME]  # dict: one key per name ...
    assert len(aws.emr_backend().clusters[cluster].steps) == 2  # ... but two steps


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "COMPLETED"])
def test_a_retried_add_follows_the_step_already_there(aws, state):
    cluster = run_cluster(aws, run_id=RUN)
    first = add(cluster, step(NAME))
    set_step_state(aws, cluster, first[0], state)
    again = add(cluster, step(NAME))
    assert again == first
    assert len(aws.emr_backend().clusters[cluster].steps) == 1
    assert len(aws.calls("ElasticMapReduce.AddJobFlowSteps")) == 1


def test_a_failed_or_cancelled_step_of_the_same_name_is_added_anew(aws):
    cluster = run_cluster(aws, run_id=RUN)
    first = add(cluster, step(NAME))
    set_step_state(aws, cluster, first[0], "FAILED")
    again = add(cluster, step(NAME))
    assert again != first
    assert [(s.id, s.state) for s in aws.emr_backend().clusters[cluster].steps] == [
        (first[0], "FAILED"),
        (again[0], "PENDING"),
    ]


def test_no_step_is_added_once_another_step_of_the_run_failed(aws):
    cluster = run_cluster(aws, run_id=RUN)
    failed = add(cluster, step(OTHER))
    set_step_state(aws, cluster, failed[0], "FAILED")
    with pytest.raises(AirflowFailException, match=r"sales_rolling.*ended FAILED"):
        add(cluster, step(NAME))
    assert list(step_states(aws, cluster)) == [OTHER]


def test_killing_the_add_task_cancels_the_steps_it_added(aws):
    cluster = run_cluster(aws, run_id=RUN)
    op = EmrIdempotentAddStepsOperator(task_id="add_graph", job_flow_id=cluster, steps=[step(NAME)])
    op.execute(context(run_id=RUN))
    op.on_kill()
    assert step_states(aws, cluster) == {NAME: "CANCELLED"}


def test_no_step_is_added_to_a_cluster_that_died_and_the_error_gives_emrs_reason(aws):
    cluster = run_cluster(aws, run_id=RUN)
    lose_cluster(aws, cluster, "INSTANCE_FAILURE", "Spot capacity was reclaimed")
    with pytest.raises(AirflowFailException) as err:
        add(cluster, step(NAME))
    assert "TERMINATED_WITH_ERRORS: INSTANCE_FAILURE: Spot capacity was reclaimed" in str(err.value)
    assert step_states(aws, cluster) == {}


# ---- a step fails ------------------------------------------------------------------------------
STDERR = b"""\
26/06/28 02:10:01 INFO SparkContext: Running Spark version 3.5.6
26/06/28 02:10:02 INFO Client: Submitting application
Exception in thread "main" org.apache.spark.SparkException: Application application_1_0001 \
finished with failed status
\tat org.apache.spark.deploy.yarn.Client.run(Client.scala:1342)
26/06/28 02:10:09 INFO ShutdownHookManager: Shutdown hook called
"""


def test_a_failed_step_fails_the_sensor_with_its_stderr_location_and_first_error_lines(aws, capsys):
    cluster = run_cluster(aws, run_id=RUN)
    other_run = emr_step_name("nightly_dag", "manual__other", "2024-06-28", "stock_daily")
    failed, running, _foreign = add(cluster, step(NAME), step(OTHER), step(other_run))
    set_step_state(aws, cluster, failed, "FAILED")
    set_step_state(aws, cluster, running, "RUNNING")
    key = f"lake/_emr_logs/{cluster}/steps/{failed}/stderr.gz"
    aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=gzip.compress(STDERR))

    with pytest.raises(AirflowFailException) as err:
        sensor(cluster, failed).execute(context(run_id=RUN))
    message = str(err.value)
    assert "ended FAILED" in message
    assert f"s3://lake-bucket/{key}" in message
    assert 'Exception in thread "main" org.apache.spark.SparkException' in message
    assert "Running Spark version" not in message  # only from the first error line on
    task_log = capsys.readouterr().out  # Airflow's task logger writes here outside a task runner
    error = next(line for line in task_log.splitlines() if "[error" in line)
    assert "ended FAILED" in error
    assert f"s3://lake-bucket/{key}" in task_log
    # the run's other active step was cancelled; another run's step was left alone
    assert step_states(aws, cluster) == {NAME: "FAILED", OTHER: "CANCELLED", other_run: "PENDING"}


def test_a_failed_step_whose_log_is_not_uploaded_yet_still_names_where_it_will_be(aws):
    cluster = run_cluster(aws, run_id=RUN)
    (failed,) = add(cluster, step(NAME))
    set_step_state(aws, cluster, failed, "FAILED")
    with pytest.raises(AirflowFailException) as err:
        sensor(cluster, failed).execute(context(run_id=RUN))
    assert stderr_uri("s3n://lake-bucket/lake/_emr_logs/", cluster, failed) in str(err.value)
    assert "not readable yet" in str(err.value)


def test_a_step_cancelled_because_the_cluster_died_fails_with_emrs_reason(aws):
    cluster = run_cluster(aws, run_id=RUN)
    (running,) = add(cluster, step(NAME))
    lose_cluster(aws, cluster, "SPOT_INSTANCE_TERMINATION", "Spot capacity was reclaimed")
    with pytest.raises(AirflowFailException) as err:
        sensor(cluster, running).execute(context(run_id=RUN))
    assert "ended CANCELLED" in str(err.value)
    assert f"cluster {cluster} is TERMINATED_WITH_ERRORS: SPOT_INSTANCE_TERMINATION: Spot capacity" in str(
        err.value
    )


def test_a_trigger_error_while_the_step_still_runs_is_retryable_not_final(aws):
    cluster = run_cluster(aws, run_id=RUN)
    (running,) = add(cluster, step(NAME))
    with pytest.raises(AirflowException) as err:
        sensor(cluster, running).execute_complete(context(), {"status": "error", "message": "Throttling"})
    assert not isinstance(err.value, AirflowFailException)
    assert step_states(aws, cluster) == {NAME: "RUNNING"}


def test_a_step_failing_while_deferred_is_reported_from_execute_complete(aws):
    cluster = run_cluster(aws, run_id=RUN)
    (failed,) = add(cluster, step(NAME))
    set_step_state(aws, cluster, failed, "FAILED")
    with pytest.raises(AirflowFailException, match="ended FAILED"):
        sensor(cluster, failed).execute_complete(context(), {"status": "failure", "message": "waiter"})


# ---- a task is killed --------------------------------------------------------------------------
def test_killing_the_sensor_cancels_the_step(aws):
    cluster = run_cluster(aws, run_id=RUN)
    (running,) = add(cluster, step(NAME))
    sensor(cluster, running).on_kill()
    assert step_states(aws, cluster) == {NAME: "CANCELLED"}


def test_killing_the_deferred_sensor_cancels_the_step_from_the_trigger(aws):
    cluster = run_cluster(aws, run_id=RUN)
    (running,) = add(cluster, step(NAME))
    trigger = EmrStepCancelOnKillTrigger(
        job_flow_id=cluster, step_id=running, waiter_delay=1, waiter_max_attempts=1
    )
    # the triggerer rebuilds the trigger from its serialized form: ours, not the provider's
    classpath, kwargs = trigger.serialize()
    assert classpath == "plugins.emr_steps.EmrStepCancelOnKillTrigger"
    asyncio.run(EmrStepCancelOnKillTrigger(**kwargs).on_kill())
    assert step_states(aws, cluster) == {NAME: "CANCELLED"}


def test_error_lines_start_at_the_first_error_or_fall_back_to_the_tail():
    text = "a\nb\nTraceback (most recent call last):\n  x\nValueError: bad\nc\n"
    assert error_lines(text, limit=3) == ["Traceback (most recent call last):", "  x", "ValueError: bad"]
    assert error_lines("one\ntwo\nthree\n", limit=2) == ["two", "three"]


def test_a_running_step_defers_the_sensor_to_the_trigger_that_cancels_on_kill(aws):
    from airflow.sdk.exceptions import TaskDeferred

    cluster = run_cluster(aws, run_id=RUN)
    (running,) = add(cluster, step(NAME))
    with pytest.raises(TaskDeferred) as deferred:
        sensor(cluster, running).execute(context(run_id=RUN))
    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrStepCancelOnKillTrigger)

    async def first_event():
        return await anext(trigger.run())

    set_step_state(aws, cluster, running, "COMPLETED")
    event = asyncio.run(first_event())  # the trigger polls moto with aiobotocore
    assert event.payload["status"] == "success"
