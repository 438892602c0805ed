"""SparkJobSubprocessOperator: argument lists run in order, metrics collected, exit codes mapped.

A stand-in job module (plain Python, no Spark) plays the job CLI, so these run in a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.harness.airflow_home  # noqa: F401  (Airflow's home before Airflow is imported)

FAKE_JOB = """
import json, sys
args = sys.argv[1:]
with open(sys.argv[0].rsplit("/", 2)[0] + "/calls.jsonl", "a") as f:
    f.write(json.dumps(args) + "\\n")
print("starting", args[0])
if args[0] == "bad":
    print("fakejobs: JobInputError: no landing partition for 2024-06-30", file=sys.stderr)
    sys.exit(2)
if args[0] == "crash":
    print("Traceback ...", file=sys.stderr)
    print("java.lang.OutOfMemoryError: Java heap space", file=sys.stderr)
    sys.exit(1)
print("SPARK_JOBS_METRICS " + json.dumps({"job": args[0], "rows_out": {args[0]: len(args)}}))
"""


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    pkg = tmp_path / "fakejobs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_JOB)
    return tmp_path


def _operator(job_dir: Path, commands):
    from plugins.spark_job import SparkJobSubprocessOperator

    return SparkJobSubprocessOperator(
        task_id="t", commands=commands, module="fakejobs", cwd=str(job_dir), env={"EXTRA": "1"}
    )


def _calls(job_dir: Path) -> list[list[str]]:
    path = job_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_commands_run_in_order_and_their_metrics_are_returned(job_dir):
    commands = [["ingest", "--ds", "2024-06-30"], ["graph", "--ds", "2024-06-30", "--lake", "file:///x"]]
    metrics = _operator(job_dir, commands).execute({})
    assert _calls(job_dir) == commands
    assert metrics == [
        {"job": "ingest", "rows_out": {"ingest": 3}},
        {"job": "graph", "rows_out": {"graph": 5}},
    ]


def test_bad_input_fails_without_retry_with_the_jobs_one_line_reason_and_stops_the_list(job_dir):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as err:
        _operator(job_dir, [["bad", "--ds", "2024-06-30"], ["graph"]]).execute({})
    assert str(err.value) == (
        "bad exited with code 2: fakejobs: JobInputError: no landing partition for 2024-06-30"
    )
    assert _calls(job_dir) == [["bad", "--ds", "2024-06-30"]]


def test_other_failures_may_be_retried_and_name_the_last_line(job_dir):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException) as err:
        _operator(job_dir, [["crash"]]).execute({})
    assert not isinstance(err.value, AirflowFailException)
    assert str(err.value) == "crash exited with code 1: java.lang.OutOfMemoryError: Java heap space"


@pytest.mark.parametrize("commands", ["graph --ds 2024-06-30", [["graph", 3]], ["graph"], None])
def test_anything_but_a_list_of_argument_lists_is_refused_before_running(job_dir, commands):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="list of lists of strings"):
        _operator(job_dir, commands).execute({})
    assert _calls(job_dir) == []


def test_arguments_reach_the_job_verbatim_without_a_shell(job_dir):
    hostile = ["graph", "--ds", "2024-06-30; touch pwned", "$(id)", "`id`"]
    _operator(job_dir, [hostile]).execute({})
    assert _calls(job_dir) == [hostile]
    assert not (job_dir / "pwned").exists()


def test_an_empty_command_list_skips_the_task_without_starting_a_process(job_dir):
    """The plan gives a step no command when no requested output needs it."""
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="do not need this step"):
        _operator(job_dir, []).execute({})
    assert _calls(job_dir) == []
