"""Preflight: is everything a cluster needs there? Read-only AWS calls, seconds, before RunJobFlow.

`python -m scripts.check_aws_preflight` (with the deployer's credentials) and the EMR DAGs' `preflight`
task (with the Airflow connection's) check what a RunJobFlow would otherwise find missing
minutes in: the EMR security configuration and the TLS certificates it names, the KMS key, the
EMR service role and the nodes' instance profile, a private subnet tagged for
AmazonEMRServicePolicy_v2 and its security groups, the lake bucket and its default encryption,
the zones' Glue databases, whether the code zip's location is writable, and whether the run
report may publish its metrics to CloudWatch and the alerts to their SNS topic, and the Kinesis
stream the clickstream is landed from, when it is set. Each missing
piece is one finding: one line saying what is wrong and what to do about it. For the
emr-serverless target the checks are `serverless.SERVERLESS_CHECKS` instead (`checks_for`).

Nothing is written: writability and the permissions to publish are judged by reading the
caller's own IAM policies and evaluating them (deployment/iam/evaluate.py) for the calls the run
will make.

The settings are read by attribute (include.settings.Settings): this package sits below include
and imports nothing of it, so the EMR target's preflight task can run it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from botocore.exceptions import ClientError

from deployment.preflight.findings import Clients, Finding, Settings, unreadable
from deployment.preflight.permissions import check_code_location, check_monitoring
from deployment.preflight.resources import (
    check_bucket,
    check_clickstream_stream,
    check_glue_databases,
    check_kms_key,
    check_network,
    check_roles,
    check_security_configuration,
)
from deployment.preflight.serverless import SERVERLESS_CHECKS, check_serverless_release

SERVICES = ("emr", "iam", "ec2", "s3", "glue", "kms", "sts", "kinesis")


# each a Check, but the code location's, which also takes where this run's code goes
CHECKS: tuple[Callable[..., list[Finding]], ...] = (
    check_security_configuration,
    check_kms_key,
    check_roles,
    check_network,
    check_bucket,
    check_glue_databases,
    check_code_location,
    check_monitoring,
    check_clickstream_stream,
)


def checks_for(settings: Settings) -> tuple[Callable[..., list[Finding]], ...]:
    """The checks of the settings' target: EMR's (CHECKS), or EMR Serverless' (serverless.py)."""
    return SERVERLESS_CHECKS if settings.is_serverless else CHECKS


def run_checks(
    settings: Settings, aws: Clients, code_files: str, releases: Collection[str] | None = None
) -> list[Finding]:
    """Every check of the settings' target, in order; a check that fails unexpectedly is a
    finding too. `code_files` is where this run's code zip goes (include.packaging.code_location's
    py_files): the code location's check judges that one. `releases` are the project's release
    labels (include.emr_release.RELEASES), which the emr-serverless target's release label is
    held to; None leaves that check out."""
    findings: list[Finding] = []
    for check in checks_for(settings):
        try:
            if check is check_code_location:
                findings.extend(check_code_location(settings, aws, code_files))
            elif check is check_serverless_release:
                findings.extend(check_serverless_release(settings, releases) if releases is not None else [])
            else:
                findings.extend(check(settings, aws))
        except ClientError as exc:
            findings.append(unreadable(check.__name__.removeprefix("check_").replace("_", " "), exc))
    return findings


def report(findings: Sequence[Finding], settings: Settings | None = None) -> tuple[bool, str]:
    """(passed, text): one line per finding, blocking ones first; the count is of the checks of
    the settings' target (EMR's without settings)."""
    blocking = [f for f in findings if f.blocking]
    notes = [f for f in findings if not f.blocking]
    count = len(checks_for(settings)) if settings is not None else len(CHECKS)
    lines = [f"preflight: {len(blocking)} missing or wrong, {count} checks"]
    lines += [f"MISSING {f.line()}" for f in blocking]
    lines += [f"NOTE {f.line()}" for f in notes]
    return not blocking, "\n".join(lines)


def boto3_clients(region: str | None) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 10})
    session = boto3.session.Session(region_name=region)
    return {name: session.client(name, config=config) for name in SERVICES}
