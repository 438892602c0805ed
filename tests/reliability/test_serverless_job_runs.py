"""The EMR Serverless operators' faults, one task at a time against moto (plugins/emr_serverless.py):
a retried step task follows its job run instead of starting a second, a retried create takes the
run's application, a failed job run cancels the run's others and says why, a kill cancels, and the
teardown deletes every application of the run whatever state it is in."""

from __future__ import annotations

import asyncio

import pytest
from airflow.providers.amazon.aws.triggers.emr import EmrServerlessStartJobTrigger
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from plugins.emr_naming import emr_step_name, serverless_application_name
from plugins.emr_serverless import (
    ServerlessApplicationOperator,
    ServerlessJobRunOperator,
    ServerlessTeardownOperator,
)
from plugins.emr_serverless_batches import JobRunsTrigger
from tests.harness.serverless_fakes import JobRunPlayer, calls, serverless_backend

DAG_ID, RUN_ID = "customer_analytics_nightly", "manual__2024-07-01T00:00:00+00:00"
ROLE = "arn:aws:iam::123456789012:role/analytics-jobs"
LOGS = "s3://lake-bucket/lake/_emr_logs/"


class _Dag:
    dag_id = DAG_ID


CONTEXT = {"dag": _Dag(), "run_id": RUN_ID}


@pytest.fixture
def played(aws):
    """moto playing Serverless, with no job run ending by itself (each test ends them)."""
    with JobRunPlayer(aws, delay=lambda name: 3600.0) as player:
        yield player


def _application(aws, name: str | None = None) -> str:
    client = aws.client("emr-serverless")
    name = name or serverless_application_name(DAG_ID, RUN_ID)
    return client.create_application(name=name, releaseLabel="emr-spark-8.1.0", type="SPARK")["applicationId"]


def _start(aws, app: str, step: str, run_id: str = RUN_ID) -> str:
    return aws.client("emr-serverless").start_job_run(
        applicationId=app,
        executionRoleArn=ROLE,
        name=emr_step_name(DAG_ID, run_id, "2024-07-01", step),
        jobDriver={"sparkSubmit": {"entryPoint": "s3://lake-bucket/code/main.py"}},
        configurationOverrides={"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": LOGS}}},
    )["jobRunId"]


def _operator(app: str, step: str) -> ServerlessJobRunOperator:
    return ServerlessJobRunOperator(
        task_id=f"run_{step}",
        application_id=app,
        execution_role_arn=ROLE,
        name=emr_step_name(DAG_ID, RUN_ID, "2024-07-01", step),
        job_driver={"sparkSubmit": {"entryPoint": "s3://lake-bucket/code/main.py"}},
        configuration_overrides={"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": LOGS}}},
        waiter_delay=1,
        waiter_max_attempts=5,
        step_log_wait_seconds=0,
    )


def _state(job_run_id: str) -> str:
    return next(
        r.state for runs in serverless_backend().job_runs.values() for r in runs if r.id == job_run_id
    )


def test_a_retried_step_task_follows_its_running_job_run_and_starts_none(aws, played):
    app = _application(aws)
    running = _start(aws, app, "segments")
    other_run = _start(aws, app, "segments", run_id="manual__2024-07-02T00:00:00+00:00")
    with pytest.raises(TaskDeferred) as deferred:
        _operator(app, "segments").execute(CONTEXT)
    trigger = deferred.value.trigger
    # the provider's trigger (its cancel on kill), on the job run the earlier try started
    assert isinstance(trigger, EmrServerlessStartJobTrigger)
    assert (trigger.job_id, trigger.cancel_on_kill) == (running, True)
    assert len(calls(aws, "StartJobRun")) == 2  # the two above, none by the task
    assert other_run != running


def test_a_retried_step_task_whose_job_run_succeeded_ends_with_it(aws, played):
    app = _application(aws)
    done = _start(aws, app, "graph")
    serverless_backend().get_job_run(app, done).state = "SUCCESS"
    assert _operator(app, "graph").execute(CONTEXT) == done
    assert len(calls(aws, "StartJobRun")) == 1


def test_a_failed_job_run_fails_its_task_with_why_and_cancels_the_runs_other_job_runs(aws, played):
    app = _application(aws)
    failing, sibling = _start(aws, app, "ingest_sales"), _start(aws, app, "ingest_customers")
    foreign = _start(aws, app, "ingest_customers", run_id="manual__2024-07-02T00:00:00+00:00")
    job_run = serverless_backend().get_job_run(app, failing)
    played._failed(job_run)  # FAILED, with the driver's stderr in the log URI as Serverless leaves it
    with pytest.raises(AirflowFailException) as failure:
        _operator(app, "ingest_sales").execute_complete(CONTEXT, {"status": "failure", "message": "failed"})
    message = str(failure.value)
    name = emr_step_name(DAG_ID, RUN_ID, "2024-07-01", "ingest_sales")
    assert message.splitlines()[0] == f"EMR Serverless job run {name} ({failing}) on {app} ended FAILED"
    assert "reason: Job failed, please check complete logs in configured logging destination." in message
    assert f"driver stderr: {LOGS}applications/{app}/jobs/{failing}/SPARK_DRIVER/stderr.gz" in message
    assert f"    ValueError: the player failed {name}" in message
    assert f"cancelled the run's other active job runs: ['{sibling}']" in message
    assert (_state(sibling), _state(foreign)) == ("CANCELLED", "SUBMITTED")  # another run's is left


def test_killing_a_waiting_step_task_cancels_its_job_run(aws, played):
    app = _application(aws)
    running = _start(aws, app, "features")
    trigger = EmrServerlessStartJobTrigger(application_id=app, job_id=running, waiter_delay=1)
    asyncio.run(trigger.on_kill())  # what the triggerer does on Mark failed or a kill (Airflow 3.3)
    assert _state(running) == "CANCELLED"
    batch = [_start(aws, app, "graph"), _start(aws, app, "sales_rolling")]
    serverless_backend().get_job_run(app, batch[0]).state = "SUCCESS"
    asyncio.run(JobRunsTrigger(application_id=app, job_run_ids=batch, waiter_delay=1).on_kill())
    assert [_state(i) for i in batch] == ["SUCCESS", "CANCELLED"]


def test_a_retried_create_takes_the_runs_application(aws, played):
    app = _application(aws)
    create = ServerlessApplicationOperator(
        task_id="create_application",
        release_label="emr-spark-8.1.0",
        job_type="SPARK",
        config={"name": serverless_application_name(DAG_ID, RUN_ID)},
        wait_for_completion=False,
        waiter_delay=1,
    )
    assert create.execute(CONTEXT) == app
    assert len(calls(aws, "CreateApplication")) == 1  # the one above


def test_the_teardown_cancels_stops_and_deletes_every_application_of_the_run(aws, played):
    client = aws.client("emr-serverless")
    current, stray = _application(aws), _application(aws)  # a second one by a failed create
    foreign = _application(aws, name=serverless_application_name(DAG_ID, "another-run"))
    client.start_application(applicationId=current)
    running = _start(aws, current, "segments")
    done = ServerlessTeardownOperator(
        task_id="delete_application", application_id=current, waiter_delay=1, waiter_max_attempts=5
    ).execute(CONTEXT)
    assert _state(running) == "CANCELLED"
    states = {a: client.get_application(applicationId=a)["application"]["state"] for a in (current, stray)}
    assert states == {current: "TERMINATED", stray: "TERMINATED"}
    assert client.get_application(applicationId=foreign)["application"]["state"] == "CREATED"
    assert done == [
        f"application {current} (STARTED): cancelled 1 job runs, stopped and deleted",
        f"application {stray} (CREATED): cancelled 0 job runs, deleted",
    ]
    assert [r.action for r in calls(aws, "StopApplication")] == ["StopApplication"]  # not the CREATED one


def test_a_failed_create_deletes_the_application_it_left(aws, played, monkeypatch):
    """CreateApplication answered but the wait for CREATED failed: the setup fails, so its teardown
    will not run; the creation itself deletes the run's application it left."""
    from airflow.providers.amazon.aws.operators.emr import EmrServerlessCreateApplicationOperator

    def created_then_lost(self, context):
        self.hook.conn.create_application(
            name=self.config["name"], releaseLabel=self.release_label, type=self.job_type
        )
        raise RuntimeError("Serverless Application creation failed: waiter error")

    monkeypatch.setattr(EmrServerlessCreateApplicationOperator, "execute", created_then_lost)
    create = ServerlessApplicationOperator(
        task_id="create_application",
        release_label="emr-spark-8.1.0",
        job_type="SPARK",
        config={"name": serverless_application_name(DAG_ID, RUN_ID)},
        waiter_delay=1,
    )
    with pytest.raises(Exception, match="EMR Serverless did not create the application: Serverless"):
        create.execute(CONTEXT)
    ((app, state),) = [(a.id, a.state) for a in serverless_backend().applications.values()]
    assert state == "TERMINATED", app
