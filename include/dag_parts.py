"""The parts every pipeline DAG is built from, whichever target runs its steps: the task groups
(one per step of the spec, then audit, publish and register) and their tooltips, the
`register_<output>` tasks with their assets, and how long a step may run.

`include.wiring` (the order of a run) builds from here, as the targets (`include.targets`) do;
this module imports neither of them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, TaskGroup, get_current_context, task

from include import pipeline as P
from include.settings import Settings
from plugins.emr_naming import safe_name
from spark_jobs.catalog import WAREHOUSE

STEP_TIMEOUT = timedelta(hours=6)  # a step running longer than this is stuck, not slow


# ---- task groups ---------------------------------------------------------------------------
REGISTER_GROUP = "register"
AUDIT_TOOLTIP = "audit: the checks on what the run's steps wrote to its branch, once every step ended"
PUBLISH_TOOLTIP = "publish: main := the run's branch, per table, once the audit passed"


def step_tooltip(step: P.Step) -> str:
    """What the spec says of a step, for its group's tooltip: its job, what it needs, what it produces."""
    parts = [" ".join((step.job, *step.options))]
    if step.depends_on:
        parts.append(f"after {', '.join(step.depends_on)}")
    if step.produces:
        parts.append(f"produces {', '.join(step.produces)}")
    return "; ".join(parts)


def step_group(step: P.Step, tooltip: str | None = None) -> TaskGroup:
    """The task group of one step (use it as `with`): its id is the step's name; the ids of the
    tasks in it stay unprefixed (`run_graph`, not `graph.run_graph`)."""
    return TaskGroup(step.name, tooltip=tooltip or step_tooltip(step), prefix_group_id=False)


def register_group() -> TaskGroup:
    """The `register_<output>` tasks: the asset events, once the run published."""
    return TaskGroup(
        REGISTER_GROUP,
        tooltip="each published output's Airflow asset event, with the table's new snapshot",
        prefix_group_id=False,
    )


# ---- assets and their events -------------------------------------------------------------
def output_asset(settings: Settings, output: str) -> Asset:
    """The Asset of a curated output: its Iceberg table, named by where the table lives.

    `LAKE/warehouse/curated/<output>` (s3:// or file://) on both targets. Airflow wants an asset's
    name and URI to be unique together: a fixed name with a per-lake URI would make the asset of
    one lake (or target) inactive once another is parsed. Each event carries the table's new
    snapshot id (`register_output`).
    """
    uri = f"{settings.lake}/{WAREHOUSE}/curated/{output}"
    return Asset(name=uri, uri=uri, group="customer-analytics")


def table_asset_extra(metrics: list[dict[str, Any]], table: str) -> dict[str, Any] | None:
    """What an asset event says of a table's commits in the jobs' metrics.

    The last commit is the table's new snapshot; a task that wrote several dates (a backfill)
    lists each date's snapshot too. None when no job wrote the table.
    """
    commits = [(m.get("ds"), m["tables"][table]) for m in metrics if table in (m.get("tables") or {})]
    if not commits:
        return None
    ds, last = commits[-1]
    extra: dict[str, Any] = {
        "table": table,
        "snapshot_id": last["snapshot_id"],
        "ds": ds,
        "rows": last["rows"],
    }
    if len(commits) > 1:
        extra["snapshots"] = {str(d): c["snapshot_id"] for d, c in commits}
    return extra


def register_output(settings: Settings, output: str, run_plan: Any):
    """`register_<output>`: the output's asset event once the run published, with its new snapshot.

    `run_plan` (the plan task's `RunPlan` XCom) names, for each date the producing step ran, the
    metrics file its job left (spark_jobs/cli.py) with its commits; a file left by another run
    does not count. The table itself is registered by the catalog when the job commits (Glue on
    EMR): this only tells Airflow (data-aware schedules, lineage) which snapshot is new.
    """
    from include.lake_files import lake_io
    from include.run_plan import RunPlan

    asset = output_asset(settings, output)
    producer = P.PRODUCER[output]
    table = f"curated.{output}"

    @task(task_id=f"register_{output}", outlets=[asset])
    def register(run_plan: dict[str, Any]) -> dict[str, Any] | None:
        ctx = get_current_context()
        read, _ = lake_io(settings.aws_conn_id if settings.on_aws else None, settings.region)
        planned = [p for p in RunPlan.from_xcom(run_plan).steps if p.step == producer and p.selected]
        if not planned:
            raise RuntimeError(f"the run's plan has no {producer} step: {output} was not built")
        found = []
        for step in planned:
            text = read(step.metrics_uri)
            record = json.loads(text) if text else None
            if record is None or record.get("run_id") != safe_name(ctx["run_id"]):
                raise RuntimeError(f"step {producer} left no metrics of this run for {step.label}")
            found.append(record)
        extra = table_asset_extra(found, table)
        if extra is not None:
            ctx["outlet_events"][asset].extra.update(extra)
        return extra

    return register(run_plan)
