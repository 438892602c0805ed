"""Repairing a failed EMR Serverless nightly in the same run, as the UI's Clear does it (dag.test()'s
loop against moto, the Clear through the public API's own route function): the failed step task
cleared with the Clear dialog's defaults brings its setup back, a new application runs only the
failed step's job run, the audit's and the publish's, and is deleted; nothing that had succeeded
runs again; the Repair run tab would clear the same tasks (its rule, `plan_repair`, names them)."""

from __future__ import annotations

import pytest

from include import pipeline as P
from include.run_local import DAG_FILES, load_dag, run_dag_test
from plugins.emr_naming import parse_emr_step_name
from tests.harness.airflow_runs import clear_tasks_as_the_ui_does, resume_run
from tests.harness.aws_fakes import fails_once
from tests.harness.dag_runs import record_run
from tests.harness.serverless_fakes import JobRunPlayer, calls, job_run_states
from tests.harness.settings import SERVERLESS_ENV

pytestmark = pytest.mark.ops  # two whole DAG runs (a minute apiece on 2 cores): make test-ops

LAKE = SERVERLESS_ENV["PIPELINE_LAKE"]
DS = "2024-07-03"
REGISTERS = tuple(f"register_{o}" for o in P.OUTPUTS)


@pytest.fixture
def nightly(aws, airflow_db, monkeypatch):
    """The nightly DAG parsed under the emr-serverless target's test settings, as Airflow would."""
    for key, value in SERVERLESS_ENV.items():
        monkeypatch.setenv(key, value)
    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None  # as run_dag_test: dag.test() of Airflow 3.3.2 cannot end a run that has one
    return dag


def _by_application() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for app, name, state in job_run_states():
        out.setdefault(app, []).append((parse_emr_step_name(name)["step"], state))
    return out


def test_a_failed_job_run_is_repaired_by_clearing_its_task_on_a_new_application(nightly, aws):
    with JobRunPlayer(aws, fail=fails_once("segments")) as player:
        run_id = run_dag_test(nightly, DS, {}).run_id
        first = record_run(nightly, run_id)
        assert first.state == "failed", first.task_states
        assert first.task_states["run_segments"] == "failed"
        (old, old_runs), *more = _by_application().items()
        assert more == []
        started = len(calls(aws, "StartJobRun"))

        cleared = clear_tasks_as_the_ui_does(nightly.dag_id, run_id, ["run_segments"])
        state = resume_run(nightly, run_id)
    assert player.errors == []
    assert cleared == sorted(
        {"run_segments", "create_application", "delete_application", "steps_done"}
        | {"run_audit", "run_publish", "run_report", *REGISTERS}
    )
    repaired = record_run(nightly, run_id)
    assert state == "success", repaired.task_states
    assert set(repaired.task_states.values()) == {"success"}
    runs = _by_application()
    assert list(runs) == [old, next(a for a in runs if a != old)]  # exactly one more application
    new = list(runs)[1]
    assert runs[new] == [("segments", "SUCCESS"), ("audit", "SUCCESS"), ("publish", "SUCCESS")]
    assert sorted(s for s, _ in old_runs) == sorted(P.STEPS)  # the audit never started there
    assert dict(old_runs)["segments"] == "FAILED"
    assert len(calls(aws, "StartJobRun")) == started + 3  # one job run per step per attempt
    succeeded = [name for name, state in player.finished if state == "SUCCESS"]
    assert len(succeeded) == len(set(succeeded))  # nothing that had succeeded ran again
    client = aws.client("emr-serverless")
    for app in (old, new):
        assert client.get_application(applicationId=app)["application"]["state"] == "TERMINATED"
    assert sorted(repaired.asset_events) == sorted(f"{LAKE}/warehouse/curated/{o}" for o in P.OUTPUTS)
