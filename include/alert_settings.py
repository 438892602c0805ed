"""The alerts' settings (PIPELINE_ALERT_*), apart from include/alerts.py so that reading settings
never imports Airflow. Checked here; include/settings.py names each bad variable."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

ALERT_ENV = (
    "PIPELINE_ALERT_EMAIL",
    "PIPELINE_ALERT_SMTP_CONN_ID",
    "PIPELINE_ALERT_DEADLINE_UTC",
    "PIPELINE_ALERT_SLACK_WEBHOOK",
    "PIPELINE_ALERT_SNS_TOPIC_ARN",
)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_SLACK_WEBHOOK = re.compile(r"^https://[A-Za-z0-9.-]+(:\d{1,5})?/[A-Za-z0-9._~/-]+$")
_SNS_TOPIC_ARN = re.compile(
    r"^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
)


@dataclass(frozen=True)
class AlertSettings:
    """Where a failed or late run is told (include/alerts.py)."""

    emails: tuple[str, ...] = ()  # e-mail over the SMTP connection below; none: no e-mail
    smtp_conn_id: str = "smtp_default"
    deadline_utc: str = "06:00"  # HH:MM UTC on D+1 by which the nightly run of D must be done
    slack_webhook: str = ""  # a Slack incoming webhook (a secret: never logged or serialized)
    sns_topic_arn: str = ""

    @property
    def channels(self) -> tuple[str, ...]:
        on = {"email": self.emails, "slack": self.slack_webhook, "sns": self.sns_topic_arn}
        return tuple(name for name, value in on.items() if value)


def deadline_interval(deadline_utc: str, run_starts: dt.time) -> dt.timedelta:
    """From a nightly run's logical date (D at `run_starts`, its data interval's start) to the
    first `deadline_utc` after the run starts (D+1 at `run_starts`): for 06:00 and 02:00, 28 h."""
    hours, minutes = (int(part) for part in deadline_utc.split(":"))
    deadline = dt.timedelta(hours=hours, minutes=minutes)
    after_start = (deadline - dt.timedelta(hours=run_starts.hour, minutes=run_starts.minute)) % dt.timedelta(
        days=1
    )
    return dt.timedelta(days=1) + (after_start or dt.timedelta(days=1))


def parse_alerts(env: Mapping[str, str], problems: list[str]) -> AlertSettings:
    """AlertSettings from PIPELINE_ALERT_*; each bad value adds a problem naming its variable."""
    raw = {var: env.get(var, "").strip() for var in ALERT_ENV}
    default = AlertSettings()
    emails = tuple(filter(None, (part.strip() for part in raw["PIPELINE_ALERT_EMAIL"].split(","))))
    bad = [e for e in emails if not _EMAIL.match(e)]
    if bad:
        problems.append(
            f"PIPELINE_ALERT_EMAIL: {', '.join(repr(e) for e in bad)} is not an e-mail address "
            "(comma-separated name@domain)"
        )
    conn_id = raw["PIPELINE_ALERT_SMTP_CONN_ID"] or default.smtp_conn_id
    if not _CONN_ID.match(conn_id):
        problems.append(f"PIPELINE_ALERT_SMTP_CONN_ID={conn_id!r} is not a connection id")
    deadline = raw["PIPELINE_ALERT_DEADLINE_UTC"] or default.deadline_utc
    if not _HH_MM.match(deadline):
        problems.append(f"PIPELINE_ALERT_DEADLINE_UTC={deadline!r} is not a time HH:MM (UTC, e.g. 06:00)")
    webhook = raw["PIPELINE_ALERT_SLACK_WEBHOOK"]
    if webhook and not _SLACK_WEBHOOK.match(webhook):
        # the value is a secret: never repeat it
        problems.append("PIPELINE_ALERT_SLACK_WEBHOOK is not an https:// URL (a Slack incoming webhook)")
    topic = raw["PIPELINE_ALERT_SNS_TOPIC_ARN"]
    if topic and not _SNS_TOPIC_ARN.match(topic):
        problems.append(
            f"PIPELINE_ALERT_SNS_TOPIC_ARN={topic!r} is not an SNS topic ARN "
            "(arn:aws:sns:REGION:ACCOUNT:NAME)"
        )
    return AlertSettings(emails, conn_id, deadline, webhook, topic)
