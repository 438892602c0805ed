"""The run's plan, typed: what the plan task says of each step (its tasks, date or range, metrics
file, EMR step name, outputs) equals what the spec and the naming rules give, survives XCom's JSON,
and is what the steps' EMR names and the run report use."""

from __future__ import annotations

import dataclasses
import json

import pytest

import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
from include import pipeline as P
from include.planning import plan_backfill, plan_nightly
from include.run_plan import PLAN_XCOM_KEY, PlannedStep, RunPlan
from include.run_report import model, task
from include.settings import Settings
from plugins.emr_naming import safe_name

DS = "2024-06-30"
RUN = "manual__2024-06-30T02:00:00+00:00"
NIGHTLY, BACKFILL = "customer_analytics_nightly", "customer_analytics_backfill"
LOCAL = Settings(target="local", lake="file:///tmp/lake")
EMR = Settings(
    target="emr",
    lake="s3://lake-bucket/lake",
    code_uri="s3://lake-bucket/lake/_code",
    log_uri="s3://lake-bucket/lake/_emr_logs/",
    subnet_id="subnet-0123456789abcdef0",
)
CODE = {
    "version": "0.1.0-abc",
    "py_files": "s3://lake-bucket/lake/_code/0.1.0-abc/spark_jobs-0.1.0-abc.zip",
    "entrypoint": "s3://lake-bucket/lake/_code/0.1.0-abc/spark_jobs_main.py",
}
# the metrics file of each step's job (spark_jobs/cli.py: <job>[-<dataset>].json)
METRICS_FILES = {
    "ingest_customers": "ingest-customers",
    "ingest_sales": "ingest-sales",
    "ingest_referrals": "ingest-referrals",
    "ingest_stock_ticks": "ingest-stock_ticks",
    "ingest_clickstream": "ingest-clickstream",
    "graph": "graph",
    "features": "features",
    "segments": "segments",
    "sales_rolling": "sales_rolling",
    "stock_daily": "stock_daily",
    "clickstream": "clickstream",
    "audit": "audit",
    "publish": "publish",
}


def _nightly(settings: Settings, outputs: list[str]) -> RunPlan:
    params = {"cluster_profile": "dev", "outputs": outputs, "ingest_start_ds": "2024-06-01"}
    code = CODE if settings.is_emr else None
    return plan_nightly(settings, dag_id=NIGHTLY, run_id=RUN, ds=DS, params=params, code=code)


def _backfill(settings: Settings) -> RunPlan:
    params = {"start_ds": "2024-06-28", "end_ds": DS, "cluster_profile": "dev"}
    code = CODE if settings.is_emr else None
    return plan_backfill(settings, dag_id=BACKFILL, run_id=RUN, params=params, code=code)


def _through_xcom(plan: RunPlan) -> RunPlan:
    """The plan as a reader gets it: stored as JSON (the plan task's XCom), read back."""
    return RunPlan.from_xcom(json.loads(json.dumps({PLAN_XCOM_KEY: plan.to_xcom()}))[PLAN_XCOM_KEY])


def _run() -> list[str]:
    """A command line's tail: the run (EMR-safe) and the branch it writes to."""
    return ["--run-id", safe_name(RUN), "--branch", P.audit_branch(RUN)]


def test_metrics_names_match_the_cli_file_names_for_every_step():
    run = _through_xcom(_nightly(LOCAL, list(P.OUTPUTS)))
    folder = f"{LOCAL.lake}/_runs/metrics/dt={DS}/"
    names = {p.step: p.metrics_uri.removeprefix(folder).removesuffix(".json") for p in run.steps}
    assert names == METRICS_FILES


@pytest.mark.parametrize("settings", [LOCAL, EMR], ids=["local", "emr"])
def test_each_nightly_step_is_planned_as_the_spec_and_the_naming_rules_say(settings):
    run = _through_xcom(_nightly(settings, ["stock_daily"]))
    needed = {"ingest_stock_ticks", "stock_daily", "audit", "publish"}
    emr = settings.is_emr
    expected = tuple(
        PlannedStep(
            step=step.name,
            label=DS,
            task_ids=(f"run_{step.name}",),  # one task per step on both targets
            selected=step.name in needed,
            metrics_uri=(
                f"{settings.lake}/_runs/metrics/dt={DS}/{METRICS_FILES[step.name]}.json"
                if step.name in needed
                else None
            ),
            emr_step_name=f"{NIGHTLY}|{DS}|{step.name}|{RUN}" if emr else None,
            outputs=step.produces,
        )
        for step in (*P.PIPELINE, P.AUDIT, P.PUBLISH)
    )
    assert (run.ds, run.branch) == (DS, P.audit_branch(RUN))
    assert tuple(dataclasses.replace(p, call=None) for p in run.steps) == expected
    # each selected step's job call is its own, for the run's date and branch; the others have none
    for planned in run.steps:
        call = planned.call
        assert (call is not None) == planned.selected
        if call is not None:
            assert (call.step.name, call.ds, call.run_id, call.branch) == (planned.step, DS, RUN, run.branch)
            assert call.metrics_uri == planned.metrics_uri
    # what the step tasks render from it: a step no requested output needs gets nothing (it skips)
    assert run.commands("segments") == []
    assert run.commands("stock_daily") == [["stock_daily", "--ds", DS, "--lake", settings.lake, *_run()]]


def test_the_emr_steps_are_named_as_the_plan_says():
    nightly = _through_xcom(_nightly(EMR, list(P.OUTPUTS)))
    names = {p.step: p.emr_step_name for p in nightly.steps}
    assert {p.step: nightly.emr_steps(p.step, {})[0]["Name"] for p in nightly.steps} == names
    backfill = _through_xcom(_backfill(EMR))
    planned = sorted(p.emr_step_name for p in backfill.steps)
    assert sorted(step["Name"] for batch in backfill.emr_batches({}) for step in batch) == planned


@pytest.mark.parametrize("settings", [LOCAL, EMR], ids=["local", "emr"])
def test_backfill_report_files_ranged_ingest_under_the_last_date_and_each_date_once(settings):
    run = _through_xcom(_backfill(settings))
    dates = ["2024-06-28", "2024-06-29", DS]
    assert (run.ds, run.branch) == (DS, P.audit_branch(RUN))
    # the ranged ingests first, each date's steps in the spec's order, then one audit of the range
    # and one publish
    *steps, audit, publish = run.steps
    folder = f"{settings.lake}/_runs/metrics"
    assert (audit.step, audit.label) == ("audit", f"2024-06-28..{DS}")
    assert audit.metrics_uri == f"{folder}/dt={DS}/audit.json"
    assert (publish.step, publish.label, publish.metrics_uri) == (
        "publish",
        DS,
        f"{folder}/dt={DS}/publish.json",
    )
    ranged = [p for p in steps if P.STEPS[p.step].ranged]
    daily = [p for p in steps if not P.STEPS[p.step].ranged]
    assert [(p.step, p.label) for p in ranged] == [
        (s.name, f"2024-06-28..{DS}") for s in P.PIPELINE if s.ranged
    ]
    assert {p.metrics_uri.split("/dt=")[1].split("/")[0] for p in ranged} == {DS}
    assert [(p.step, p.label) for p in daily] == [
        (s.name, d) for d in dates for s in P.PIPELINE if not s.ranged
    ]
    assert {p.task_ids for p in run.steps} == {("run_steps",)}
    assert all(p.selected for p in run.steps)
    files = {p.metrics_uri for p in run.steps}
    assert len(files) == len(run.steps)
    assert f"{folder}/dt={DS}/ingest-sales.json" in files
    assert f"{folder}/dt=2024-06-29/graph.json" in files
    for p in run.steps:
        assert p.emr_step_name == (f"{BACKFILL}|{p.label}|{p.step}|{RUN}" if settings.is_emr else None)
        assert p.outputs == (P.STEPS[p.step].produces if p.step in P.STEPS else ())


def test_the_report_takes_tasks_labels_metrics_and_emr_names_from_the_plan_as_they_are():
    """Whatever the plan says of a step, the report says it too: it derives none of it."""
    odd = PlannedStep(
        step="graph",
        label="any label",
        task_ids=("first_task", "state_task"),
        selected=True,
        metrics_uri="file:///elsewhere/graph-metrics.json",
        emr_step_name="a name of the plan's",
        outputs=("referral_graph",),
    )
    skipped = PlannedStep("segments", "any label", ("t",), False, None, None, ())
    plan = RunPlan(ds="2024-01-02", branch="b", steps=(odd, skipped))
    asked = []

    def read(uri: str) -> str:
        asked.append(uri)
        return json.dumps({"rows_out": {"referral_graph": 7}})

    metrics = task.gather_metrics(read, plan.steps)
    assert asked == ["file:///elsewhere/graph-metrics.json"]  # the skipped step's file is not read
    report = model.build_report(
        dag_id="d",
        run_id="r",
        target="emr",
        plan=plan,
        task_states={"first_task": "failed", "state_task": "success"},
        metrics=metrics,
        emr_steps={"a name of the plan's": {"id": "s-1", "queue_seconds": 3.0}},
    )
    graph, segments = report["steps"]
    assert (graph["step"], graph["ds"], graph["task_id"], graph["state"]) == (
        "graph",
        "any label",
        "state_task",
        "success",
    )
    assert (graph["rows_out"], graph["emr_step"]["id"], graph["queue_seconds"]) == (7, "s-1", 3.0)
    assert (segments["state"], report["ds"]) == ("skipped", "2024-01-02")


@pytest.mark.parametrize("lake", ["file:///tmp/lake", "s3://lake-bucket/lake"])
@pytest.mark.parametrize("dates", [(None, DS), ("2024-06-01", DS)], ids=["one-date", "range"])
@pytest.mark.parametrize("step", [*P.PIPELINE, P.AUDIT, P.PUBLISH], ids=lambda s: s.name)
def test_a_job_calls_metrics_file_is_where_the_jobs_own_parser_says_its_command_writes(step, dates, lake):
    """The plan renders a call's command line and its metrics file from one typed value; the jobs'
    own parser and path rule (spark_jobs.cli, spark_jobs.paths), given that command line, are the
    independent answer."""
    from include.run_plan import JobCall
    from spark_jobs import paths
    from spark_jobs.cli import parse_args

    start, ds = dates
    extra = ("--checks-uri", f"{lake}/checks.json") if step is P.AUDIT else ()
    call = JobCall(step, ds=ds, lake=lake, start_ds=start, run_id=RUN, branch="audit_x", extra=extra)
    parsed = parse_args(call.args)
    assert call.metrics_uri == paths.metrics_uri(parsed.lake, parsed.job, parsed.ds, parsed.dataset)
    assert call.metrics_uri == f"{lake}/_runs/metrics/dt={DS}/{METRICS_FILES[step.name]}.json"
    ranged = start is not None and step.ranged
    assert (parsed.start_ds, parsed.end_ds) == ((start, DS) if ranged else (None, None))
    assert parsed.branch == "audit_x"


@pytest.mark.parametrize("settings", [LOCAL, EMR], ids=["local", "emr"])
def test_a_backfill_renders_its_batches_in_the_order_they_run(settings):
    run = _through_xcom(_backfill(settings))
    dates = ["2024-06-28", "2024-06-29", DS]
    waves = P.waves([s for s in P.PIPELINE if not s.ranged])
    order = [[s.name for s in P.PIPELINE if s.ranged]]
    order += [[s.name for s in wave] for _ in dates for wave in waves]
    order += [["audit"], ["publish"]]
    if settings.is_emr:
        batches = run.emr_batches({})
        assert [[step["Name"].split("|")[2] for step in batch] for batch in batches] == order
        assert [next(step["Name"].split("|")[1] for step in batch) for batch in batches][1:-2] == [
            d for d in dates for _ in waves
        ]
    else:
        commands = run.commands()
        assert [c[0] for c in commands] == [P.STEPS[n].job if n in P.STEPS else n for b in order for n in b]
        assert commands[0][:7] == ["ingest", "--dataset", "customers", "--start-ds", dates[0], "--end-ds", DS]


def test_a_plan_pushed_before_the_job_calls_were_part_of_it_still_reads():
    """The run report reads the plans of earlier runs: without calls, batches or setup."""
    old = {
        "ds": DS,
        "branch": "b",
        "steps": [
            {
                "step": "graph",
                "label": DS,
                "task_ids": ["run_graph"],
                "selected": True,
                "metrics_uri": "file:///lake/_runs/metrics/dt=2024-06-30/graph.json",
                "emr_step_name": None,
                "outputs": ["referral_graph"],
            }
        ],
    }
    run = RunPlan.from_xcom(old)
    assert [(p.step, p.metrics_uri, p.call, p.batch) for p in run.steps] == [
        ("graph", old["steps"][0]["metrics_uri"], None, 0)
    ]
    assert (run.spark_server, run.code, run.cluster, run.checks_uri) == (None, None, None, None)
