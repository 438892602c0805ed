"""A local SMTP server for the alert tests (aiosmtpd's handler keeps what it receives), and
Airflow's SMTP connection to it."""

from __future__ import annotations

import email
import email.policy
import json
import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """aiosmtpd handler: keeps every message as received (envelope and parsed message)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def smtp_connection(port: int) -> str:
    """Airflow's SMTP connection to a plain local server (no TLS, no login), as an env value."""
    extra = {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com", "timeout": 5}
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra})
