"""EMR Serverless DAG runs under moto: run a pipeline DAG with dag.test() while a JobRunPlayer plays
the job runs, then keep what AWS holds and was asked (requests, applications, job runs, S3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from include import pipeline as P
from tests.harness.aws_fakes import FakeAws
from tests.harness.dag_runs import DagRunRecord, run_pipeline_dag
from tests.harness.serverless_fakes import (
    JobRunPlayer,
    application_states,
    calls,
    job_run_states,
    serverless_requests,
)


@dataclass
class ServerlessRun:
    """A finished dag.test() run and what EMR Serverless and S3 hold and were asked afterwards."""

    run: DagRunRecord
    create_application: list[dict]  # the CreateApplication requests
    start_job_run: list[tuple[str, dict]]  # (application id, StartJobRun request), in order
    applications: dict[str, str]  # application id -> state, oldest first
    job_runs: list[tuple[str, str, str]]  # (application id, job run name, state), in order started
    actions: list[str]  # every emr-serverless action asked, in order
    s3_keys: set[str]
    finished: list[tuple[str, str]]  # (job run name, state) as the player ended them
    seen_round: dict[str, int]
    ended_round: dict[str, int]
    async_polled: set[str]  # job run ids a deferred trigger asked about
    reports: dict[str, dict]  # the run reports in the lake (report.json), by key


def snapshot(aws: FakeAws, run: DagRunRecord, player: JobRunPlayer) -> ServerlessRun:
    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket="lake-bucket").get("Contents", [])}
    reports = {
        key: json.loads(aws.s3.get_object(Bucket="lake-bucket", Key=key)["Body"].read())
        for key in keys
        if key.startswith("lake/_runs/reports/") and key.endswith("/report.json")
    }
    return ServerlessRun(
        run=run,
        create_application=[r.body for r in calls(aws, "CreateApplication")],
        start_job_run=[(r.application_id, r.body) for r in calls(aws, "StartJobRun")],
        applications=application_states(),
        job_runs=job_run_states(),
        actions=[r.action for r in serverless_requests(aws)],
        s3_keys=keys,
        finished=list(player.finished),
        seen_round=dict(player.seen_round),
        ended_round=dict(player.ended_round),
        async_polled=player.async_polled(),
        reports=reports,
    )


def run_serverless(
    aws: FakeAws, which: str, ds: str | None, conf: dict, reset: bool = True, **player: Any
) -> ServerlessRun:
    if reset:  # a fresh account (otherwise: the same lake, a later run)
        aws.reset()
        aws.s3.create_bucket(Bucket="lake-bucket")
    with JobRunPlayer(aws, **player) as played:
        run = run_pipeline_dag(which, ds, conf, xcom_tasks=("plan", *(f"register_{o}" for o in P.OUTPUTS)))
        return snapshot(aws, run, played)
