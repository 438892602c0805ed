"""No AWS credentials in the code, the images or the examples: they come from Airflow connections set
by the environment or a secrets backend. And ruff's bandit (S) rules are clean on the shipped code."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from include.settings import PROJECT_ROOT

# Values in the repository that look like credentials but are documented fakes (moto's).
ALLOWED = {"testing"}
ACCESS_KEY_ID = re.compile(r"(?<![A-Z0-9])(AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}(?![A-Z0-9])")
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(aws_secret_access_key|aws_session_token|secret_access_key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{16,})"
)
PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----")


def findings(text: str) -> list[str]:
    found = [m.group(0) for m in ACCESS_KEY_ID.finditer(text)]
    found += [m.group(0) for m in SECRET_ASSIGNMENT.finditer(text) if m.group(2) not in ALLOWED]
    found += [m.group(0) for m in PRIVATE_KEY.finditer(text)]
    return found


def repository_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def test_the_scanner_finds_each_kind_of_credential():
    # built at run time so this file itself holds no credential-shaped literal
    key_id = "AKIA" + "Q" * 16
    secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCY" + "EXAMPLEKEY"
    assert findings(f"aws_access_key_id = {key_id}") == [key_id]
    assert findings(f'"aws_secret_access_key": "{secret}"') != []
    assert findings("-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE") != []
    assert findings("AWS_SECRET_ACCESS_KEY=testing") == []  # moto's documented fake
    assert findings(f"x{key_id}9") == []  # part of a longer token: not a key id


def test_no_file_of_the_repository_holds_aws_credentials_or_private_keys():
    offenders = {}
    for name in repository_files():
        path = PROJECT_ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary
        hits = findings(text)
        if hits:
            offenders[name] = hits
    assert offenders == {}


def test_the_image_bakes_in_no_credentials_and_its_context_holds_only_the_pins():
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    assert not re.search(r"(?im)^\s*(ENV|ARG)\s+[^\n]*(AWS_|SECRET|PASSWORD|TOKEN|AIRFLOW_CONN_)", dockerfile)
    ignore = (PROJECT_ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # everything is excluded first (.env, ~/.aws copies, lakes) ...
    assert all(r.startswith("!") for r in rules[1:])  # ... then only named files come back
    assert not [r for r in rules if re.search(r"\.env|\.aws|credentials|\.pem|\.key", r)]


@pytest.mark.parametrize("name", [".env.example", "docker-compose.yaml"])
def test_the_examples_leave_aws_credentials_to_the_environment(name):
    text = (PROJECT_ROOT / name).read_text()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assigned = re.findall(rf"(?m)^\s*{var}\s*[=:]\s*(\S+)", text)
        assert [v for v in assigned if not v.startswith("${")] == [], var
    for line in re.findall(r"(?m)^\s*AIRFLOW_CONN_AWS\w*\s*[=:]\s*(.+)$", text):
        conn = json.loads(line.strip().strip("'"))
        assert not {"login", "password"} & set(conn), conn
        assert not {"aws_access_key_id", "aws_secret_access_key"} & set(conn.get("extra", {})), conn


def test_ruff_bandit_rules_are_clean_on_the_shipped_code():
    proc = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "ruff"),
            "check",
            "--select",
            "S",
            "--output-format",
            "concise",
            "dags",
            "include",
            "deployment",
            "plugins",
            "spark_jobs",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
