"""The backfill's batched steps under faults (moto): a retry resumes instead of adding every batch
again, a failed step is explained and its run's other steps cancelled, a kill cancels the batch.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from plugins.emr_naming import emr_step_name
from plugins.emr_step_batches import EmrStepBatchesOperator
from tests.reliability.emr_faults import context, run_cluster, set_step_state, step, step_states

RUN = "manual__backfill"


def name(ds: str, s: str) -> str:
    return emr_step_name("customer_analytics_backfill", RUN, ds, s)


BATCHES = [
    [step(name("a..b", "ingest_sales")), step(name("a..b", "ingest_customers"))],
    [step(name("a", "sales_rolling"))],
]


def run_steps(cluster: str) -> EmrStepBatchesOperator:
    return EmrStepBatchesOperator(
        task_id="run_steps", job_flow_id=cluster, batches=BATCHES, waiter_delay=1, step_log_wait_seconds=0
    )


def deferred_ids(op: EmrStepBatchesOperator, dag_id: str = "nightly_dag") -> list[str]:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(dag_id, RUN))
    return deferred.value.trigger.waiter_args["StepIds"]


def test_a_retried_backfill_resumes_where_it_stopped(aws):
    cluster = run_cluster(aws, dag_id="customer_analytics_backfill", run_id=RUN)
    first = deferred_ids(run_steps(cluster))
    assert deferred_ids(run_steps(cluster)) == first  # retry while batch 1 runs: follows it
    for step_id in first:
        set_step_state(aws, cluster, step_id, "COMPLETED")
    second = deferred_ids(run_steps(cluster))  # retry after batch 1 completed: straight to batch 2
    assert list(step_states(aws, cluster)) == [s["Name"] for batch in BATCHES for s in batch]
    assert len(aws.emr_backend().clusters[cluster].steps) == 3
    assert second not in (first,)
    assert len(aws.calls("ElasticMapReduce.AddJobFlowSteps")) == 2


def test_a_failed_batch_step_fails_with_its_stderr_and_cancels_the_rest(aws):
    cluster = run_cluster(aws, dag_id="customer_analytics_backfill", run_id=RUN)
    op = run_steps(cluster)
    failed, running = deferred_ids(op)
    set_step_state(aws, cluster, failed, "FAILED")
    set_step_state(aws, cluster, running, "RUNNING")
    event = {"status": "failure", "message": "steps failed", "value": [failed, running]}
    with pytest.raises(AirflowFailException) as err:
        op.execute_complete(context(), event, index=0, done=[])
    assert f"lake/_emr_logs/{cluster}/steps/{failed}/stderr.gz" in str(err.value)
    assert step_states(aws, cluster) == {
        name("a..b", "ingest_sales"): "FAILED",
        name("a..b", "ingest_customers"): "CANCELLED",
    }


def test_killing_the_backfill_cancels_the_batch_it_added(aws):
    cluster = run_cluster(aws, dag_id="customer_analytics_backfill", run_id=RUN)
    op = run_steps(cluster)
    deferred_ids(op)
    op.on_kill()
    assert set(step_states(aws, cluster).values()) == {"CANCELLED"}


def test_cleared_onto_a_new_cluster_it_runs_only_what_did_not_complete_on_the_earlier_one(aws):
    """A backfill failed in its second batch; `run_steps` cleared with its setup (the Clear
    dialog's defaults) runs on a new cluster: the steps that completed on the first cluster
    committed their dates to the run's branch and are not run again (known by their names on
    the run's clusters, found by tags); what failed or never started runs."""
    dag = "customer_analytics_backfill"
    batches = [
        [step(name("a..b", "ingest_sales")), step(name("a..b", "ingest_customers"))],
        [step(name("a", "sales_rolling")), step(name("b", "sales_rolling"))],
        [step(name("a..b", "audit"))],
    ]
    first = run_cluster(aws, dag_id=dag, run_id=RUN, name="first")
    op = EmrStepBatchesOperator(
        task_id="run_steps", job_flow_id=first, batches=batches, step_log_wait_seconds=0
    )
    for step_id in deferred_ids(op, dag):
        set_step_state(aws, first, step_id, "COMPLETED")
    a_day, b_day = deferred_ids(op, dag)  # a retry after the first batch: on to the second
    set_step_state(aws, first, a_day, "COMPLETED")
    set_step_state(aws, first, b_day, "FAILED")
    aws.client("emr").terminate_job_flows(JobFlowIds=[first])  # the teardown
    other_run = run_cluster(aws, dag_id=dag, run_id="manual__another_backfill", name="other")
    done_elsewhere = emr_step_name(dag, "manual__another_backfill", "b", "sales_rolling")
    with pytest.raises(TaskDeferred):  # another run's completed step does not count
        EmrStepBatchesOperator(
            task_id="run_steps",
            job_flow_id=other_run,
            batches=[[step(done_elsewhere)]],
            step_log_wait_seconds=0,
        ).execute(context(dag, "manual__another_backfill"))
    set_step_state(aws, other_run, aws.emr_backend().clusters[other_run].steps[0].id, "COMPLETED")

    second = run_cluster(aws, dag_id=dag, run_id=RUN, name="second")
    op = EmrStepBatchesOperator(
        task_id="run_steps", job_flow_id=second, batches=batches, step_log_wait_seconds=0
    )
    (b_again,) = deferred_ids(op, dag)
    assert list(step_states(aws, second)) == [name("b", "sales_rolling")]
    set_step_state(aws, second, b_again, "COMPLETED")
    (audit,) = deferred_ids(op, dag)  # a retry after that batch: on to the audit
    set_step_state(aws, second, audit, "COMPLETED")
    assert op.execute_complete(context(dag, RUN), {"status": "success"}, index=2, done=[b_again, audit]) == [
        b_again,
        audit,
    ]
    assert step_states(aws, second) == {
        name("b", "sales_rolling"): "COMPLETED",
        name("a..b", "audit"): "COMPLETED",
    }
