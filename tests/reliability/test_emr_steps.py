"""Faults around EMR steps, injected in moto (in process): retried and cleared step tasks, failed
steps, kills, clusters that die under the run. The operator and its trigger run directly with a
minimal context.
"""

from __future__ import annotations

import asyncio
import gzip

import pytest
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from plugins.emr_naming import emr_step_name
from plugins.emr_step_logs import error_lines, stderr_uri
from plugins.emr_steps import EmrRunStepOperator, EmrStepOnClusterTrigger
from tests.reliability.emr_faults import context, lose_cluster, run_cluster, set_step_state, step, step_states

RUN = "manual__2024-06-28T02:00:00+00:00"
NAME = emr_step_name("nightly_dag", RUN, "2024-06-28", "graph")
OTHER = emr_step_name("nightly_dag", RUN, "2024-06-28", "sales_rolling")


def operator(cluster_id: str, name: str = NAME, **kwargs) -> EmrRunStepOperator:
    return EmrRunStepOperator(
        task_id="run_graph",
        job_flow_id=cluster_id,
        steps=[step(name)],
        poll_seconds=1,
        max_polls=3,
        step_log_wait_seconds=0,
        **kwargs,
    )


def start(cluster_id: str, name: str = NAME) -> EmrStepOnClusterTrigger:
    """Run the step task until it defers; the trigger it defers on."""
    with pytest.raises(TaskDeferred) as deferred:
        operator(cluster_id, name).execute(context(run_id=RUN))
    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrStepOnClusterTrigger)
    return trigger


def first_event(trigger: EmrStepOnClusterTrigger) -> dict:
    """The trigger's first event, as the triggerer would get it (aiobotocore against moto)."""

    async def run():
        return await anext(trigger.run())

    return asyncio.run(run()).payload


def ended(cluster_id: str, step_id: str) -> dict:
    return {"status": "ended", "cluster_id": cluster_id, "step_id": step_id}


def test_an_empty_step_list_skips_the_task_without_asking_aws_anything(aws):
    """The plan gives a step nothing to run when no requested output needs it."""
    from airflow.sdk.exceptions import AirflowSkipException

    cluster = run_cluster(aws, run_id=RUN)
    before = len(aws.requests())
    op = EmrRunStepOperator(task_id="run_segments", job_flow_id=cluster, steps=[])
    with pytest.raises(AirflowSkipException, match="do not need this step"):
        op.execute(context(run_id=RUN))
    assert len(aws.requests()) == before
    assert aws.emr_backend().clusters[cluster].steps == []


# ---- a retried step task adds no duplicate ----------------------------------------------------
def test_the_providers_operator_adds_the_step_again_on_a_retry(aws):
    """The fault itself: without the idempotent add a retry duplicates the step."""
    cluster = run_cluster(aws, run_id=RUN)
    for _ in range(2):
        EmrAddStepsOperator(task_id="add_graph", job_flow_id=cluster, steps=[step(NAME)]).execute(context())
    assert list(step_states(aws, cluster)) == [NAME]  # dict: one key per name ...
    assert len(aws.emr_backend().clusters[cluster].steps) == 2  # ... but two steps


@pytest.mark.parametrize("state", ["PENDING", "RUNNING"])
def test_a_retry_follows_the_step_its_earlier_try_added(aws, state):
    cluster = run_cluster(aws, run_id=RUN)
    first = start(cluster)
    set_step_state(aws, cluster, first.step_id, state)
    again = start(cluster)
    assert (again.job_flow_id, again.step_id) == (cluster, first.step_id)
    assert len(aws.emr_backend().clusters[cluster].steps) == 1
    assert len(aws.calls("ElasticMapReduce.AddJobFlowSteps")) == 1


def test_a_retry_of_a_completed_step_succeeds_without_adding_or_waiting(aws):
    cluster = run_cluster(aws, run_id=RUN)
    first = start(cluster)
    set_step_state(aws, cluster, first.step_id, "COMPLETED")
    assert operator(cluster).execute(context(run_id=RUN)) == first.step_id  # no TaskDeferred
    assert len(aws.calls("ElasticMapReduce.AddJobFlowSteps")) == 1


def test_a_failed_or_cancelled_step_of_the_same_name_is_added_anew(aws):
    cluster = run_cluster(aws, run_id=RUN)
    first = start(cluster)
    set_step_state(aws, cluster, first.step_id, "FAILED")
    again = start(cluster)
    assert again.step_id != first.step_id
    assert [(s.id, s.state) for s in aws.emr_backend().clusters[cluster].steps] == [
        (first.step_id, "FAILED"),
        (again.step_id, "PENDING"),
    ]


def test_no_step_is_added_once_another_step_of_the_run_failed(aws):
    cluster = run_cluster(aws, run_id=RUN)
    failed = start(cluster, OTHER)
    set_step_state(aws, cluster, failed.step_id, "FAILED")
    with pytest.raises(AirflowFailException, match=r"sales_rolling.*ended FAILED"):
        operator(cluster).execute(context(run_id=RUN))
    assert list(step_states(aws, cluster)) == [OTHER]


# ---- a step task cleared with its setup: a new cluster -------------------------------------------
def test_a_task_cleared_onto_a_new_cluster_adds_its_step_there_and_polls_that_step(aws):
    """The Clear dialog's defaults bring create_cluster back: the task renders the new cluster
    from its XCom; the step that failed on the old cluster is neither looked for nor polled."""
    old = run_cluster(aws, run_id=RUN, name="first")
    failed = start(old)
    set_step_state(aws, old, failed.step_id, "FAILED")
    aws.client("emr").terminate_job_flows(JobFlowIds=[old])  # the teardown after the failed run
    new = run_cluster(aws, run_id=RUN, name="second")
    aws.forget_requests()

    trigger = start(new)
    assert trigger.job_flow_id == new
    assert trigger.step_id != failed.step_id
    assert list(step_states(aws, new)) == [NAME]
    set_step_state(aws, new, trigger.step_id, "COMPLETED")
    assert first_event(trigger) == {**ended(new, trigger.step_id), "state": "COMPLETED"}
    assert operator(new).execute_complete(context(), first_event(trigger)) == trigger.step_id
    asked = {
        (r.body.get("ClusterId"), r.body.get("StepId"))
        for r in aws.requests()
        if r.action.startswith("ElasticMapReduce.") and r.body.get("ClusterId")
    }
    assert {cluster for cluster, _ in asked} == {new}
    assert failed.step_id not in {step_id for _, step_id in asked}


def test_a_task_cleared_without_its_setup_fails_at_once_in_one_line_saying_what_to_do(aws):
    """Run -> Clear -> "Only failed tasks" leaves create_cluster alone: its XCom names the run's
    old cluster, terminated by the teardown. The task adds nothing, polls nothing, creates
    nothing: one line says the cluster is gone and how to repair."""
    old = run_cluster(aws, run_id=RUN)
    aws.client("emr").terminate_job_flows(JobFlowIds=[old])
    aws.forget_requests()
    with pytest.raises(AirflowFailException) as err:
        operator(old).execute(context(run_id=RUN))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"the run's cluster is gone (cluster {old} is TERMINATED")
    assert message.endswith(
        "): repair the run (its Repair run tab), or clear this task with its downstream tasks "
        "(the Clear dialog's defaults); either creates a new cluster and reruns only what failed"
    )
    actions = [r.action for r in aws.requests() if r.action.startswith("ElasticMapReduce.")]
    assert actions == ["ElasticMapReduce.DescribeCluster"]


def test_no_step_is_added_to_a_cluster_that_died_and_the_error_gives_emrs_reason(aws):
    cluster = run_cluster(aws, run_id=RUN)
    lose_cluster(aws, cluster, "INSTANCE_FAILURE", "Spot capacity was reclaimed")
    with pytest.raises(AirflowFailException) as err:
        operator(cluster).execute(context(run_id=RUN))
    assert "TERMINATED_WITH_ERRORS: INSTANCE_FAILURE: Spot capacity was reclaimed" in str(err.value)
    assert step_states(aws, cluster) == {}


# ---- the cluster ends under a waiting step -----------------------------------------------------
def test_a_cluster_lost_while_its_step_runs_ends_the_wait_at_the_next_poll_with_emrs_reason(aws):
    """EMR marks the steps of a lost cluster only later (moto never): the trigger asks
    DescribeCluster at each poll, so the task fails within one poll, not at its timeout."""
    cluster = run_cluster(aws, run_id=RUN)
    trigger = start(cluster)
    set_step_state(aws, cluster, trigger.step_id, "RUNNING")
    lose_cluster(aws, cluster, "INSTANCE_FAILURE", "Spot capacity was reclaimed", cancel_steps=False)
    event = first_event(trigger)
    assert event["status"] == "cluster_ended"
    assert step_states(aws, cluster) == {NAME: "RUNNING"}
    with pytest.raises(AirflowFailException) as err:
        operator(cluster).execute_complete(context(), event)
    assert str(err.value) == (
        f"step {trigger.step_id} was RUNNING when its cluster ended: cluster {cluster} is "
        "TERMINATED_WITH_ERRORS: INSTANCE_FAILURE: Spot capacity was reclaimed"
    )


def test_each_poll_asks_for_the_step_and_its_cluster_until_the_polls_run_out(aws):
    cluster = run_cluster(aws, run_id=RUN)
    trigger = start(cluster)
    set_step_state(aws, cluster, trigger.step_id, "RUNNING")
    aws.forget_requests()
    kwargs = {**trigger.serialize()[1], "waiter_delay": 0, "waiter_max_attempts": 2}
    event = first_event(EmrStepOnClusterTrigger(**kwargs))
    assert event == {
        "status": "timeout",
        "cluster_id": cluster,
        "step_id": trigger.step_id,
        "message": "still RUNNING after 2 polls",
    }
    polls = [
        (r.action.removeprefix("ElasticMapReduce."), r.body.get("ClusterId"), r.body.get("StepId"))
        for r in aws.requests()
        if "aiobotocore" in r.user_agent
    ]
    assert polls == [("DescribeStep", cluster, trigger.step_id), ("DescribeCluster", cluster, None)] * 2


# ---- a step fails ------------------------------------------------------------------------------
STDERR = b"""\
26/06/28 02:10:01 INFO SparkContext: Running Spark version 3.5.6
26/06/28 02:10:02 INFO Client: Submitting application
Exception in thread "main" org.apache.spark.SparkException: Application application_1_0001 \
finished with failed status
\tat org.apache.spark.deploy.yarn.Client.run(Client.scala:1342)
26/06/28 02:10:09 INFO ShutdownHookManager: Shutdown hook called
"""


def test_a_failed_step_fails_the_task_with_its_stderr_location_and_first_error_lines(aws, capsys):
    cluster = run_cluster(aws, run_id=RUN)
    other_run = emr_step_name("nightly_dag", "manual__other", "2024-06-28", "stock_daily")
    running = start(cluster, OTHER).step_id
    foreign = start(cluster, other_run).step_id
    failed = start(cluster).step_id
    set_step_state(aws, cluster, failed, "FAILED")
    set_step_state(aws, cluster, running, "RUNNING")
    key = f"lake/_emr_logs/{cluster}/steps/{failed}/stderr.gz"
    aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=gzip.compress(STDERR))

    with pytest.raises(AirflowFailException) as err:
        operator(cluster).execute_complete(context(run_id=RUN), ended(cluster, failed))
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
    assert step_states(aws, cluster) == {OTHER: "CANCELLED", other_run: "PENDING", NAME: "FAILED"}
    assert foreign


def test_a_failed_step_whose_log_is_not_uploaded_yet_still_names_where_it_will_be(aws):
    cluster = run_cluster(aws, run_id=RUN)
    failed = start(cluster).step_id
    set_step_state(aws, cluster, failed, "FAILED")
    with pytest.raises(AirflowFailException) as err:
        operator(cluster).execute_complete(context(run_id=RUN), ended(cluster, failed))
    assert stderr_uri("s3n://lake-bucket/lake/_emr_logs/", cluster, failed) in str(err.value)
    assert "not readable yet" in str(err.value)


def test_a_step_cancelled_because_the_cluster_died_fails_with_emrs_reason(aws):
    cluster = run_cluster(aws, run_id=RUN)
    trigger = start(cluster)
    lose_cluster(aws, cluster, "SPOT_INSTANCE_TERMINATION", "Spot capacity was reclaimed")
    event = first_event(trigger)  # the step ended (CANCELLED) before the cluster is asked
    assert event == {**ended(cluster, trigger.step_id), "state": "CANCELLED"}
    with pytest.raises(AirflowFailException) as err:
        operator(cluster).execute_complete(context(run_id=RUN), event)
    assert "ended CANCELLED" in str(err.value)
    assert f"cluster {cluster} is TERMINATED_WITH_ERRORS: SPOT_INSTANCE_TERMINATION: Spot capacity" in str(
        err.value
    )


def test_a_trigger_error_while_the_step_still_runs_is_retryable_not_final(aws):
    cluster = run_cluster(aws, run_id=RUN)
    running = start(cluster).step_id
    event = {"status": "error", "cluster_id": cluster, "step_id": running, "message": "Throttling"}
    with pytest.raises(AirflowException) as err:
        operator(cluster).execute_complete(context(), event)
    assert not isinstance(err.value, AirflowFailException)
    assert list(step_states(aws, cluster)) == [NAME]  # still there, not cancelled


def test_a_step_still_running_after_the_last_poll_is_cancelled_as_stuck(aws):
    cluster = run_cluster(aws, run_id=RUN)
    running = start(cluster).step_id
    set_step_state(aws, cluster, running, "RUNNING")
    event = {"status": "timeout", "cluster_id": cluster, "step_id": running, "message": "still RUNNING"}
    with pytest.raises(AirflowFailException, match="stuck"):
        operator(cluster).execute_complete(context(), event)
    assert step_states(aws, cluster) == {NAME: "CANCELLED"}


# ---- a task is killed --------------------------------------------------------------------------
def test_killing_the_task_before_it_deferred_cancels_the_step_it_added(aws):
    cluster = run_cluster(aws, run_id=RUN)
    op = operator(cluster)
    with pytest.raises(TaskDeferred):
        op.execute(context(run_id=RUN))
    op.on_kill()
    assert step_states(aws, cluster) == {NAME: "CANCELLED"}


def test_killing_the_deferred_task_cancels_the_step_from_the_trigger(aws):
    cluster = run_cluster(aws, run_id=RUN)
    trigger = start(cluster)
    # the triggerer rebuilds the trigger from its serialized form: ours, with the cluster and step
    classpath, kwargs = trigger.serialize()
    assert classpath == "plugins.emr_steps.EmrStepOnClusterTrigger"
    assert (kwargs["job_flow_id"], kwargs["step_id"]) == (cluster, trigger.step_id)
    asyncio.run(EmrStepOnClusterTrigger(**kwargs).on_kill())
    assert step_states(aws, cluster) == {NAME: "CANCELLED"}


def test_error_lines_start_at_the_first_error_or_fall_back_to_the_tail():
    text = "a\nb\nTraceback (most recent call last):\n  x\nValueError: bad\nc\n"
    assert error_lines(text, limit=3) == ["Traceback (most recent call last):", "  x", "ValueError: bad"]
    assert error_lines("one\ntwo\nthree\n", limit=2) == ["two", "three"]


def test_a_completed_step_ends_the_trigger_and_the_task_returns_its_id(aws):
    cluster = run_cluster(aws, run_id=RUN)
    trigger = start(cluster)
    set_step_state(aws, cluster, trigger.step_id, "COMPLETED")
    event = first_event(trigger)  # the trigger polls moto with aiobotocore
    assert event == {**ended(cluster, trigger.step_id), "state": "COMPLETED"}
    assert operator(cluster).execute_complete(context(), event) == trigger.step_id
