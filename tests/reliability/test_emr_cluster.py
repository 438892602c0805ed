"""Faults around the run's cluster, injected in moto: creation that fails or is retried, a run that
ends (or is marked failed) with steps still running, a cluster that died with errors.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from botocore.exceptions import ClientError

from include.cluster_profiles import cluster_tags, job_flow_overrides
from include.settings import load_settings
from plugins.emr_cluster import EmrRunClusterOperator, EmrRunTeardownOperator
from plugins.emr_naming import PROJECT, emr_step_name
from plugins.emr_steps import EmrRunStepOperator
from tests.harness.settings import EMR_ENV
from tests.reliability.emr_faults import context, lose_cluster, run_cluster, step, step_states

DAG, RUN = "customer_analytics_nightly", "scheduled__2024-06-28T02:00:00+00:00"


def overrides(**changes) -> dict:
    settings = load_settings(EMR_ENV)
    tags = cluster_tags(dag_id=DAG, run_id=RUN, ds="2024-06-28", profile="dev")
    request = job_flow_overrides("dev", settings, name=f"{DAG}-2024-06-28", tags=tags)
    request.update(changes)
    return request


def create(request: dict) -> EmrRunClusterOperator:
    return EmrRunClusterOperator(
        task_id="create_cluster", job_flow_overrides=request, emr_conn_id=None, wait_for_completion=False
    )


def clusters(aws) -> dict[str, str]:
    return {c.id: c.state for c in aws.emr_backend().clusters.values()}


def test_a_retried_create_uses_the_cluster_its_first_try_started(aws):
    first = create(overrides()).execute(context(DAG, RUN))
    again = create(overrides()).execute(context(DAG, RUN))
    assert again == first
    assert len(aws.calls("ElasticMapReduce.RunJobFlow")) == 1
    # another run's cluster with the same name is not taken
    other = overrides(Tags=[{"Key": "project", "Value": PROJECT}, {"Key": "run_id", "Value": "x"}])
    assert create(other).execute(context(DAG, "x")) != first


def test_a_create_whose_response_was_lost_terminates_what_it_started_and_fails(aws):
    op = create(overrides())
    real = op.hook.create_job_flow

    def started_then_lost(request):
        real(request)
        raise ClientError({"Error": {"Code": "InternalFailure", "Message": "connection reset"}}, "RunJobFlow")

    op.hook.create_job_flow = started_then_lost
    with pytest.raises(AirflowException, match=r"EMR did not create the cluster: .*connection reset"):
        op.execute(context(DAG, RUN))
    assert list(clusters(aws).values()) == ["TERMINATED"]


def test_a_create_refused_by_emr_fails_with_emrs_reason(aws):
    request = overrides()
    request["Instances"]["InstanceGroups"][0]["InstanceCount"] = 2  # EMR: 1 or 3 masters
    with pytest.raises(AirflowException, match="Master instance group must have exactly 3 instances"):
        create(request).execute(context(DAG, RUN))


def teardown(job_flow_id: str | None) -> list[str]:
    op = EmrRunTeardownOperator(task_id="terminate_cluster", job_flow_id=job_flow_id)
    return op.execute(context(DAG, RUN))


def test_the_teardown_cancels_the_runs_steps_and_terminates_its_cluster(aws):
    cluster = run_cluster(aws, dag_id=DAG, run_id=RUN)
    names = [emr_step_name(DAG, RUN, "2024-06-28", s) for s in ("graph", "sales_rolling")]
    for name in names:
        run = EmrRunStepOperator(task_id="run", job_flow_id=cluster, steps=[step(name)])
        with pytest.raises(TaskDeferred):  # added, then waited for
            run.execute(context(DAG, RUN))
    other = run_cluster(aws, dag_id=DAG, run_id="manual__someone_else")
    done = teardown(cluster)
    assert step_states(aws, cluster) == dict.fromkeys(names, "CANCELLED")
    cancel = aws.calls("ElasticMapReduce.CancelSteps")
    assert len(cancel) == 1
    assert sorted(cancel[0]["StepIds"]) == sorted(s.id for s in aws.emr_backend().clusters[cluster].steps)
    assert clusters(aws) == {cluster: "TERMINATED", other: "WAITING"}
    assert done == [f"cluster {cluster}: cancelled 2 steps, terminating"]


def test_the_teardown_finds_the_runs_cluster_by_its_tags_when_create_left_no_id(aws):
    cluster = run_cluster(aws, dag_id=DAG, run_id=RUN)
    teardown(None)
    assert clusters(aws) == {cluster: "TERMINATED"}


def test_the_teardown_reports_emrs_reason_for_a_cluster_that_died(aws):
    cluster = run_cluster(aws, dag_id=DAG, run_id=RUN)
    lose_cluster(aws, cluster, "INSTANCE_FAILURE", "Spot capacity was reclaimed")
    done = teardown(cluster)
    assert done == [
        f"cluster {cluster} is TERMINATED_WITH_ERRORS: INSTANCE_FAILURE: Spot capacity was reclaimed"
    ]
    assert aws.calls("ElasticMapReduce.TerminateJobFlows") == []


def test_marking_the_run_failed_leaves_a_teardown_that_ends_the_cluster_and_kills_that_cancel():
    """Airflow's mark-failed kills running and deferred tasks (on_kill / trigger on_kill) and spares
    teardowns: every EMR task of the DAGs must therefore cancel on kill, and terminating be a teardown."""
    from airflow.sdk import BaseOperator
    from airflow.triggers.base import BaseTrigger

    from include.dag_factory import build_backfill_dag, build_nightly_dag
    from plugins.emr_step_batches import EmrStepBatchesOperator
    from plugins.emr_steps import EmrStepOnClusterTrigger, EmrStepsCancelOnKillTrigger

    settings = load_settings(EMR_ENV)
    for dag in (build_nightly_dag(settings), build_backfill_dag(settings)):
        teardown = dag.task_dict["terminate_cluster"]
        assert isinstance(teardown, EmrRunTeardownOperator)
        assert teardown.is_teardown
        assert {t.task_id for t in teardown.upstream_list} >= {"create_cluster"}
        emr_tasks = [t for t in dag.tasks if t.task_id.startswith("run_") and t.task_id != "run_report"]
        assert emr_tasks
        for task in emr_tasks:
            assert type(task).on_kill is not BaseOperator.on_kill, task.task_id
            assert isinstance(task, EmrRunStepOperator | EmrStepBatchesOperator)
    for trigger in (EmrStepOnClusterTrigger, EmrStepsCancelOnKillTrigger):
        assert trigger.on_kill is not BaseTrigger.on_kill
