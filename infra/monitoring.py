"""The stack's monitoring of the run report's metrics (include/run_report/metrics.py): the
CloudWatch dashboard, the alarms and the SNS topic they and Airflow's alerts go to."""

from __future__ import annotations

from typing import Any

from deployment import iam
from include import pipeline as P
from include.checks import AuditSettings
from include.run_report import metrics as M
from infra.cfn import PROJECT_TAG, as_json
from plugins.emr_naming import PROJECT

NIGHTLY, BACKFILL = P.NIGHTLY_DAG_ID, P.BACKFILL_DAG_ID
RUN_COST_BUDGET = 5.0  # USD: a dev nightly costs well under $1 (README), prod's a few dollars
HOUR, DAY = 3600, 86400
# A scheduled nightly finishes at most once a day: this many hours without one is a missed night.
MISSING_AFTER_HOURS = 26


def _row(
    name: str, dag_id: str = NIGHTLY, step: str | None = None, output: str | None = None, **options: Any
) -> list:
    """A dashboard metric row: namespace, name, the dimensions' names and values, options."""
    identity = M.metric(name, dag_id, step, output)
    dims = [part for d in identity["Dimensions"] for part in (d["Name"], d["Value"])]
    return [{"Ref": "MetricsNamespace"}, name, *dims, *([options] if options else [])]


def _widget(
    title: str, x: int, y: int, w: int, h: int, rows: list, stat: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": w,
        "height": h,
        "properties": {
            "title": title,
            "region": {"Ref": "AWS::Region"},
            "view": "timeSeries",
            "stacked": False,
            "period": DAY,
            "stat": stat,
            "metrics": rows,
            **extra,
        },
    }


def dashboard_body() -> dict[str, Any]:
    """The pipeline's dashboard (CloudWatch's dashboard body), one point a day, on a 24-column grid."""
    ingest = [s.name for s in P.PIPELINE if s.job == "ingest"]
    steps = [s.name for s in P.PIPELINE] + [P.AUDIT.name, P.PUBLISH.name]
    text = (
        f"# {PROJECT}: the nightly pipeline on EMR\n"
        f"One point per day from the run report of `{NIGHTLY}` (and `{BACKFILL}` where shown). "
        "Alarms: failed, late or missing nightly, audit errors, quarantine share, cost "
        "(README: Running it on AWS)."
    )
    return {
        "widgets": [
            {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": text}},
            _widget(
                "Runs: succeeded and failed",
                0, 2, 8, 6,
                [
                    _row("RunSucceeded", label="nightly succeeded"),
                    _row("RunFailed", label="nightly failed"),
                    _row("RunSucceeded", BACKFILL, label="backfill succeeded"),
                    _row("RunFailed", BACKFILL, label="backfill failed"),
                ],
                "Sum",
            ),
            _widget(
                "Nightly: duration, past its deadline (s)",
                8, 2, 8, 6,
                [
                    _row("RunDurationSeconds", label="run duration"),
                    _row("SecondsPastDeadline", label="past the deadline (negative: early)"),
                ],
                "Maximum",
            ),
            _widget(
                "Estimated cost per run (USD)",
                16, 2, 8, 6,
                [_row("EstimatedCost", label="nightly"), _row("EstimatedCost", BACKFILL, label="backfill")],
                "Maximum",
            ),
            _widget(
                "Step duration, nightly (s)",
                0, 8, 12, 6,
                [_row("StepDurationSeconds", step=step, label=step) for step in steps],
                "Maximum",
            ),
            _widget(
                "Audit: failed checks, nightly",
                12, 8, 12, 6,
                [_row("AuditErrors", label="errors"), _row("AuditWarnings", label="warnings")],
                "Maximum",
            ),
            _widget(
                "Rows written per output, nightly",
                0, 14, 12, 7,
                [_row("RowsOut", step=step, output=out, label=out) for step, out in M.pipeline_outputs()],
                "Sum",
            ),
            _widget(
                "Quarantined share per dataset, nightly",
                12, 14, 12, 7,
                [
                    _row("QuarantineShare", step=step, output=out, label=out)
                    for step, out in M.pipeline_outputs()
                    if step in ingest
                ],
                "Maximum",
                annotations={
                    "horizontal": [
                        {"label": "audit: warn", "value": AuditSettings().quarantine_warn},
                        {"label": "audit: error", "value": AuditSettings().quarantine_error},
                    ]
                },
            ),
            _widget(
                "Rows read, written and quarantined per step, nightly",
                0, 21, 24, 7,
                [
                    _row(name, step=step, label=f"{step} {name.removeprefix('Rows').lower()}")
                    for step in [s.name for s in P.PIPELINE]
                    for name in ("RowsIn", "RowsOut", "RowsQuarantined")
                ],
                "Sum",
            ),
        ]
    }  # fmt: skip


def _stat(name: str, stat: str, **dims: Any) -> dict[str, Any]:
    """An alarm's single metric (properties of AWS::CloudWatch::Alarm)."""
    identity = M.metric(name, dims.pop("dag_id", NIGHTLY), **dims)
    return {"Namespace": {"Ref": "MetricsNamespace"}, **identity, "Statistic": stat, "Period": HOUR}


def _alarm(name: str, description: str, **properties: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"{PROJECT}-{name}",
            "AlarmDescription": description,
            "ActionsEnabled": True,
            "AlarmActions": [{"Ref": "AlertsTopic"}],
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **properties,
        },
    }


def alarms() -> dict[str, Any]:
    """The alarms on the run report's metrics, each to the alerts' topic (README says what to do)."""
    shares = [
        {
            "Id": f"q{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": {"Ref": "MetricsNamespace"},
                    **M.metric("QuarantineShare", NIGHTLY, step, out),
                },
                "Period": HOUR,
                "Stat": "Maximum",
            },
            "ReturnData": False,
        }
        for i, (step, out) in enumerate((s, o) for s, o in M.pipeline_outputs() if s.startswith("ingest_"))
    ]
    return {
        "NightlyFailedAlarm": _alarm(
            "nightly-failed",
            f"A run of {NIGHTLY} failed (a step, the audit or publish): its run report names the step.",
            **_stat("RunFailed", "Sum"),
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            Threshold=1,
        ),
        "NightlyLateAlarm": _alarm(
            "nightly-late",
            f"A scheduled run of {NIGHTLY} finished after PIPELINE_ALERT_DEADLINE_UTC.",
            **_stat("SecondsPastDeadline", "Maximum"),
            ComparisonOperator="GreaterThanThreshold",
            Threshold=0,
        ),
        "NightlyMissingAlarm": _alarm(
            "nightly-missing",
            f"No scheduled run of {NIGHTLY} finished (or published its metrics) for "
            f"{MISSING_AFTER_HOURS} hours: paused, stuck, or the report could not publish.",
            **_stat("SecondsPastDeadline", "SampleCount"),
            ComparisonOperator="LessThanThreshold",
            Threshold=1,
            EvaluationPeriods=MISSING_AFTER_HOURS,
            DatapointsToAlarm=MISSING_AFTER_HOURS,
            TreatMissingData="breaching",
        ),
        "AuditErrorsAlarm": _alarm(
            "audit-errors",
            f"The audit of a {NIGHTLY} run failed an error check: nothing was published for its date.",
            **_stat("AuditErrors", "Maximum"),
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            Threshold=1,
        ),
        "QuarantineShareAlarm": _alarm(
            "quarantine-share",
            f"A dataset of a {NIGHTLY} run had more of its rows quarantined than "
            "QuarantineShareAlarmThreshold.",
            Metrics=[
                *shares,
                {
                    "Id": "highest",
                    "Expression": f"MAX([{', '.join(q['Id'] for q in shares)}])",
                    "Label": "highest quarantined share of the datasets",
                    "ReturnData": True,
                },
            ],
            ComparisonOperator="GreaterThanThreshold",
            Threshold={"Ref": "QuarantineShareAlarmThreshold"},
        ),
        "RunCostAlarm": _alarm(
            "run-cost",
            f"A {NIGHTLY} run's estimated cluster cost was above RunCostBudget (USD).",
            **_stat("EstimatedCost", "Maximum"),
            ComparisonOperator="GreaterThanThreshold",
            Threshold={"Ref": "RunCostBudget"},
        ),
    }


def monitoring() -> dict[str, Any]:
    return {
        # Where the alarms and Airflow's alerts (PIPELINE_ALERT_SNS_TOPIC_ARN) go: subscribe e-mail,
        # chat or paging to it. Not encrypted: CloudWatch alarms cannot publish to a topic encrypted
        # with AWS's managed key, and the messages hold no data of the lake.
        "AlertsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": iam.alerts_topic_name(),
                "DisplayName": f"{PROJECT} alerts",
                "Tags": [PROJECT_TAG],
            },
        },
        "Dashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": {"Fn::Sub": f"{PROJECT}-${{AWS::Region}}"},
                "DashboardBody": as_json(dashboard_body()),
            },
        },
        **alarms(),
    }
