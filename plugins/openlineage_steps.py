"""A task's OpenLineage run as the parent run of the Spark jobs in the EMR steps it adds.

The amazon provider's `EmrAddStepsOperator` does this in a private method
(`_inject_openlineage_parent_job_information`); the step operators here are not that operator,
so this module does the same through the public function that method is built on
(`airflow.providers.common.compat.openlineage.utils.spark`): `--conf spark.openlineage.parent*`
right after `spark-submit` in every command-runner `spark-submit` step that has no parent yet.
tests/plugins/test_openlineage_steps.py holds it to the provider's method (same steps in, same
steps out), so a provider upgrade that changes what the method does fails there.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from airflow.providers.common.compat.openlineage.utils.spark import (
    inject_parent_job_information_into_spark_properties,
)

_SPARK_COMMANDS = frozenset({"run-example", "spark-submit"})


def with_parent_job_information(steps: list[dict], context: Any, log: logging.Logger) -> list[dict]:
    """`steps` (boto3 `Steps` items; not changed) with this task's run as their jobs' parent."""
    parent = inject_parent_job_information_into_spark_properties({}, context)
    if not parent:  # OpenLineage off, or the provider missing
        return steps
    conf = [argument for key, value in parent.items() for argument in ("--conf", f"{key}={value}")]
    result = copy.deepcopy(steps)
    for step in result:
        jar_step = step.get("HadoopJarStep", {})
        args = jar_step.get("Args", [])
        if jar_step.get("Jar", "").rsplit("/", 1)[-1] != "command-runner.jar" or not args:
            continue
        if args[0].rsplit("/", 1)[-1] not in _SPARK_COMMANDS:
            continue
        if any("spark.openlineage.parent" in argument for argument in args):
            log.info("Step %s already names its OpenLineage parent: left as it is", step.get("Name", ""))
            continue
        jar_step["Args"] = [args[0], *conf, *args[1:]]
    return result
