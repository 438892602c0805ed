"""Alerts: a run that failed, and a nightly run not finished by its deadline, told to people.

Both go through Airflow's notifier interface (`airflow.sdk.BaseNotifier`) to every configured
channel: e-mail over SMTP (the smtp provider's `SmtpNotifier` on an Airflow connection), Slack
(an incoming webhook) and Amazon SNS (the amazon provider's `SnsNotifier`).

- failure: the nightly DAG's DAG-level `on_failure_callback` (Airflow's dag-processor runs it
  when a run fails; `dag.test()` runs it in-process), and the backfill's tasks' own
  `on_failure_callback` (see `dag_factory._alert_on_failed_tasks` for why). It names the failed
  task(s) and each one's error: Airflow gives a DAG's callback only its reason (`task_failure`)
  and the last task instance, so each task of the nightly records its error when it fails for
  good (`record_task_error`, its own `on_failure_callback`, run by the worker with the
  exception) as an XCom the DAG's callback reads back;
- deadline: an Airflow Deadline Alert of the nightly DAG. The run for day D (logical date D
  02:00 UTC, the start of its data interval) is due by HH:MM UTC on D+1 (PIPELINE_ALERT_DEADLINE_UTC,
  the first HH:MM after the run starts at 02:00); the scheduler notices a missed deadline and
  the executor runs `deadline_missed`, which alerts for scheduled runs only (a manual run or a
  backfill of an old date is "late" by design).

An alert never changes the run it reports on: a channel that cannot be reached costs one
warning in the log, and the other channels are still tried.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from include.alert_settings import AlertSettings

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[customer-analytics]"
ERROR_XCOM_KEY = "failure_error"  # a failed task's error, for its run's failure alert
MAX_ERROR_CHARS = 2000  # an error longer than this is cut in the alert (the task's log has it all)
DEFAULT_FROM = "customer-analytics-airflow@localhost"  # unless the SMTP connection has from_email
SLACK_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Alert:
    subject: str
    lines: tuple[tuple[str, str], ...]  # (label, value) rows of the message
    link: str | None = None  # the failed task's log in the Airflow UI

    @property
    def text(self) -> str:
        body = "\n".join(f"{label}: {value}" for label, value in self.lines)
        return f"{self.subject}\n\n{body}" + (f"\nlog: {self.link}" if self.link else "")

    @property
    def html(self) -> str:
        rows = "".join(
            f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
            for label, value in self.lines
        )
        link = f"<p><a href='{html.escape(self.link)}'>Open the task's log</a></p>" if self.link else ""
        return f"<h3>{html.escape(self.subject)}</h3><table>{rows}</table>{link}"


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _ds_of(dag_run: Any) -> str:
    """The date the run builds (include/run_dates.py), or why it has none."""
    from include.run_dates import run_ds

    conf = _get(dag_run, "conf") or {}
    try:
        return run_ds(
            run_type=_get(dag_run, "run_type"),
            logical_date=_get(dag_run, "logical_date"),
            data_interval_start=_get(dag_run, "data_interval_start"),
            run_after=_get(dag_run, "run_after"),
            requested=conf.get("ds") if isinstance(conf, Mapping) else None,
        )[0]
    except Exception as exc:  # the alert still goes out, saying why there is no date
        return f"none ({exc})"


def _ds_of_backfill(dag_run: Any) -> str | None:
    conf = _get(dag_run, "conf") or {}
    if isinstance(conf, Mapping) and conf.get("start_ds") and conf.get("end_ds"):
        return f"{conf['start_ds']}..{conf['end_ds']}"
    return None


def failed_tasks(dag_id: str, run_id: str) -> list[str] | None:
    """The run's failed tasks, asked of Airflow through the Task SDK (the dag-processor that runs
    DAG callbacks answers it); None where no Task SDK channel exists."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id])
    except Exception as exc:
        log.debug("task states not available here (%s); naming the task Airflow passed", exc)
        return None
    per_run = states.get(run_id, {}) if isinstance(states, Mapping) else {}
    return sorted(task for task, state in per_run.items() if str(state) == "failed")


def error_text(exception: BaseException) -> str:
    """How an alert states a task's error: its type and message, cut at MAX_ERROR_CHARS."""
    text = f"{type(exception).__name__}: {exception}"
    if len(text) > MAX_ERROR_CHARS:
        text = (
            f"{text[:MAX_ERROR_CHARS]} ... ({len(text) - MAX_ERROR_CHARS} more characters in the task's log)"
        )
    return text


def record_task_error(context: Mapping[str, Any]) -> None:
    """A task's on_failure_callback (the worker runs it once the task failed for good, with the
    exception): keeps the error as the task's XCom ERROR_XCOM_KEY for the run's failure alert.
    Clearing the task drops it with the task's other XComs. Never raises."""
    exception = context.get("exception")
    ti = context.get("ti")
    if not isinstance(exception, BaseException) or ti is None:
        return  # failed without raising here (e.g. the dag-processor runs this for a lost worker)
    try:
        ti.xcom_push(key=ERROR_XCOM_KEY, value=error_text(exception))
    except Exception as exc:  # the alert then says the error was not recorded
        log.warning(
            "could not record the error of %s for the failure alert: %s", getattr(ti, "task_id", "?"), exc
        )


def task_errors(dag_id: str, run_id: str, task_ids: list[str]) -> dict[str, str] | None:
    """The errors `record_task_error` kept for these tasks of the run, asked of Airflow through
    the Task SDK (as `failed_tasks`); None where no Task SDK channel exists."""
    from airflow.sdk.execution_time.xcom import XCom  # the configured XCom backend, as tasks use it

    errors = {}
    for task_id in task_ids:
        try:
            value = XCom.get_one(
                key=ERROR_XCOM_KEY, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=-1
            )
        except Exception as exc:
            log.debug("task errors not available here (%s)", exc)
            return None
        if value is not None:
            errors[task_id] = str(value)
    return errors


def log_url(dag_id: str, run_id: str, task_id: str) -> str:
    """A task's page (its log) in the Airflow UI, as Airflow's own TaskInstance.log_url builds it."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}"


def failure_alert(
    context: Mapping[str, Any], consequences: tuple[str, ...] = (), *, task_level: bool = False
) -> Alert:
    """What a failed run's alert says: the DAG, the run, its date, the failed task(s) and their
    errors, Airflow's reason, the log.

    Airflow passes the failed task that ended last; the run report (`consequences`) fails after a
    step failed, so the alert names the failed tasks that are not consequences (the cause). A
    task's callback has the task's exception; a DAG's reads what `record_task_error` kept."""
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = str(_get(dag_run, "dag_id") or getattr(dag, "dag_id", "?"))
    run_id = str(_get(dag_run, "run_id") or context.get("run_id") or "?")
    ds = _ds_of_backfill(dag_run) or _ds_of(dag_run)
    ti = context.get("ti") or context.get("task_instance")
    last = getattr(ti, "task_id", None)
    failed = None if task_level else failed_tasks(dag_id, run_id)
    if failed is None:
        failed = [last] if last else []
    causes = [t for t in failed if t not in consequences] or failed
    task = ", ".join(causes) if causes else "none (the run failed without a failed task)"
    exception = context.get("exception")  # a task's callback has it; a DAG's has Airflow's reason
    if task_level:
        errors = {last: error_text(exception)} if last and isinstance(exception, BaseException) else {}
    else:
        errors = task_errors(dag_id, run_id, causes)
    if errors is None:
        errors, not_recorded = {}, "not available here (no Task SDK channel): see the task's log"
    else:
        not_recorded = (
            "none recorded (the task did not raise in its worker: marked failed, or its worker was lost)"
        )
    reason = str(context.get("reason") or "failed")
    link = log_url(dag_id, run_id, causes[0]) if causes else None
    subject = f"{SUBJECT_PREFIX} FAILED {dag_id} ds {ds}: task {task} (run {run_id})"
    lines = (
        ("DAG", dag_id),
        ("run", run_id),
        ("ds", ds),
        ("failed task", task),
        *((f"error of {cause}", errors.get(cause, not_recorded)) for cause in causes),
        ("all failed tasks", ", ".join(failed) or "none"),
        ("reason", reason),
    )
    return Alert(subject, lines, link)


def deadline_alert(context: Mapping[str, Any], deadline_utc: str) -> Alert:
    """What a late run's alert says: which run, its date, the time it missed, its state then."""
    dag_run = context.get("dag_run") or {}
    deadline = (context.get("deadline") or {}).get("deadline_time")
    missed = _utc_text(deadline) if deadline else f"{deadline_utc} UTC"
    ds = _ds_of(dag_run)
    subject = (
        f"{SUBJECT_PREFIX} LATE {_get(dag_run, 'dag_id')} ds {ds}: not finished by {missed} "
        f"(run {_get(dag_run, 'dag_run_id') or _get(dag_run, 'run_id')})"
    )
    lines = (
        ("DAG", str(_get(dag_run, "dag_id"))),
        ("run", str(_get(dag_run, "dag_run_id") or _get(dag_run, "run_id"))),
        ("ds", ds),
        ("deadline", f"{missed} (PIPELINE_ALERT_DEADLINE_UTC={deadline_utc})"),
        ("state at the deadline", str(_get(dag_run, "state"))),
        ("started", str(_get(dag_run, "start_date"))),
    )
    return Alert(subject, lines)


def _utc_text(value: Any) -> str:
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---- channels --------------------------------------------------------------------------------
class SlackWebhookNotifier(BaseNotifier):
    """Posts the alert's text to a Slack incoming webhook (no Slack provider needed)."""

    def __init__(self, webhook: str, text: str) -> None:
        super().__init__()
        self.webhook = webhook
        self.text = text

    def notify(self, context: Any) -> None:
        request = urllib.request.Request(  # noqa: S310 (the URL is checked: https:// only, in settings)
            self.webhook,
            data=json.dumps({"text": self.text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=SLACK_TIMEOUT_SECONDS) as response:  # noqa: S310
            if response.status >= 300:
                raise RuntimeError(f"Slack answered {response.status}")


def _notifiers(alert: Alert, alerts: AlertSettings, aws_conn_id: str | None, region: str | None) -> dict:
    notifiers: dict[str, BaseNotifier] = {}
    if alerts.emails:
        notifiers["email"] = _email_notifier(
            to=list(alerts.emails),
            subject=alert.subject,
            html_content=alert.html,
            smtp_conn_id=alerts.smtp_conn_id,
        )
    if alerts.slack_webhook:
        notifiers["slack"] = SlackWebhookNotifier(alerts.slack_webhook, alert.text)
    if alerts.sns_topic_arn:
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        notifiers["sns"] = SnsNotifier(
            aws_conn_id=aws_conn_id,
            region_name=region,
            target_arn=alerts.sns_topic_arn,
            subject=alert.subject[:100],  # SNS's limit for e-mail subscriptions
            message=alert.text,
        )
    return notifiers


def _email_notifier(**kwargs: Any) -> BaseNotifier:
    """The smtp provider's SmtpNotifier; the sender is the connection's from_email, else DEFAULT_FROM."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    class Email(SmtpNotifier):
        def _build_email_content(self, smtp: Any, context: Any) -> None:
            if self.from_email is None and smtp.from_email is None:
                self.from_email = DEFAULT_FROM
            super()._build_email_content(smtp, context)

    return Email(**kwargs)


def send(alert: Alert, alerts: AlertSettings, aws_conn_id: str | None, region: str | None) -> dict[str, str]:
    """Send `alert` to every channel; returns channel -> "sent" or the problem. Never raises."""
    if not alerts.channels:
        log.info("no alert channel configured (PIPELINE_ALERT_*); not sent: %s", alert.subject)
        return {}
    results = {}
    for channel, notifier in _notifiers(alert, alerts, aws_conn_id, region).items():
        try:
            notifier.notify({})
        except Exception as exc:  # an alert must never fail the run it reports on
            results[channel] = f"{type(exc).__name__}: {exc}"
            log.warning("alert not sent via %s (%s): %s", channel, results[channel], alert.subject)
        else:
            results[channel] = "sent"
            log.info("alert sent via %s: %s", channel, alert.subject)
    return results


# ---- what the DAGs hook in -------------------------------------------------------------------
class RunFailedNotifier(BaseNotifier):
    """The DAGs' on_failure_callback: one alert per failed run, to every configured channel."""

    def __init__(
        self,
        alerts: AlertSettings,
        aws_conn_id: str | None = None,
        region: str | None = None,
        consequences: tuple[str, ...] = (),
        task_level: bool = False,
    ) -> None:
        super().__init__()
        self.alerts = alerts
        self.consequences = consequences  # tasks that fail because another did (the run report)
        self.task_level = task_level  # a task's on_failure_callback: the context's task is the one
        self.aws_conn_id = aws_conn_id
        self.region = region

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (the message is composed in Python), so no Jinja environment is asked
        of the context's DAG (dag.test() passes the scheduler's serialized DAG, which has none)."""

    def notify(self, context: Any) -> None:
        try:
            alert = failure_alert(context, self.consequences, task_level=self.task_level)
        except Exception as exc:  # never fail the callback: say it, once
            log.warning("could not compose the failure alert: %s", exc)
            return
        send(alert, self.alerts, self.aws_conn_id, self.region)


def deadline_missed(deadline_utc: str, context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The Deadline Alert's callback (run by the executor with the scheduler's small context)."""
    from include.settings import load_settings

    context = context or {}
    run = context.get("dag_run") or {}
    if run.get("run_type") != "scheduled":
        log.info("a %s run has no deadline; no alert", run.get("run_type"))
        return {}
    if run.get("state") == "failed":  # finished, and its failure alert told it
        log.info("run %s already failed; no deadline alert", run.get("dag_run_id"))
        return {}
    settings = load_settings()
    try:
        alert = deadline_alert(context, deadline_utc)
    except Exception as exc:
        log.warning("could not compose the deadline alert: %s", exc)
        return {}
    return send(alert, settings.alerts, settings.aws_conn_id if settings.on_aws else None, settings.region)
