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


def deferred_ids(op: EmrStepBatchesOperator) -> list[str]:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
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
