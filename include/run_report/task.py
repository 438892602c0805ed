"""The `run_report` task, the DAGs' last: reads the run's plan, the tasks' states, the jobs' metrics,
the audit's results and on EMR the cluster (on EMR Serverless the job runs: `serverless`, priced by
`serverless_cost`), builds the report (`model`), on AWS publishes its numbers to CloudWatch
(`metrics`), writes report.json and report.html to the lake and logs the table (`render`); then
fails if a step failed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from include.lake_files import lake_io, report_dates, report_uri
from include.run_plan import PLAN_XCOM_KEY, PlannedStep, RunPlan
from include.run_report import metrics as M
from include.run_report.cost import cluster_usage, emr_step_timings, load_prices, read_emr, run_attempts
from include.run_report.model import FAILED_STATES, TREND_RUNS, add_links, build_report, run_timing, trends
from include.run_report.render import format_table, html_page
from include.run_report.serverless_cost import applications_usage, load_serverless_prices
from include.settings import Settings
from spark_jobs import paths

PAGE_XCOM_KEY = "report_page"  # run_report's XCom naming its page, read by plugins/run_report_view.py

log = logging.getLogger(__name__)


# ---- what the report reads -----------------------------------------------------------------
def chart_data(lake: str, ds: str) -> dict[str, Any]:
    """What the page charts, from the curated outputs of `ds` (pyiceberg; no Spark)."""
    from include.lake import read_date as read_partition

    out: dict[str, Any] = {}
    segments = read_partition(lake, "curated", "customer_segments", ds)
    if segments is not None and not segments.empty:
        by = segments.groupby("segment").agg(
            customers=("customer_id", "count"), spent=("total_spent", lambda s: float(s.astype(float).mean()))
        )
        out["segments"] = [(f"segment {k}", int(r.customers), r.spent) for k, r in by.sort_index().iterrows()]
    # Every date of the 30 days up to ds that was written (one per day the pipeline ran).
    first = dt.date.fromisoformat(ds) - dt.timedelta(days=29)
    series: dict[str, list[tuple[str, float]]] = {}
    for day in (first + dt.timedelta(days=k) for k in range(30)):
        rolling = read_partition(lake, "curated", "sales_rolling_30d", day.isoformat())
        if rolling is not None:
            for r in rolling.itertuples():
                series.setdefault(r.region, []).append((day.isoformat(), float(r.rolling_30d_sum)))
    if series:
        out["rolling"] = series
    graph = read_partition(lake, "curated", "referral_graph", ds)
    if graph is not None and not graph.empty:
        top = graph.sort_values(["pagerank", "customer_id"], ascending=[False, True]).head(10)
        out["pagerank"] = [(r.customer_id, float(r.pagerank)) for r in top.itertuples()]
    return out


def earlier_reports(
    read: Callable[[str], str | None], lake: str, dag_id: str, ds: str, dates: Sequence[str]
) -> list[dict[str, Any]]:
    """The reports of the TREND_RUNS - 1 latest dates before `ds` (one a date: its last run's)."""
    out = []
    for day in sorted(d for d in dates if d < ds)[-(TREND_RUNS - 1) :]:
        text = read(report_uri(lake, dag_id, day))
        if not text:
            continue
        try:
            out.append(json.loads(text))
        except ValueError:
            log.warning("%s is not a report; left out of the trends", report_uri(lake, dag_id, day))
    return out


def read_checks(read: Callable[[str], str | None], lake: str, ds: str, branch: str | None) -> list | None:
    """The run's audit results, None when its audit did not run (or left none)."""
    if not branch:
        return None
    text = read(paths.audit_uri(lake, ds, branch))
    return json.loads(text) if text else None


def gather_metrics(
    read: Callable[[str], str | None], planned: Sequence[PlannedStep]
) -> dict[tuple[str, str], dict | None]:
    """(step, label) -> the metrics its job left where the plan says, None when there are none
    (or the step was not selected)."""
    out = {}
    for p in planned:
        text = read(p.metrics_uri) if p.selected and p.metrics_uri else None
        out[(p.step, p.label)] = json.loads(text) if text else None
    return out


# ---- the task ------------------------------------------------------------------------------
def add_run_report(settings: Settings, dag: Any) -> Any:
    """Add `run_report` as the last task of `dag` (call it inside `with dag`): it runs whatever happened
    (trigger rule all_done), writes and logs the report, then fails if a step failed, so the
    run's state stays the steps' state (a run's state is its last tasks')."""
    from airflow.sdk import get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException

    @task(task_id="run_report", trigger_rule="all_done", retries=0)
    def run_report() -> dict[str, Any]:
        ctx = get_current_context()
        ti, dag = ctx["ti"], ctx["dag"]
        planned = ti.xcom_pull(task_ids="plan", key=PLAN_XCOM_KEY)
        if planned is None:
            raise AirflowFailException("the plan task did not finish; there is nothing to report")
        plan = RunPlan.from_xcom(planned)
        ds = plan.ds
        states = ti.get_task_states(dag_id=dag.dag_id, run_ids=[ctx["run_id"]]).get(ctx["run_id"], {})
        read, write = lake_io(settings.aws_conn_id, settings.region)
        emr_steps = cluster = attempts = serverless = job_runs = None
        if settings.is_emr:
            emr_steps, cluster, attempts = _emr_part(
                settings, ti.xcom_pull(task_ids="create_cluster"), dag.dag_id, ctx["run_id"]
            )
        elif settings.is_serverless:  # the job runs, listed as the steps are (and their billing)
            from include.run_report.serverless import serverless_part

            emr_steps, serverless = serverless_part(settings, dag.dag_id, ctx["run_id"])
            if serverless is not None:  # what each job run cost, at the region's prices
                architecture = ((plan.serverless or {}).get("application") or {}).get("architecture")
                job_runs = applications_usage(
                    serverless["applications"],
                    load_serverless_prices(),
                    region=settings.region,
                    architecture=architecture,
                )
        report = build_report(
            dag_id=dag.dag_id,
            run_id=ctx["run_id"],
            target=settings.target,
            plan=plan,
            task_states=states,
            metrics=gather_metrics(read, plan.steps),
            emr_steps=emr_steps,
            cluster=cluster,
            checks=read_checks(read, settings.lake, ds, plan.branch),
            attempts=attempts,
            job_runs=job_runs,
        )
        if settings.is_serverless:
            report["emr_serverless"] = serverless
        dag_run = ctx["dag_run"]
        report["run"] = run_timing(
            started_at=getattr(dag_run, "start_date", None),
            finished_at=dt.datetime.now(dt.UTC),  # a measurement, not a date the run builds
            run_type=getattr(dag_run, "run_type", None),
            logical_date=getattr(dag_run, "logical_date", None),
            deadline_utc=settings.alerts.deadline_utc,
        )
        report["cloudwatch"] = _cloudwatch(settings, report)
        add_links(report, airflow_base=_airflow_base(ti), region=(cluster or {}).get("region"))
        uri = report_uri(settings.lake, dag.dag_id, ds)
        write(uri, json.dumps(report, indent=2, sort_keys=True, default=str))
        log.info("\n%s\nreport: %s", format_table(report), uri)
        page = _write_page(settings, dag.dag_id, ds, report, read, write)
        # where the UI's "Run report" tab finds the page (pushed before a failed run fails)
        aws = {"aws_conn_id": settings.aws_conn_id, "region": settings.region} if settings.on_aws else {}
        ti.xcom_push(key=PAGE_XCOM_KEY, value={"json": uri, "html": page, **aws})
        # Teardowns (terminate_cluster) do not decide a run's state; the steps do.
        teardowns = {t.task_id for t in dag.tasks if getattr(t, "is_teardown", False)}
        failed = sorted(t for t, s in states.items() if s in FAILED_STATES and t not in teardowns)
        if failed:
            raise AirflowFailException(f"the run failed: {', '.join(failed)} (report: {uri})")
        return {"report": uri, "state": report["state"]}

    ends = [t for t in dag.tasks if not t.downstream_list]
    report = run_report()
    ends >> report.operator
    return report


def _airflow_base(ti: Any) -> str | None:
    """The UI's address, as Airflow itself puts it in task log links ([api] base_url)."""
    try:
        return str(ti.log_url).split("/dags/", 1)[0] or None
    except Exception:  # a link is worth having, not worth failing the report for
        log.exception("no Airflow address for the report's links")
        return None


def _write_page(
    settings: Settings,
    dag_id: str,
    ds: str,
    report: dict[str, Any],
    read: Callable[[str], str | None],
    write: Callable[[str, str], None],
) -> str | None:
    """report.html beside report.json (S3 on EMR): the run, its trends, a local lake's charts.
    Its URI, None when it could not be written (the JSON report stands either way)."""
    page = report_uri(settings.lake, dag_id, ds, "report.html")
    charts: dict[str, Any] = {}
    if settings.lake.startswith("file://"):  # the outputs' charts read the local catalog
        try:
            charts = chart_data(settings.lake, ds)
        except Exception:  # a chart problem must not hide the report or fail the run
            log.exception("no charts for %s", page)
    try:
        dates = report_dates(settings.lake, dag_id, settings.aws_conn_id, settings.region)
        trend = trends([*earlier_reports(read, settings.lake, dag_id, ds, dates), report])
        write(page, html_page(report, charts, trend))
    except Exception:
        log.exception("could not write %s", page)
        return None
    log.info("report page: %s", page)
    return page


def _cloudwatch(settings: Settings, report: dict[str, Any]) -> dict[str, Any]:
    """The run's metrics (include/run_report/metrics.py), published on AWS when the setting is on;
    what was (or, locally, would be) published stays in the report. A failed publish is logged and
    recorded, never fails the run: the report stands, and the stack's "missing" alarm notices."""
    data = M.metric_data(report)
    out: dict[str, Any] = {
        "namespace": settings.cloudwatch_namespace,
        "published": False,
        "metric_data": data,
    }
    if not settings.on_aws:
        out["reason"] = "local target: no AWS call"
        return out
    if not settings.cloudwatch_metrics:
        out["reason"] = "PIPELINE_CLOUDWATCH_METRICS=false"
        return out
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from botocore.config import Config

    from plugins.emr_client import AWS_RETRY_CONFIG

    try:
        client = AwsBaseHook(
            aws_conn_id=settings.aws_conn_id,
            region_name=settings.region,
            client_type="cloudwatch",
            config=Config(**AWS_RETRY_CONFIG),
        ).conn
        sent = M.publish(
            client,
            settings.cloudwatch_namespace,
            data,
            dt.datetime.fromisoformat(report["run"]["finished_at"]),
        )
    except Exception as exc:  # the numbers stay in the report; the alarms notice the missing run
        log.exception("could not publish the run's metrics to CloudWatch")
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    log.info("published %d metrics to CloudWatch namespace %s", sent, settings.cloudwatch_namespace)
    out["published"] = True
    return out


def _emr_part(
    settings: Settings, cluster_id: str | None, dag_id: str, run_id: str
) -> tuple[dict | None, dict | None, dict | None]:
    """The run's current cluster (`create_cluster`'s XCom) with its steps' timings, and every
    cluster of the run (found by its tags, oldest first; a repaired run has one per attempt) with
    the run's steps on each and their cost (`cost.run_attempts`)."""
    if not cluster_id:
        return None, None, None
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    from plugins.emr_client import ALL_CLUSTER_STATES, AWS_RETRY_CONFIG, tagged_clusters
    from plugins.emr_naming import run_of, run_tags, safe_name

    # throttled calls retried with backoff, as every other EMR call of the run
    client = EmrHook(
        aws_conn_id=settings.aws_conn_id, region_name=settings.region, config=AWS_RETRY_CONFIG
    ).conn
    prices, region = load_prices(), client.meta.region_name
    run = (safe_name(dag_id), safe_name(run_id))
    try:
        found = sorted(
            tagged_clusters(client, run_tags(dag_id, run_id), states=ALL_CLUSTER_STATES),
            key=lambda c: c["Status"]["Timeline"]["CreationDateTime"],
        )
        ids = [c["Id"] for c in found] + ([cluster_id] if cluster_id not in {c["Id"] for c in found} else [])
        read = []
        for each in ids:
            described, instances, steps = read_emr(client, each)
            usage = cluster_usage(described, instances, steps, prices)
            usage["region"] = region  # for the report's console links
            read.append((usage, [s for s in steps if run_of(s["Name"]) == run], steps))
    except Exception:  # the numbers are worth having, not worth failing a run for
        log.exception("could not read the EMR clusters of run %s for the report", run_id)
        return None, None, None
    usage, _, steps = next(r for r in read if r[0]["cluster_id"] == cluster_id)
    return emr_step_timings(steps), usage, run_attempts([(u, mine) for u, mine, _ in read])
