"""Structure of the DAG files as Airflow parses them: clean imports without I/O, order, teardown, settings.

Every DAG file goes through Airflow's own DagBag, once per target, with every way out of the
process (AWS clients, sockets, Variables, Connections, subprocesses) made to raise: a DAG that
reached for one at parse time shows up as an import error. No dag.test here; these stay fast.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)
from include import pipeline as P
from include.run_local import DAGS_FOLDER
from include.settings import PROJECT_ROOT
from tests.harness.settings import EMR_ENV, SERVERLESS_ENV

NIGHTLY, BACKFILL = "customer_analytics_nightly", "customer_analytics_backfill"
MAINTENANCE, ROLLBACK = "customer_analytics_maintenance", "customer_analytics_rollback"
JANITOR = "customer_analytics_emr_janitor"
# Every DAG of dags/ per target (the janitor has no clusters to clean up locally). The DagBag must
# hold exactly these, so a new DAG cannot escape the policies every DAG is held to below.
DAG_IDS = {
    "local": (NIGHTLY, BACKFILL, MAINTENANCE, ROLLBACK),
    "emr": (NIGHTLY, BACKFILL, MAINTENANCE, ROLLBACK, JANITOR),
    "emr-serverless": (NIGHTLY, BACKFILL, MAINTENANCE, ROLLBACK),
}
EVERY_DAG = [
    pytest.param(target, dag_id, id=f"{target}-{dag_id}") for target, ids in DAG_IDS.items() for dag_id in ids
]
# DAGs whose tasks do not retry, each with why.
NO_RETRIES = {ROLLBACK: "a person triggers it and watches it: a failed rollback is looked at, not retried"}
# Different from the defaults, so a value that did not come from the settings shows.
RETRIES, RETRY_DELAY = 4, 45
TARGET_ENV = {
    "local": {"PIPELINE_TARGET": "local", "PIPELINE_LAKE": "file:///tmp/structure-test-lake"},
    "emr": {
        **EMR_ENV,
        "PIPELINE_EMR_POLL_SECONDS": "45",
        "PIPELINE_EMR_STEP_LOG_LINES": "50",
        "PIPELINE_EMR_STEP_LOG_WAIT_SECONDS": "90",
    },
    "emr-serverless": {
        **SERVERLESS_ENV,
        "PIPELINE_EMR_POLL_SECONDS": "45",
        "PIPELINE_EMR_STEP_LOG_LINES": "50",
        "PIPELINE_EMR_STEP_LOG_WAIT_SECONDS": "90",
    },
}


class ParseTimeIO(AssertionError):
    """Raised by every I/O entry point patched out while the DAG files are parsed."""


def _refuse(what: str):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ParseTimeIO(f"{what} called while parsing a DAG file")

    return refuse


def parse_dags(target: str, mp: pytest.MonkeyPatch) -> Any:
    """Airflow's DagBag over dags/ for `target`, every file imported (safe_mode off), no I/O allowed."""
    import botocore.session
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import Connection, Variable

    for key, value in {**TARGET_ENV[target], "PIPELINE_RETRIES": str(RETRIES)}.items():
        mp.setenv(key, value)
    mp.setenv("PIPELINE_RETRY_DELAY_SECONDS", str(RETRY_DELAY))
    mp.setattr(botocore.session.Session, "create_client", _refuse("botocore create_client"))
    mp.setattr(socket.socket, "connect", _refuse("socket.connect"))
    mp.setattr(socket, "create_connection", _refuse("socket.create_connection"))
    mp.setattr(subprocess.Popen, "__init__", _refuse("subprocess.Popen"))
    mp.setattr(Variable, "get", _refuse("Variable.get"))
    mp.setattr(Connection, "get", _refuse("Connection.get"))
    return DagBag(dag_folder=DAGS_FOLDER, safe_mode=False)


@pytest.fixture(scope="module", params=["local", "emr", "emr-serverless"])
def bag(request: pytest.FixtureRequest) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        found = parse_dags(request.param, mp)
    found.target = request.param
    return found


def test_every_dag_file_imports_without_errors_or_io_for_both_targets(bag):
    assert bag.import_errors == {}
    files = {Path(dag.fileloc).name for dag in bag.dags.values()}
    assert files == {p.name for p in DAGS_FOLDER.glob("*.py") if p.name != "__init__.py"} - (
        # the janitor has nothing to clean up without clusters: no DAG for the other targets
        {"emr_janitor.py"} if bag.target != "emr" else set()
    )
    assert sorted(bag.dags) == sorted(DAG_IDS[bag.target])


def test_a_dag_reaching_for_aws_at_parse_time_is_caught(tmp_path):
    """The guard itself: a file that creates a boto3 client at import is an import error."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad_dag.py").write_text(
        "import boto3\nfrom airflow.sdk import DAG\n"
        "boto3.client('s3', region_name='us-east-1')\ndag = DAG('bad', schedule=None)\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        parse_dags("local", mp)
        found = DagBag(dag_folder=tmp_path, safe_mode=False)
    assert "bad" not in found.dags
    assert "create_client called while parsing" in next(iter(found.import_errors.values()))


def test_the_local_target_parses_without_loading_the_aws_sdk():
    """boto3 and the provider's hooks are most of a DAG file's parse time; local never needs them."""
    import sys

    probe = (
        "import os, sys\n"
        "import tests.harness.airflow_home\n"
        "os.environ['PIPELINE_TARGET'] = 'local'\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})\n"
        "assert bag.import_errors == {}, bag.import_errors\n"
        "sdk = sorted(m for m in ('boto3', 'botocore', 'aiobotocore') if m in sys.modules)\n"
        "print(sorted(bag.dag_ids), sdk)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    out = (
        subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=PROJECT_ROOT,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert out == f"{sorted([NIGHTLY, BACKFILL, MAINTENANCE, ROLLBACK])} []"


def _upstream(dag: Any, task_id: str, prefix: str) -> set[str]:
    return {t for t in dag.task_dict[task_id].upstream_task_ids if t.startswith(prefix)}


def test_nightly_task_order_is_the_specs_dependencies(bag):
    dag = bag.dags[NIGHTLY]
    if bag.target == "local":
        for step in P.PIPELINE:
            assert _upstream(dag, f"run_{step.name}", "run_") == {f"run_{d}" for d in step.depends_on}
            # its command comes from the plan (an empty one skips it); it runs on the run's Spark
            assert dag.task_dict[f"run_{step.name}"].upstream_task_ids >= {"plan", "start_spark"}
            assert "stop_spark" in dag.task_dict[f"run_{step.name}"].downstream_task_ids
            for output in step.produces:
                assert _upstream(dag, f"register_{output}", "run_") == {f"run_{step.name}", "run_publish"}
        # write-audit-publish: the audit after every step, publish after the audit
        assert _upstream(dag, "run_audit", "run_") == {f"run_{s.name}" for s in P.PIPELINE}
        assert dag.task_dict["run_audit"].trigger_rule == "none_failed_min_one_success"
        assert _upstream(dag, "run_publish", "run_") == {"run_audit"}
        assert {"run_audit", "run_publish"} <= dag.task_dict["stop_spark"].upstream_task_ids
    else:
        for step in P.PIPELINE:
            # one task per step: added to the run's cluster once what it needs has ended, then waited on
            assert _upstream(dag, f"run_{step.name}", "run_") == {f"run_{d}" for d in step.depends_on}
            assert dag.task_dict[f"run_{step.name}"].upstream_task_ids >= {
                # the cluster (application) it runs on, read again at every try
                "create_cluster" if bag.target == "emr" else "create_application",
                "upload_code",
                "plan",
            }
            for output in step.produces:
                # the asset event once the run published what the step wrote to its branch
                assert dag.task_dict[f"register_{output}"].upstream_task_ids == {
                    f"run_{step.name}",
                    "run_publish",
                    "plan",
                }
        # write-audit-publish: the audit once every step has finished, publish once it passed
        assert dag.task_dict["steps_done"].upstream_task_ids == {f"run_{s.name}" for s in P.PIPELINE}
        setup = "create_cluster" if bag.target == "emr" else "create_application"
        assert _upstream(dag, "run_audit", "") >= {"steps_done", setup, "plan"}
        assert _upstream(dag, "run_publish", "run_") == {"run_audit"}
    # everything hangs off the plan task
    assert all(
        "plan" in dag.task_dict[t].get_flat_relative_ids(upstream=True) for t in dag.task_ids if t != "plan"
    )


def _group(dag: Any, task_id: str) -> str | None:
    return dag.task_dict[task_id].task_group.group_id


def _nightly_task_ids(target: str) -> set[str]:
    """Every task id of the nightly DAG: the groups change no id."""
    steps = {f"run_{s}" for s in [*P.STEPS, "audit", "publish"]}  # one task per step on both targets
    if target == "emr":
        fixed = {"plan", "preflight", "create_cluster", "upload_code", "steps_done", "terminate_cluster"}
        fixed.add("step_logs")  # the completed steps' log tails, after the teardown
    elif target == "emr-serverless":
        fixed = {"plan", "preflight", "create_application", "upload_code", "steps_done", "delete_application"}
    else:
        fixed = {"plan", "start_spark", "stop_spark"}
    return steps | fixed | {f"register_{o}" for o in P.OUTPUTS} | {"run_report"}


def test_nightly_groups_are_the_specs_steps_and_the_task_ids_are_unchanged(bag):
    dag = bag.dags[NIGHTLY]
    assert set(dag.task_ids) == _nightly_task_ids(bag.target)
    expected: dict[str, str | None] = {f"run_{s}": s for s in [*P.STEPS, "audit", "publish"]}
    expected.update({f"register_{o}": "register" for o in P.OUTPUTS})
    if bag.target != "local":
        expected["steps_done"] = "audit"  # the audit's gate: every step ended, none failed
    # what a run has once, outside every step: the plan, the cluster or Spark application, the report
    expected.update({t: None for t in dag.task_ids if t not in expected})
    assert {t: _group(dag, t) for t in dag.task_ids} == expected
    groups = dag.task_group.get_task_group_dict()
    assert set(groups) == {None, *P.STEPS, "audit", "publish", "register"}
    # a group's ids are not prefixed with it, and its tooltip is what the spec says of the step
    assert all(g.prefix_group_id is False for name, g in groups.items() if name)
    assert groups["features"].tooltip == (
        "features; after ingest_sales, ingest_customers, graph; "
        "produces customer_features, feature_correlation"
    )
    assert groups["ingest_sales"].tooltip == "ingest --dataset sales"
    assert groups["graph"].tooltip == "graph; after ingest_referrals; produces referral_graph"
    # the UI draws the serialized DAG: the groups survive serialization as they are
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert {t.task_id: t.task_group.group_id for t in served.tasks} == expected
    assert served.task_group.get_task_group_dict()["graph"].tooltip == groups["graph"].tooltip


def _group_edges(dag: Any) -> set[tuple[str, str]]:
    """The dependencies between groups: a task of one group upstream of a task of another."""
    return {
        (_group(dag, t.task_id), _group(dag, d))
        for t in dag.tasks
        for d in t.downstream_task_ids
        if None not in (_group(dag, t.task_id), _group(dag, d)) and _group(dag, t.task_id) != _group(dag, d)
    }


def test_nightly_dependencies_between_groups_are_the_specs_depends_on(bag):
    dag = bag.dags[NIGHTLY]
    steps = {(dep, s.name) for s in P.PIPELINE for dep in s.depends_on}
    wap = {(s, "audit") for s in P.STEPS} | {("audit", "publish"), ("publish", "register")}
    producers = {(s.name, "register") for s in P.PIPELINE if s.produces}  # a skipped step skips its events
    # collapsed, the graph has no cycle: the asset events come after publish, not in the steps' groups
    assert _group_edges(dag) == steps | wap | producers


@pytest.mark.parametrize("bag", ["emr"], indirect=True)
def test_emr_step_groups_hold_the_one_task_of_their_step(bag):
    """One task adds the step and waits for it: no add and wait that a Clear could separate."""
    groups = bag.dags[NIGHTLY].task_group.get_task_group_dict()
    for step in [*P.STEPS, "publish"]:
        assert [t.task_id for t in groups[step].topological_sort()] == [f"run_{step}"]
    assert [t.task_id for t in groups["audit"].topological_sort()] == ["steps_done", "run_audit"]


def test_backfill_groups_only_the_asset_events(bag):
    """One task runs every batch of the backfill (run_steps): a group per step would hold nothing."""
    dag = bag.dags[BACKFILL]
    groups = {t: _group(dag, t) for t in dag.task_ids}
    assert {t for t, g in groups.items() if g == "register"} == {f"register_{o}" for o in P.OUTPUTS}
    assert set(groups.values()) == {None, "register"}
    assert _group(dag, "run_steps") is None


@pytest.mark.parametrize("bag", ["emr"], indirect=True)
def test_emr_step_tasks_take_the_settings_and_no_step_task_is_missing(bag):
    from plugins.emr_steps import EmrRunStepOperator

    dag = bag.dags[NIGHTLY]
    for step in [*P.STEPS, "audit", "publish"]:
        run = dag.task_dict[f"run_{step}"]
        assert isinstance(run, EmrRunStepOperator)  # defers while its step runs
        assert run.poll_seconds == 45  # PIPELINE_EMR_POLL_SECONDS (default 30)
        assert run.max_polls == 6 * 3600 // 45  # the step timeout, 6 hours
        # PIPELINE_EMR_STEP_LOG_LINES, PIPELINE_EMR_STEP_LOG_WAIT_SECONDS (defaults 200, 120)
        assert (run.step_log_lines, run.step_log_wait_seconds) == (50, 90)
    run_steps = bag.dags[BACKFILL].task_dict["run_steps"]
    assert (run_steps.step_log_lines, run_steps.step_log_wait_seconds) == (50, 90)
    assert {t for t in dag.task_ids if t.startswith("register_")} == {f"register_{o}" for o in P.OUTPUTS}


@pytest.mark.parametrize("bag", ["emr"], indirect=True)
@pytest.mark.parametrize("dag_id", [NIGHTLY, BACKFILL])
def test_terminate_cluster_is_a_teardown_that_runs_whatever_happened(bag, dag_id):
    dag = bag.dags[dag_id]
    terminate, create = dag.task_dict["terminate_cluster"], dag.task_dict["create_cluster"]
    assert terminate.is_teardown
    assert create.is_setup
    # all_done once its setup succeeded: it runs after failed or skipped steps too
    assert terminate.trigger_rule == "all_done_setup_success"
    assert terminate.upstream_task_ids >= {"create_cluster"}
    # its success does not hide a failed step: the run's state is the steps' state
    assert terminate.on_failure_fail_dagrun is False
    if dag_id == NIGHTLY:
        assert _upstream(dag, "terminate_cluster", "run_") == {f"run_{s.name}" for s in P.PIPELINE} | {
            "run_audit",
            "run_publish",
        }
        # the completed steps' logs are copied after the teardown: no step and no cluster waits for them
        assert dag.task_dict["step_logs"].upstream_task_ids == {"terminate_cluster"}
        assert dag.task_dict["step_logs"].trigger_rule == "all_done"
    else:
        assert "run_steps" in terminate.upstream_task_ids


@pytest.mark.parametrize("bag", ["local"], indirect=True)
@pytest.mark.parametrize("dag_id", [NIGHTLY, BACKFILL])
def test_the_local_spark_application_is_started_as_a_setup_and_stopped_as_a_teardown(bag, dag_id):
    dag = bag.dags[dag_id]
    start, stop = dag.task_dict["start_spark"], dag.task_dict["stop_spark"]
    assert start.is_setup
    assert stop.is_teardown
    assert stop.trigger_rule == "all_done_setup_success"  # it stops the JVM after failed steps too
    jobs = {t for t in dag.task_ids if t.startswith("run_") and t != "run_report"}
    first = {t for t in jobs if not dag.task_dict[t].upstream_task_ids & jobs}  # what starts the run
    assert first
    assert first <= start.downstream_task_ids
    assert jobs <= stop.upstream_task_ids  # audit and publish included: all in the application's life


@pytest.mark.parametrize("bag", ["emr"], indirect=True)
@pytest.mark.parametrize("dag_id", [NIGHTLY, BACKFILL])
def test_preflight_follows_the_plan_and_comes_before_anything_that_creates(bag, dag_id):
    dag = bag.dags[dag_id]
    preflight = dag.task_dict["preflight"]
    assert preflight.upstream_task_ids == {"plan"}
    assert preflight.retries == 0  # a missing piece does not come back by itself
    for creator in ("create_cluster", "upload_code"):
        assert "preflight" in dag.task_dict[creator].get_flat_relative_ids(upstream=True), creator


# ---- policies every DAG of both targets is held to -----------------------------------------
@pytest.mark.parametrize(("bag", "dag_id"), EVERY_DAG, indirect=["bag"])
def test_every_dag_is_tagged_with_the_project_and_its_target(bag, dag_id):
    assert {"customer-analytics", bag.target} <= set(bag.dags[dag_id].tags)


@pytest.mark.parametrize(("bag", "dag_id"), EVERY_DAG, indirect=["bag"])
def test_every_dag_and_task_is_owned_by_the_data_platform(bag, dag_id):
    dag = bag.dags[dag_id]
    assert dag.owner == "data-platform"
    assert {t.owner for t in dag.tasks} == {"data-platform"}


@pytest.mark.parametrize(("bag", "dag_id"), EVERY_DAG, indirect=["bag"])
def test_every_dag_takes_its_retries_and_retry_delay_from_the_settings(bag, dag_id):
    dag = bag.dags[dag_id]
    retries = 0 if dag_id in NO_RETRIES else RETRIES
    assert {k: dag.default_args.get(k) for k in ("retries", "retry_delay")} == {
        "retries": retries,
        "retry_delay": dt.timedelta(seconds=RETRY_DELAY),
    }
    # backing off the same way everywhere (at most 30 minutes apart)
    assert dag.default_args.get("retry_exponential_backoff") == 2.0
    assert dag.default_args.get("max_retry_delay") == dt.timedelta(minutes=30)
    assert max(t.retries for t in dag.tasks) == retries


@pytest.mark.parametrize(("bag", "dag_id"), EVERY_DAG, indirect=["bag"])
def test_every_dag_runs_one_at_a_time_without_catchup_from_a_fixed_utc_start(bag, dag_id):
    dag = bag.dags[dag_id]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.start_date.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("dag_id", [NIGHTLY, BACKFILL, MAINTENANCE])
def test_the_tasks_that_touch_spark_or_aws_retry_and_the_others_fail_at_once(bag, dag_id):
    dag = bag.dags[dag_id]
    # the tasks that touch Spark or AWS retry; validation and reporting fail at once (a retry
    # of a bad parameter or of a report on a failed run cannot help)
    work = [
        t for t in dag.tasks if t.task_id.startswith(("run_", "register_")) and t.task_id != "run_report"
    ] + [
        dag.task_dict[t]
        for t in ("create_cluster", "create_application", "upload_code")
        if t in dag.task_dict
    ]
    assert work
    for t in work:
        assert (t.retries, t.retry_delay) == (RETRIES, dt.timedelta(seconds=RETRY_DELAY)), t.task_id
    assert dag.task_dict["plan"].retries == 0


def test_nightly_runs_at_two_utc_for_the_previous_day_without_catchup(bag):
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    dag = bag.dags[NIGHTLY]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    # the timetable as the scheduler sees it
    timetable = coerce_to_core_timetable(dag.timetable)
    assert type(timetable).__name__ == "CronDataIntervalTimetable"
    assert timetable.serialize() == {"expression": "0 2 * * *", "timezone": "UTC"}
    # the run starting 2024-06-30 02:00 UTC covers the day before: its logical date (ds) is 06-29
    interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2024, 6, 30, 2, tz="UTC"))
    assert (interval.start, interval.end) == (
        pendulum.datetime(2024, 6, 29, 2, tz="UTC"),
        pendulum.datetime(2024, 6, 30, 2, tz="UTC"),
    )
    backfill = bag.dags[BACKFILL]
    assert type(coerce_to_core_timetable(backfill.timetable)).__name__ == "NullTimetable"  # by hand only
    assert backfill.catchup is False


def _param(dag: Any, name: str) -> Any:
    """A copy of the DAG's Param: resolve() keeps the value it accepted."""
    return copy.deepcopy(dag.params.get_param(name))


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("cluster_profile", "huge"),
        ("cluster_profile", ""),
        ("outputs", ["customer_features", "not_an_output"]),
        ("outputs", []),
        ("outputs", ["stock_daily", "stock_daily"]),
        ("outputs", "stock_daily"),
        ("ingest_start_ds", "2024-02-30"),
        ("ingest_start_ds", "30/06/2024"),
        ("ingest_start_ds", "2024-06-30; rm -rf /"),
    ],
)
def test_nightly_params_reject_bad_values_by_their_schema(bag, name, bad):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        _param(bag.dags[NIGHTLY], name).resolve(bad)


@pytest.mark.parametrize(
    ("name", "good"),
    [
        ("cluster_profile", "prod"),
        ("outputs", ["stock_daily", "customer_segments"]),
        ("ingest_start_ds", "2024-02-29"),
        ("ingest_start_ds", None),
    ],
)
def test_nightly_params_accept_good_values(bag, name, good):
    assert _param(bag.dags[NIGHTLY], name).resolve(good) == good


def test_nightly_params_defaults_build_everything_on_the_settings_profile(bag):
    params = bag.dags[NIGHTLY].params
    assert params["outputs"] == list(P.OUTPUTS)
    assert params["cluster_profile"] == "dev"
    assert params["ingest_start_ds"] is None


@pytest.mark.parametrize(
    ("name", "bad"),
    [("start_ds", "2024-13-01"), ("end_ds", None), ("end_ds", "yesterday"), ("cluster_profile", "xl")],
)
def test_backfill_params_reject_bad_values_by_their_schema(bag, name, bad):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        _param(bag.dags[BACKFILL], name).resolve(bad)


def test_backfill_dates_have_no_default_so_the_form_asks_for_them(bag):
    from airflow.sdk.definitions.param import ParamValidationError

    for name in ("start_ds", "end_ds"):
        with pytest.raises(ParamValidationError):
            _param(bag.dags[BACKFILL], name).resolve()


@pytest.mark.parametrize("bag", ["emr"], indirect=True)
def test_clearing_a_step_task_with_the_dialogs_defaults_brings_the_cluster_back(bag):
    """What Airflow clears when a user clears `run_segments` with the Clear dialog's defaults
    (downstream, not upstream): the route's own selection (find_relevant_relatives ->
    partial_subset) on the DAG as the API server holds it. The setup and its teardown come back
    with the step, so the step runs on a new cluster, which is terminated after it."""
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[NIGHTLY]))
    cleared = served.partial_subset(
        task_ids=["run_segments"], include_downstream=True, include_upstream=False, exclude_original=True
    )
    assert set(cleared.task_dict) == {
        "create_cluster",
        "terminate_cluster",
        "step_logs",
        "steps_done",
        "run_audit",
        "run_publish",
        *(f"register_{o}" for o in P.OUTPUTS),
        "run_report",
    }


@pytest.mark.parametrize("target", ["local", "emr"])
def test_the_clickstream_from_kinesis_is_landed_before_its_ingest_and_nothing_else_waits(target):
    """PIPELINE_CLICKSTREAM_KINESIS_STREAM adds one task, parsed without I/O: after the plan (emr:
    after preflight, nothing reaches AWS before it), before the clickstream's ingest only."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_CLICKSTREAM_KINESIS_STREAM", "user-clickstream")
        found = parse_dags(target, mp)
    assert found.import_errors == {}
    dag = found.dags[NIGHTLY]
    land = dag.task_dict["land_clickstream"]
    assert land.upstream_task_ids == ({"plan", "preflight"} if target == "emr" else {"plan"})
    assert land.downstream_task_ids == {"run_ingest_clickstream"}
    assert (land.retries, land.retry_delay) == (RETRIES, dt.timedelta(seconds=RETRY_DELAY))
    assert "land_clickstream" not in found.dags[BACKFILL].task_dict


@pytest.mark.parametrize("bag", ["emr-serverless"], indirect=True)
def test_serverless_step_tasks_are_the_providers_deferrable_job_run_operator_with_the_settings(bag):
    from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator

    from plugins.emr_serverless_batches import ServerlessJobRunBatchesOperator

    dag = bag.dags[NIGHTLY]
    groups = dag.task_group.get_task_group_dict()
    for step in [*P.STEPS, "audit", "publish"]:
        run = dag.task_dict[f"run_{step}"]
        assert isinstance(run, EmrServerlessStartJobOperator)  # extended, not replaced
        assert (run.deferrable, run.cancel_on_kill) == (True, True)  # a kill cancels the job run
        assert run.waiter_delay == 45  # PIPELINE_EMR_POLL_SECONDS
        assert run.waiter_max_attempts == 6 * 3600 // 45  # the step timeout, 6 hours
        assert (run.step_log_lines, run.step_log_wait_seconds) == (50, 90)
        assert run.openlineage_inject_parent_job_info is True
        assert "create_application" in run.upstream_task_ids  # its application, at every try
        if step != "audit":  # one task per step: nothing a Clear could separate from its wait
            assert [t.task_id for t in groups[step].topological_sort()] == [f"run_{step}"]
    run_steps = bag.dags[BACKFILL].task_dict["run_steps"]
    assert isinstance(run_steps, ServerlessJobRunBatchesOperator)
    assert (run_steps.waiter_delay, run_steps.step_log_lines) == (45, 50)


@pytest.mark.parametrize("bag", ["emr-serverless"], indirect=True)
@pytest.mark.parametrize("dag_id", [NIGHTLY, BACKFILL, MAINTENANCE])
def test_delete_application_is_a_teardown_that_runs_whatever_happened(bag, dag_id):
    dag = bag.dags[dag_id]
    delete, create = dag.task_dict["delete_application"], dag.task_dict["create_application"]
    assert (create.is_setup, delete.is_teardown) == (True, True)
    assert delete.trigger_rule == "all_done_setup_success"
    assert delete.on_failure_fail_dagrun is False
    runs = {t for t in dag.task_ids if t.startswith("run_") and t != "run_report"}
    assert runs <= delete.upstream_task_ids
    if dag_id != MAINTENANCE:  # nothing is created before preflight checked the account
        assert dag.task_dict["preflight"].downstream_task_ids >= {"create_application", "upload_code"}


@pytest.mark.parametrize("bag", ["emr-serverless"], indirect=True)
def test_clearing_a_serverless_step_task_with_the_dialogs_defaults_brings_the_application_back(bag):
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[NIGHTLY]))
    cleared = served.partial_subset(
        task_ids=["run_segments"], include_downstream=True, include_upstream=False, exclude_original=True
    )
    assert set(cleared.task_dict) == {
        "create_application",
        "delete_application",
        "steps_done",
        "run_audit",
        "run_publish",
        *(f"register_{o}" for o in P.OUTPUTS),
        "run_report",
    }
