"""Repairing a failed EMR nightly run in the same run, as the UI's own Clear does it (dag.test()'s
loop against moto, the Clear through the public API's own route functions) and as the run's
Repair run tab does it (plugins/run_repair.py, through Airflow's REST API app as an editor):

- the failed step task cleared with the Clear dialog's defaults (downstream, not upstream) brings
  its setup back: one new cluster runs the failed step, what depends on it, the audit and the
  publish, and is terminated; nothing that had succeeded runs again;
- the run cleared with "Only failed tasks" leaves the setup, whose XCom names the old terminated
  cluster: the step task fails at once with one line saying so, creates and adds nothing;
- a cluster lost under a waiting step fails that step task at its next poll with the cluster's
  state and EMR's reason; the repair then goes green;
- with every EMR step run for real (StepRunner: local Spark on moto's S3 and Glue), pyiceberg's
  Glue catalog finds on main the commits the failed attempt left on the run's branch, segments'
  on top of them and nothing committed twice, and main moved once per table by the publish;
- on the local target the same Clear repairs the run: the warm Spark application (the setup)
  starts again, only the failed job, the audit and the publish run; pyiceberg counts the run's
  commits on its branch (none twice) and main's one move by the publish;
- the repaired run's report (written by its last task, read back from moto's S3) shows both
  clusters: the steps each ran, by name and try, each one's cost from its instances' hours at the
  price table, and the total.
"""

from __future__ import annotations

import json
import logging
import math
import re

import pytest

from include import pipeline as P
from include.lake_files import report_uri
from include.run_local import DAG_FILES, load_dag, run_dag_test
from include.run_report.cost import load_prices
from plugins.emr_naming import emr_step_name, parse_emr_step_name
from tests.harness.airflow_runs import (
    clear_run_as_the_ui_does,
    clear_tasks_as_the_ui_does,
    repair_from_the_tab,
    resume_run,
)
from tests.harness.aws_fakes import EmrStepPlayer, fails_once
from tests.harness.dag_runs import record_run
from tests.harness.settings import EMR_ENV
from tests.reliability.emr_faults import lose_cluster, set_step_state

pytestmark = pytest.mark.ops  # two whole DAG runs each (about 100 s apiece on 2 cores): make test-ops

LAKE = EMR_ENV["PIPELINE_LAKE"]
DS = "2024-07-03"
REPAIR_DS = "2024-07-05"
LOST = "Spot capacity was reclaimed"
REGISTERS = tuple(f"register_{o}" for o in P.OUTPUTS)


@pytest.fixture
def nightly(aws, airflow_db, monkeypatch):
    """The EMR nightly DAG parsed under the emr target's test settings, as Airflow would."""
    for key, value in EMR_ENV.items():
        monkeypatch.setenv(key, value)
    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None  # as run_dag_test: dag.test() of Airflow 3.3.2 cannot end a run that has one
    return dag


def clusters(aws) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(id, state, [(step, state)]) of every cluster, oldest first, steps in submission order."""
    return [
        (c.id, c.state, [(parse_emr_step_name(s.name)["step"], s.state) for s in c.steps])
        for c in aws.emr_backend().clusters.values()
    ]


def report_of(aws, dag_id: str) -> dict:
    """The run report the run's last task wrote to the lake (moto's S3)."""
    key = report_uri(LAKE, dag_id, DS).removeprefix("s3://lake-bucket/")
    return json.loads(aws.s3.get_object(Bucket="lake-bucket", Key=key)["Body"].read())


def priced_hours(aws, cluster_id: str) -> tuple[float, float]:
    """(instance hours, cost) of a cluster as boto3 tells it: each instance from its creation
    (else the cluster's) to its end (else the cluster's) at the price table's EC2 + EMR price."""
    emr, prices = aws.client("emr"), load_prices()["instances"]
    life = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["Timeline"]
    hours = cost = 0.0
    for i in emr.list_instances(ClusterId=cluster_id)["Instances"]:
        own = i.get("Status", {}).get("Timeline", {})
        start = own.get("CreationDateTime") or life["CreationDateTime"]
        end = own.get("EndDateTime") or life["EndDateTime"]
        h = (end - start).total_seconds() / 3600
        hours, cost = (
            hours + h,
            cost + h * (prices[i["InstanceType"]]["ec2"] + prices[i["InstanceType"]]["emr"]),
        )
    return hours, cost


def completed_twice(player: EmrStepPlayer) -> list[str]:
    done = [name for name, state in player.finished if state == "COMPLETED"]
    return sorted({n for n in done if done.count(n) > 1})


def nightly_step(run_id: str, step: str) -> str:
    return emr_step_name("customer_analytics_nightly", run_id, DS, step)


def test_a_failed_step_is_repaired_by_clearing_its_task_and_only_failed_says_how(nightly, aws, capfd, caplog):
    fail = fails_once("segments")  # segments fails on its first attempt only

    with EmrStepPlayer(aws, fail=fail) as emr:
        run_id = run_dag_test(nightly, DS, {}).run_id
        first = record_run(nightly, run_id)
        assert first.state == "failed", first.task_states
        assert first.task_states["run_segments"] == "failed"
        (old, old_state, old_steps), *more = clusters(aws)
        assert (old_state, more) == ("TERMINATED", [])
        added = len(aws.calls("ElasticMapReduce.AddJobFlowSteps"))
        capfd.readouterr()

        # Run -> Clear -> "Only failed tasks": the setup keeps its XCom, the old cluster
        clear_run_as_the_ui_does(nightly.dag_id, run_id, only_failed=True)
        assert resume_run(nightly, run_id) == "failed"
        log = capfd.readouterr().out
        gone = [line for line in log.splitlines() if "the run's cluster is gone" in line]
        assert gone, log[-3000:]
        assert f"the run's cluster is gone (cluster {old} is TERMINATED" in gone[0]
        assert (
            "): repair the run (its Repair run tab), or clear this task with its downstream tasks "
            "(the Clear dialog's defaults); either creates a new cluster and reruns only what failed"
        ) in gone[0]
        assert "KeyError" not in log
        assert record_run(nightly, run_id).task_states["run_segments"] == "failed"
        assert len(clusters(aws)) == 1  # no cluster created, none leaked
        assert len(aws.calls("ElasticMapReduce.AddJobFlowSteps")) == added  # nothing added

        # the failed task's Clear with the dialog's defaults
        caplog.set_level(logging.INFO, logger="include.run_report.task")
        caplog.clear()
        cleared = clear_tasks_as_the_ui_does(nightly.dag_id, run_id, ["run_segments"])
        state = resume_run(nightly, run_id)
        log = caplog.text  # run_report's table, as its task log shows it
    assert emr.errors == []
    assert cleared == sorted(
        {"run_segments", "create_cluster", "terminate_cluster", "step_logs", "steps_done"}
        | {"run_audit", "run_publish", "run_report", *REGISTERS}
    )
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    assert set(repaired.task_states.values()) == {"success"}
    # exactly one more cluster, which ran the failed step, its dependants (none), audit and
    # publish, and was terminated
    assert [(c, s) for c, s, _ in clusters(aws)] == [(old, "TERMINATED"), (clusters(aws)[1][0], "TERMINATED")]
    assert clusters(aws)[1][2] == [
        ("segments", "COMPLETED"),
        ("audit", "COMPLETED"),
        ("publish", "COMPLETED"),
    ]
    assert sorted(s for s, _ in old_steps) == sorted(P.STEPS)
    assert dict(old_steps)["segments"] == "FAILED"
    assert completed_twice(emr) == []  # nothing that had succeeded ran again
    assert sorted(repaired.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)

    # the repaired run's report: both clusters, the steps each ran, what each cost, the total
    (_, _, first_steps), (new, _, _) = clusters(aws)
    report = report_of(aws, nightly.dag_id)
    assert report["state"] == "success"
    attempts = report["emr_attempts"]
    assert [(c["attempt"], c["cluster_id"], c["state"]) for c in attempts["clusters"]] == [
        (1, old, "TERMINATED"),
        (2, new, "TERMINATED"),
    ]
    ran = [[(s["step"], s["ds"], s["state"], s["try"]) for s in c["steps"]] for c in attempts["clusters"]]
    assert ran[0] == [(step, DS, state, 1) for step, state in first_steps]  # as EMR lists them
    assert ran[1] == [
        ("segments", DS, "COMPLETED", 2),
        ("audit", DS, "COMPLETED", 1),
        ("publish", DS, "COMPLETED", 1),
    ]
    assert [c["steps"] for c in attempts["clusters"]][1][0]["name"] == nightly_step(run_id, "segments")
    costs = [priced_hours(aws, c) for c in (old, new)]
    for c, (hours, cost) in zip(attempts["clusters"], costs, strict=True):
        assert sum(t["instance_hours"] for t in c["instance_types"]) == pytest.approx(hours, abs=1e-4)
        assert c["estimated_cost"] == pytest.approx(cost, abs=5e-5)  # the report rounds to 4 places
    assert attempts["total"]["clusters"] == 2
    assert attempts["total"]["estimated_cost"] == pytest.approx(sum(c for _, c in costs), abs=1e-4)
    assert attempts["total"]["currency"] == "USD"
    assert report["emr_cluster"]["cluster_id"] == new  # the run's current cluster, its links
    rows = {s["step"]: s for s in report["steps"]}
    assert [(t["cluster_id"], t["try"], t["state"]) for t in rows["segments"]["emr_tries"]] == [
        (old, 1, "FAILED"),
        (new, 2, "COMPLETED"),
    ]
    for step in ("segments", "audit", "publish"):  # the repaired run's audit and publish
        assert (rows[step]["state"], rows[step]["emr_step"]["cluster_id"]) == ("success", new), step
    assert (rows["graph"]["state"], rows["graph"]["emr_step"]["cluster_id"]) == ("success", old)
    # and as the task log shows it
    assert f"EMR cluster 1 of 2 {old} (TERMINATED)" in log
    assert f"EMR cluster 2 of 2 {new} (TERMINATED)" in log
    assert f"  steps: segments {DS} COMPLETED (try 2), audit {DS} COMPLETED, publish {DS} COMPLETED" in log
    total = attempts["total"]
    assert (
        f"EMR total: 2 clusters; normalized instance hours {total['normalized_instance_hours']:,.1f}; " in log
    )
    assert f"estimated cost {total['estimated_cost']:.2f} USD" in log


def test_a_failed_step_is_repaired_from_the_repair_run_tab(nightly, aws):
    """The Repair run tab on the EMR target: it lists the failed step, the steps after it (none
    but audit and publish here), and on confirmation one new cluster runs exactly those."""
    fail = fails_once("segments")  # segments fails on its first attempt only

    with EmrStepPlayer(aws, fail=fail) as emr:
        run_id = run_dag_test(nightly, REPAIR_DS, {}).run_id
        assert record_run(nightly, run_id).task_states["run_segments"] == "failed"
        (old, _, old_steps), *more = clusters(aws)
        assert more == []
        shown, done = repair_from_the_tab(nightly.dag_id, run_id)
        state = resume_run(nightly, run_id)
    assert emr.errors == []
    reruns = shown.split("Steps it reruns", 1)[1].split("</ul>", 1)[0]
    assert re.findall(r"<li><code>([^<]+)</code>", reruns) == ["run_audit", "run_publish", "run_segments"]
    assert "create_cluster" in shown.split("With them", 1)[1]
    assert "Repair started" in done
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    assert set(repaired.task_states.values()) == {"success"}
    (first, first_state, _), (_, new_state, new_steps) = clusters(aws)
    assert (first, first_state, new_state) == (old, "TERMINATED", "TERMINATED")
    assert new_steps == [("segments", "COMPLETED"), ("audit", "COMPLETED"), ("publish", "COMPLETED")]
    assert dict(old_steps)["segments"] == "FAILED"
    assert completed_twice(emr) == []
    assert sorted(repaired.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)


def test_a_cluster_lost_under_a_waiting_step_fails_it_at_the_next_poll_and_a_repair_goes_green(nightly, aws):
    """EMR marks a lost cluster's steps only later (here: not before the repair): the step task
    learns it from DescribeCluster, which its trigger asks at each poll."""
    phase = {"name": "first", "lost": None, "requests": 0}

    def delay(name: str) -> float:
        if "|stock_daily|" not in name or phase["name"] != "first":
            return 0.2
        if phase["lost"] is None:
            for cluster in aws.emr_backend().clusters.values():
                mine = [s for s in cluster.steps if s.name == name]
                if mine and mine[0].id in aws.async_polled_steps():  # its task waits on it
                    lose_cluster(aws, cluster.id, "INSTANCE_FAILURE", LOST, cancel_steps=False)
                    phase["requests"] = len(aws.requests())  # each later one is answered after the loss
                    phase["lost"] = (cluster.id, mine[0].id)
        return math.inf  # never ends by itself

    with EmrStepPlayer(aws, delay=delay) as emr:
        run_id = run_dag_test(nightly, DS, {"outputs": ["stock_daily"]}).run_id
        first = record_run(nightly, run_id)
        assert first.state == "failed", first.task_states
        assert first.task_states["run_stock_daily"] == "failed"
        lost_cluster, lost_step = phase["lost"]
        # EMR had not marked the step (still active): the cluster's state ended the wait, at the
        # first poll after the loss (the exact message: tests/reliability/test_emr_steps.py)
        (_, old_state, old_steps), *more = clusters(aws)
        assert (old_state, more) == ("TERMINATED_WITH_ERRORS", [])
        assert old_steps[0] == ("ingest_stock_ticks", "COMPLETED")
        assert old_steps[1][0] == "stock_daily"
        assert old_steps[1][1] in ("PENDING", "RUNNING")
        after = [
            (r.action, r.body.get("StepId"))
            for r in aws.requests()[phase["requests"] :]
            if "aiobotocore" in r.user_agent
        ]
        # at most one poll after the loss (a poll may have been under way): no wait for a timeout
        assert after.count(("ElasticMapReduce.DescribeCluster", None)) <= 1
        assert after.count(("ElasticMapReduce.DescribeStep", lost_step)) <= 1
        assert first.task_states["terminate_cluster"] == "success"

        set_step_state(aws, lost_cluster, lost_step, "CANCELLED")  # as EMR does, later
        phase["name"] = "repair"
        clear_tasks_as_the_ui_does(nightly.dag_id, run_id, ["run_stock_daily"])
        state = resume_run(nightly, run_id)
    assert emr.errors == []
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    (old, old_state, old_steps), (_, new_state, new_steps) = clusters(aws)
    assert (old, old_state, new_state) == (lost_cluster, "TERMINATED_WITH_ERRORS", "TERMINATED")
    assert old_steps == [("ingest_stock_ticks", "COMPLETED"), ("stock_daily", "CANCELLED")]
    assert new_steps == [("stock_daily", "COMPLETED"), ("audit", "COMPLETED"), ("publish", "COMPLETED")]
    assert completed_twice(emr) == []
    assert repaired.asset_events == [f"{LAKE}/warehouse/curated/stock_daily"]


# ---- the local target: the warm Spark application is the setup ----------------------------------
def run_commits(catalog, run_id: str, ref: str) -> dict[str, list[tuple[int, str]]]:
    """Per table of the lake, the run's commits on `ref` (the run's branch, or main once the
    publish fast-forwarded main to it and dropped the branch), oldest first: (snapshot id, the job
    that made it), walking back from the ref's head while the commits are the run's."""
    out = {}
    for namespace in catalog.list_namespaces():
        for ident in catalog.list_tables(namespace):
            table = catalog.load_table(ident)
            head = table.metadata.refs.get(ref)
            commits, snapshot = [], table.snapshot_by_id(head.snapshot_id) if head else None
            while (
                snapshot is not None
                and snapshot.summary.additional_properties.get("pipeline.run-id") == run_id
            ):
                commits.append((snapshot.snapshot_id, snapshot.summary.additional_properties["pipeline.job"]))
                parent = snapshot.parent_snapshot_id
                snapshot = table.snapshot_by_id(parent) if parent is not None else None
            if commits:
                out[".".join(ident)] = commits[::-1]
    return out


def assert_main_moved_once(catalog, after: dict[str, list[tuple[int, str]]], run_id: str) -> None:
    """Main of every table the run wrote (`after`: run_commits on main) moved once in the run, by
    the publish, to the run's last commit, and is there now."""
    for name, commits in after.items():
        table = catalog.load_table(name)
        mine = [
            e.snapshot_id
            for e in table.metadata.snapshot_log
            if table.snapshot_by_id(e.snapshot_id).summary.additional_properties.get("pipeline.run-id")
            == run_id
        ]
        assert mine == [commits[-1][0]], name
        assert table.current_snapshot().snapshot_id == commits[-1][0], name


def test_a_failed_local_step_is_repaired_by_clearing_its_task(airflow_db, tmp_path, monkeypatch):
    """segments' job fails once (exit code 1 from the run's Spark application before it commits
    anything, as a job that raises); its task's Clear with the dialog's defaults starts the warm
    Spark application again and runs only segments, the audit and the publish."""
    from include.lake import open_catalog
    from spark_jobs import server
    from tests.harness.nightly import NIGHTLY_DS, NIGHTLY_HISTORY_START, demo_landing

    lake = demo_landing(tmp_path / "lake")
    monkeypatch.setenv("PIPELINE_TARGET", "local")
    monkeypatch.setenv("PIPELINE_LAKE", lake.as_uri())
    monkeypatch.setenv("PIPELINE_RETRIES", "0")
    jobs: list[str] = []  # every job the run's Spark application was asked to run, in order
    run_job = server.run_job

    def failing_segments_once(socket, args, on_line, lineage=None):
        jobs.append(args[0])
        if args[0] == "segments" and jobs.count("segments") == 1:
            on_line("RuntimeError: segments failed (injected by the test, before any commit)")
            return 1
        return run_job(socket, args, on_line, lineage)

    monkeypatch.setattr(server, "run_job", failing_segments_once)
    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None  # as run_dag_test
    run_id = run_dag_test(dag, NIGHTLY_DS, {"ingest_start_ds": NIGHTLY_HISTORY_START}).run_id
    first = record_run(dag, run_id)
    assert first.state == "failed", first.task_states
    assert first.task_states["run_segments"] == "failed"
    assert (first.task_states["run_audit"], first.task_states["run_publish"]) == ("upstream_failed",) * 2
    steps = [s.name for s in P.PIPELINE]
    assert sorted(jobs) == sorted(P.STEPS[s].job for s in steps)  # every job ran, once, through the warm app
    catalog = open_catalog(lake.as_uri())
    before = run_commits(catalog, run_id, P.audit_branch(run_id))
    assert before  # the steps that succeeded committed to the run's branch
    assert "curated.customer_segments" not in before  # the failed job committed nothing
    ran_before = len(jobs)

    cleared = clear_tasks_as_the_ui_does(dag.dag_id, run_id, ["run_segments"])
    state = resume_run(dag, run_id)
    repaired = record_run(dag, run_id)
    assert state == "success", repaired.task_states
    assert set(repaired.task_states.values()) == {"success"}
    assert cleared == sorted(
        {"start_spark", "run_segments", "run_audit", "run_publish", "stop_spark", "run_report", *REGISTERS}
    )
    assert jobs[ran_before:] == ["segments", "audit", "publish"]  # only the failed step and what follows

    catalog = open_catalog(lake.as_uri())
    assert not any(P.audit_branch(run_id) in catalog.load_table(t).metadata.refs for t in before)  # published
    after = run_commits(catalog, run_id, "main")
    # nothing that had succeeded committed again: main holds the commits the branch had after the
    # failed attempt, and on top of them segments' (its own table's) only
    assert {t: c for t, c in after.items() if t in before} == before
    added = {t: c for t, c in after.items() if t not in before}
    assert list(added) == ["curated.customer_segments"]
    assert [job for _, job in added["curated.customer_segments"]] == ["segments"]
    # the publish moved main of every table the run wrote once, to the branch's head
    assert_main_moved_once(catalog, after, run_id)
    assert sorted(repaired.asset_events) == sorted(
        f"{lake.as_uri()}/warehouse/curated/{o}" for o in P.OUTPUTS
    )


def test_an_emr_repair_with_real_jobs_commits_only_what_failed_and_publishes_once(
    aws, airflow_db, monkeypatch, tmp_path
):
    """The EMR repair with every step run for real (StepRunner: the jobs on local Spark against
    moto's S3 and Glue): pyiceberg's Glue catalog counts the run's commits; segments fails at its
    first try before its job starts (it commits nothing)."""
    from include.lake import open_catalog
    from tests.harness.aws_fakes import StepRunner
    from tests.harness.nightly import NIGHTLY_DS, NIGHTLY_HISTORY_START, demo_landing

    for key, value in EMR_ENV.items():
        monkeypatch.setenv(key, value)
    landing = demo_landing(tmp_path / "lake") / "landing"
    for path in sorted(landing.rglob("*")):
        if path.is_file():
            key = f"lake/landing/{path.relative_to(landing).as_posix()}"
            aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=path.read_bytes())
    keys = {"access-key-id": "testing", "secret-access-key": "testing", "region": "us-east-1"}
    properties = {f"{svc}.{k}": v for svc in ("glue", "s3") for k, v in keys.items()}
    properties |= {"glue.endpoint": aws.url, "s3.endpoint": aws.url}
    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None
    fail = fails_once("segments")  # segments fails on its first attempt only

    (tmp_path / "steps").mkdir()
    runner = StepRunner(aws, tmp_path / "steps")
    try:
        with EmrStepPlayer(aws, run=runner, fail=fail) as emr:
            conf = {"cluster_profile": "dev", "ingest_start_ds": NIGHTLY_HISTORY_START}
            run_id = run_dag_test(dag, NIGHTLY_DS, conf).run_id
            assert record_run(dag, run_id).state == "failed"
            before = run_commits(open_catalog(LAKE, properties=properties), run_id, P.audit_branch(run_id))
            clear_tasks_as_the_ui_does(dag.dag_id, run_id, ["run_segments"])
            state = resume_run(dag, run_id)
    finally:
        runner.stop()
    assert emr.errors == []
    assert state == "success", record_run(dag, run_id).task_states
    (_, _, _), (_, _, second) = clusters(aws)
    assert second == [("segments", "COMPLETED"), ("audit", "COMPLETED"), ("publish", "COMPLETED")]
    assert before  # the steps that succeeded committed to the run's branch
    assert not any(t.endswith("customer_segments") for t in before)
    catalog = open_catalog(LAKE, properties=properties)
    after = run_commits(catalog, run_id, "main")
    assert {t: c for t, c in after.items() if t in before} == before  # none committed again
    added = {t: c for t, c in after.items() if t not in before}
    assert [(t.rsplit(".", 1)[-1], [job for _, job in c]) for t, c in added.items()] == [
        ("customer_segments", ["segments"])
    ]
    assert_main_moved_once(catalog, after, run_id)  # main moved once per table, to the branch's head
