"""The tables' upkeep as DAGs: weekly maintenance, and rolling an output back from the trigger form.

maintenance (weekly, Sunday 04:00 UTC, after the nightly run): one `spark_jobs maintain` step that
expires snapshots older than the retention (PIPELINE_SNAPSHOT_RETENTION_DAYS, default 14, a form
field too), compacts small files and removes orphan files of every table; on a transient EMR
cluster (dev profile) or on the local Spark application, like the pipeline's steps.

rollback (manual): puts one table back to its snapshot before a given run, with pyiceberg on the
catalog (no Spark, no cluster); by default it only says what it would take away.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, get_current_context, task

from include import pipeline as P
from include import wiring
from include.packaging import code_location
from include.params import START_DATE, default_args
from include.planning import setup_of
from include.run_plan import PLAN_XCOM_KEY, JobCall, PlannedStep, RunPlan, step_task_ids
from include.settings import Settings
from plugins.emr_naming import emr_step_name, safe_name

log = logging.getLogger(__name__)

MAINTENANCE_DAG_ID = "customer_analytics_maintenance"
ROLLBACK_DAG_ID = "customer_analytics_rollback"
MAINTENANCE_SCHEDULE = "0 4 * * 0"
TABLES = tuple(
    [f"curated.{o}" for o in P.OUTPUTS]
    + [f"{zone}.{d}" for zone in ("processed", "quarantine") for d in P.DATASETS]
)


def plan_maintenance(
    settings: Settings, *, dag_id: str, run_id: str, ds: str, keep_days: Any, code: dict[str, str] | None
) -> RunPlan:
    """The maintenance run's one job call (and on EMR its cluster), from the data interval's end."""
    ds = P.check_ds(ds, "the data interval's end")
    if not isinstance(keep_days, int) or isinstance(keep_days, bool) or not 1 <= keep_days <= 3650:
        raise P.RunParamError(f"keep_days must be a whole number of days from 1 to 3650, got {keep_days!r}")
    call = JobCall(
        P.MAINTAIN, ds=ds, lake=settings.lake, run_id=run_id, extra=("--keep-days", str(keep_days))
    )
    planned = PlannedStep(
        step=P.MAINTAIN.name,
        label=ds,
        task_ids=step_task_ids(P.MAINTAIN.name),
        selected=True,
        metrics_uri=call.metrics_uri,
        # built as the nightly's steps are: the same code, OpenLineage listener jar and lineage settings
        emr_step_name=emr_step_name(dag_id, run_id, ds, P.MAINTAIN.name) if settings.on_aws else None,
        outputs=(),
        call=call,
    )
    setup = setup_of(
        settings, dag_id=dag_id, run_id=run_id, label=ds, name=f"{dag_id}-{ds}", profile="dev", code=code
    )
    return RunPlan(ds=ds, branch="main", steps=(planned,), **setup)


def build_maintenance_dag(settings: Settings, doc_md: str | None = None) -> DAG:
    with DAG(
        dag_id=MAINTENANCE_DAG_ID,
        schedule=CronDataIntervalTimetable(MAINTENANCE_SCHEDULE, timezone="UTC"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(settings),
        tags=["customer-analytics", settings.target],
        dagrun_timeout=dt.timedelta(hours=6),
        doc_md=doc_md,
        params={
            "keep_days": Param(
                settings.snapshot_retention_days,
                type="integer",
                minimum=1,
                maximum=3650,
                title="Keep snapshots for (days)",
                description="Snapshots committed longer ago than this before the run's date are expired "
                "(the newest five of every table always stay).",
            )
        },
    ) as dag:

        @task(task_id="plan", multiple_outputs=True, retries=0)
        def plan() -> dict[str, Any]:
            """Validate the form and derive the command from the run's data interval."""
            ctx = get_current_context()
            end = ctx.get("data_interval_end") or ctx.get("logical_date")
            if end is None:
                raise P.RunParamError("this DAG needs a data interval (the date comes from it)")
            code = None
            if settings.on_aws:
                from include.packaging import build_bundle

                code = code_location(settings, build_bundle().version)
            planned = plan_maintenance(
                settings,
                dag_id=ctx["dag"].dag_id,
                run_id=ctx["run_id"],
                ds=pendulum.instance(end).in_timezone("UTC").date().isoformat(),
                keep_days=ctx["params"].get("keep_days"),
                code=code,
            )
            return {PLAN_XCOM_KEY: planned.to_xcom()}

        wiring.single_step(settings, plan(), P.MAINTAIN.name)
    return dag


# ---- rollback ------------------------------------------------------------------------------
def build_rollback_dag(settings: Settings, doc_md: str | None = None) -> DAG:
    with DAG(
        dag_id=ROLLBACK_DAG_ID,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**default_args(settings), "retries": 0},  # a person watches it: no retry
        tags=["customer-analytics", settings.target],
        doc_md=doc_md,
        params=_rollback_params(),
    ) as dag:

        @task(task_id="rollback", retries=0)
        def rollback() -> dict[str, Any]:
            """Plan the rollback from the table's history, log it, and apply it when asked."""
            from include import lake

            params = get_current_context()["params"]
            name, before = params["table"], params["before_run"]
            if name not in TABLES:
                raise P.RunParamError(f"table must be one of {list(TABLES)}, got {name!r}")
            catalog = lake.open_catalog(settings.lake, properties=_aws_properties(settings))
            table = catalog.load_table(lake.table_id(settings.lake, name, settings.glue_database_prefix))
            planned = lake.plan_rollback(table, name, safe_name(before))
            log.info("%s", planned.describe())
            if params.get("apply"):
                lake.rollback(table, planned)
                log.info("%s now reads snapshot %s", name, planned.target)
            return {
                "table": name,
                "target_snapshot": planned.target,
                "undone": [c.snapshot_id for c in planned.undone],
                "applied": bool(params.get("apply")),
            }

        rollback()
    return dag


def _rollback_params() -> dict[str, Param]:
    return {
        "table": Param(
            TABLES[0],
            type="string",
            enum=list(TABLES),
            title="Table",
            description="The table to put back (an output, or a processed/quarantine dataset).",
        ),
        "before_run": Param(
            type="string",
            pattern=r"^[A-Za-z0-9_.:+=@-]{1,250}$",
            title="Before run",
            description="The run (its run id, as the grid shows it) whose commits to take away; "
            "later commits go too, and the log lists them.",
        ),
        "apply": Param(
            False,
            type="boolean",
            title="Apply",
            description="Off: only log what the rollback would take away. On: roll back.",
        ),
    }


def _aws_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg's Glue and S3 settings from the DAGs' AWS connection (the AWS targets only)."""
    if not settings.on_aws:
        return {}
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=settings.aws_conn_id, region_name=settings.region, client_type="glue")
    credentials = hook.get_credentials()
    properties = {
        "client.region": hook.conn_region_name or "us-east-1",
        "client.access-key-id": credentials.access_key,
        "client.secret-access-key": credentials.secret_key,
    }
    if credentials.token:
        properties["client.session-token"] = credentials.token
    endpoint = hook.conn_config.endpoint_url
    if endpoint:  # a stand-in (tests) for both services
        properties.update({"glue.endpoint": endpoint, "s3.endpoint": endpoint})
    return properties
