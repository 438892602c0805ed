"""plugins/openlineage_steps.py against the amazon provider's own injection of a task's OpenLineage
run into EMR steps (EmrAddStepsOperator's private method): same steps in, same steps out. A
provider release that renames the method, changes its arguments or what it writes fails here."""

from __future__ import annotations

import copy
import inspect
import logging
from types import SimpleNamespace

import pytest
from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator
from airflow.providers.openlineage.utils import spark as ol_spark

from plugins import openlineage_steps
from plugins.openlineage_steps import with_parent_job_information

PARENT = {
    "spark.openlineage.parentJobNamespace": "airflow_ns",
    "spark.openlineage.parentJobName": "nightly.run_graph",
    "spark.openlineage.parentRunId": "01900000-0000-7000-8000-000000000001",
    "spark.openlineage.rootParentRunId": "01900000-0000-7000-8000-000000000002",
    "spark.openlineage.rootParentJobName": "nightly",
    "spark.openlineage.rootParentJobNamespace": "airflow_ns",
}
CONTEXT = {"ti": object()}


def _step(name: str, args: list[str], jar: str = "command-runner.jar") -> dict:
    return {"Name": name, "ActionOnFailure": "CONTINUE", "HadoopJarStep": {"Jar": jar, "Args": args}}


STEPS = [
    _step("submit", ["spark-submit", "--deploy-mode", "cluster", "s3://c/entry.py", "graph", "--ds", "d"]),
    _step("by path", ["/usr/bin/spark-submit", "job.py"]),
    _step("example", ["run-example", "SparkPi"]),
    _step("has a parent", ["spark-submit", "--conf", "spark.openlineage.parentRunId=x", "job.py"]),
    _step("not spark", ["hadoop-streaming", "-files", "a"]),
    _step("other jar", ["spark-submit", "job.py"], jar="s3://bucket/custom.jar"),
    _step("no args", []),
]


@pytest.fixture
def parent_run(monkeypatch):
    """The task's run as OpenLineage's provider derives it from the context (stubbed: a context
    without a real task instance), for both the provider's method and the adapter."""
    seen = []

    def parent(context):
        seen.append(context)
        return dict(PARENT)

    monkeypatch.setattr(ol_spark, "_get_parent_job_information_as_spark_properties", parent)
    return seen


def test_the_adapter_builds_on_the_providers_public_function_not_its_import_fallback():
    public = openlineage_steps.inject_parent_job_information_into_spark_properties
    assert public is ol_spark.inject_parent_job_information_into_spark_properties


def test_the_providers_private_method_still_has_the_signature_the_adapter_mirrors():
    method = EmrAddStepsOperator._inject_openlineage_parent_job_information
    assert list(inspect.signature(method).parameters) == ["self", "steps", "context"]


def test_the_adapter_changes_the_steps_exactly_as_the_providers_method(parent_run):
    given = copy.deepcopy(STEPS)
    ours = with_parent_job_information(given, CONTEXT, logging.getLogger("test"))
    theirs = EmrAddStepsOperator._inject_openlineage_parent_job_information(
        SimpleNamespace(log=logging.getLogger("provider")), copy.deepcopy(STEPS), CONTEXT
    )
    assert ours == theirs
    assert given == STEPS  # the caller's steps are not changed in place
    assert parent_run == [CONTEXT, CONTEXT]
    # and what both do, written out: the parent right after spark-submit / run-example only
    conf = [a for key, value in PARENT.items() for a in ("--conf", f"{key}={value}")]
    args = [s["HadoopJarStep"]["Args"] for s in ours]
    assert args[0] == [
        "spark-submit",
        *conf,
        "--deploy-mode",
        "cluster",
        "s3://c/entry.py",
        "graph",
        "--ds",
        "d",
    ]
    assert args[1] == ["/usr/bin/spark-submit", *conf, "job.py"]
    assert args[2] == ["run-example", *conf, "SparkPi"]
    assert args[3:] == [s["HadoopJarStep"]["Args"] for s in STEPS[3:]]


def test_without_a_parent_run_the_steps_stay_as_they_are(monkeypatch):
    monkeypatch.setattr(ol_spark, "_get_parent_job_information_as_spark_properties", lambda context: {})
    assert with_parent_job_information(STEPS, CONTEXT, logging.getLogger("test")) == STEPS
    assert (
        EmrAddStepsOperator._inject_openlineage_parent_job_information(
            SimpleNamespace(log=logging.getLogger("provider")), STEPS, CONTEXT
        )
        == STEPS
    )
