"""EMR DAG runs under moto: run a pipeline DAG with dag.test() while an EmrStepPlayer plays the
cluster, then keep what AWS holds and was asked (requests, steps, clusters, S3, Glue)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import pipeline as P
from tests.harness.aws_fakes import EmrStepPlayer, FakeAws, job_args
from tests.harness.dag_runs import DagRunRecord, run_pipeline_dag


@dataclass
class EmrRun:
    """A finished dag.test() run and a snapshot of what AWS holds and was asked afterwards."""

    run: DagRunRecord
    run_job_flow: list[dict]
    added_steps: list[dict]  # every step of every AddJobFlowSteps call, in submission order
    step_calls: list[list[dict]]  # the AddJobFlowSteps calls themselves
    clusters: dict[str, str]  # cluster id -> state
    s3_objects: dict[str, bytes]
    glue: dict[str, dict[str, Any]]  # "<database>.<table>" -> GetTable's Table
    async_polls: list[str]  # user agents of the DescribeStep/ListSteps calls made by aiobotocore
    finished_steps: list[tuple[str, str]]
    seen_round: dict[str, int]  # step name -> player round it was first seen on the cluster
    ended_round: dict[str, int]  # step name -> player round it ended


def snapshot(aws: FakeAws, run: DagRunRecord, player: EmrStepPlayer) -> EmrRun:
    s3 = aws.s3
    objects = {}
    for obj in s3.list_objects_v2(Bucket="lake-bucket").get("Contents", []):
        objects[obj["Key"]] = s3.get_object(Bucket="lake-bucket", Key=obj["Key"])["Body"].read()
    glue = aws.client("glue")
    tables = {
        f"{db['Name']}.{t['Name']}": t
        for db in glue.get_databases()["DatabaseList"]
        for t in glue.get_tables(DatabaseName=db["Name"])["TableList"]
    }
    emr = aws.client("emr")
    clusters = {c["Id"]: c["Status"]["State"] for c in emr.list_clusters()["Clusters"]}
    step_calls = [body["Steps"] for body in aws.calls("ElasticMapReduce.AddJobFlowSteps")]
    async_polls = [
        r
        for r in aws.requests()
        if r.action in ("ElasticMapReduce.DescribeStep", "ElasticMapReduce.ListSteps")
    ]
    return EmrRun(
        run=run,
        run_job_flow=aws.calls("ElasticMapReduce.RunJobFlow"),
        added_steps=[step for call in step_calls for step in call],
        step_calls=step_calls,
        clusters=clusters,
        s3_objects=objects,
        glue=tables,
        async_polls=[r.user_agent for r in async_polls if "aiobotocore" in r.user_agent],
        finished_steps=list(player.finished),
        seen_round=dict(player.seen_round),
        ended_round=dict(player.ended_round),
    )


def run_emr(
    aws: FakeAws,
    which: str,
    ds: str | None,
    conf: dict,
    landing: Path | None = None,
    reset: bool = True,
    **player: Any,
) -> EmrRun:
    if reset:  # a fresh account (otherwise: the same lake, a later run)
        aws.reset()
        aws.s3.create_bucket(Bucket="lake-bucket")
    if landing is not None:  # what upstream systems delivered to the lake
        for path in sorted(landing.rglob("*")):
            if path.is_file():
                key = f"lake/landing/{path.relative_to(landing).as_posix()}"
                aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=path.read_bytes())
    with EmrStepPlayer(aws, **player) as emr:
        run = run_pipeline_dag(which, ds, conf, xcom_tasks=tuple(f"register_{o}" for o in P.OUTPUTS))
    return snapshot(aws, run, emr)


def step_job_args(step: dict) -> list[str]:
    """The job's command line of an AddJobFlowSteps step (what follows spark-submit's entrypoint)."""
    return job_args(step["HadoopJarStep"]["Args"])


def report_of(run: EmrRun, dag_id: str, ds: str) -> dict[str, Any]:
    """The run report the run's last task wrote to the lake (S3) for `ds`."""
    from include.lake_files import report_uri

    return json.loads(
        run.s3_objects[report_uri("s3://lake-bucket/lake", dag_id, ds).removeprefix("s3://lake-bucket/")]
    )


def published_metrics(aws: FakeAws, namespace: str, report: dict[str, Any]) -> dict[tuple, list[float]]:
    """What CloudWatch holds of one run, read back as a user would: ListMetrics of the namespace,
    then GetMetricData of each in the minute from the run's end (the datums' timestamp; runs of
    one test module end minutes apart). {(name, step, output): [values]} for every metric with data."""
    cw = aws.client("cloudwatch")
    listed = [
        m for page in cw.get_paginator("list_metrics").paginate(Namespace=namespace) for m in page["Metrics"]
    ]
    start = dt.datetime.fromisoformat(report["run"]["finished_at"]).replace(microsecond=0)
    queries = [
        {"Id": f"m{i}", "MetricStat": {"Metric": {"Namespace": namespace, **m}, "Period": 60, "Stat": "Sum"}}
        for i, m in enumerate({k: v for k, v in m.items() if k != "Namespace"} for m in listed)
    ]
    out: dict[tuple, list[float]] = {}
    for at in range(0, len(queries), 500):  # GetMetricData takes at most 500 queries
        got = cw.get_metric_data(
            MetricDataQueries=queries[at : at + 500],
            StartTime=start,
            EndTime=start + dt.timedelta(seconds=60),
        )
        for result in got["MetricDataResults"]:
            metric = queries[int(result["Id"][1:])]["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            if result["Values"]:
                key = (metric["MetricName"], dims.get("Step"), dims.get("Output"))
                assert (dims["DAG"], dims["Target"]) == (report["dag_id"], "emr"), dims
                out[key] = list(result["Values"])
    return out
