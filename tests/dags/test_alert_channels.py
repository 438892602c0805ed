"""The other alert channels: Slack (a local HTTP server stands in for the incoming webhook) and
Amazon SNS (moto; an SQS queue subscribed to the topic receives what was published)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from include.alert_settings import AlertSettings
from include.alerts import Alert, send
from tests.harness.aws_fakes import REGION

ALERT = Alert(
    subject="[customer-analytics] FAILED customer_analytics_nightly ds 2024-06-28: task plan (run r1)",
    lines=(("DAG", "customer_analytics_nightly"), ("failed task", "plan")),
    link="http://localhost:8080/dags/customer_analytics_nightly/runs/r1/tasks/plan",
)


@pytest.fixture
def webhook():
    """A stand-in Slack incoming webhook: keeps each POST's path and JSON body."""
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX", received
    server.shutdown()
    server.server_close()


def test_slack_gets_the_alerts_text(webhook):
    url, received = webhook
    assert send(ALERT, AlertSettings(slack_webhook=url), None, None) == {"slack": "sent"}
    assert received == [("/services/T000/B000/XXXX", {"text": ALERT.text})]
    assert ALERT.text == (
        f"{ALERT.subject}\n\nDAG: customer_analytics_nightly\nfailed task: plan\nlog: {ALERT.link}"
    )


def test_sns_publishes_subject_and_text_to_the_topic(fake_aws):
    sns, sqs = fake_aws.client("sns"), fake_aws.client("sqs")
    topic = sns.create_topic(Name="pipeline-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    assert send(ALERT, AlertSettings(sns_topic_arn=topic), "aws_default", REGION) == {"sns": "sent"}
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == ALERT.subject[:100]
    assert envelope["Message"] == ALERT.text


def test_every_configured_channel_is_tried_and_one_that_fails_does_not_stop_the_others(webhook, caplog):
    url, received = webhook
    alerts = AlertSettings(emails=("ops@example.com",), smtp_conn_id="no_such_connection", slack_webhook=url)
    results = send(ALERT, alerts, None, None)
    assert results["slack"] == "sent"
    assert results["email"].startswith("AirflowException: SMTP connection is not found")
    assert len(received) == 1
    warnings = [r for r in caplog.records if r.name == "include.alerts" and r.levelname == "WARNING"]
    assert [r.getMessage().split(" (")[0] for r in warnings] == ["alert not sent via email"]
