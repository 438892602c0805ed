"""Deployment settings of the DAGs, read from the environment when a DAG file is parsed.

One place names every `PIPELINE_*` variable, its default and its check, so a wrong value
fails the DAG import with a message naming the variable (visible in the Airflow UI) instead of
a cluster that cannot start. No AWS call, no Airflow Variable, no file read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from include.alert_settings import ALERT_ENV, AlertSettings, parse_alerts
from include.aws_settings import IDLE_TIMEOUT_SECONDS, POLL_SECONDS, check_aws, check_serverless
from include.checks import AuditSettings, parse_audit
from include.clickstream_kinesis import stream_problem
from include.emr_release import DEFAULT_RELEASE
from spark_jobs.catalog import DEFAULT_GLUE_PREFIX, GLUE_PREFIX_ENV, glue_prefix, namespaces

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("local", "emr", "emr-serverless")
AWS_TARGETS = ("emr", "emr-serverless")  # an S3 lake on the Glue catalog, the code uploaded
PROFILE_NAMES = ("dev", "prod")

_LOCAL_URI = re.compile(r"^file:///[A-Za-z0-9._/+=@-]*$")
_LINEAGE_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_HTTP_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?$")
# CloudWatch's rule for a custom namespace (not AWS/...), narrowed to characters safe in an IAM condition
_CLOUDWATCH_NAMESPACE = re.compile(r"^(?!AWS/)[A-Za-z0-9._/#-]{1,255}$")
CLOUDWATCH_NAMESPACE = "CustomerMarketAnalytics"


class SettingsError(ValueError):
    """One or more PIPELINE_* variables are missing or wrong; the message lists each."""


@dataclass(frozen=True)
class Settings:
    target: str = "local"
    lake: str = (PROJECT_ROOT / "lake").as_uri()
    default_profile: str = "dev"
    retries: int = 2
    retry_delay_seconds: int = 60
    # local only: one warm Spark application per run runs every step (False: a process per step)
    local_spark_server: bool = True
    # the maintenance DAG expires snapshots committed longer ago than this (rollback horizon)
    snapshot_retention_days: int = 14
    # write-audit-publish: the checks' bands and severities (include/checks.py)
    audit: AuditSettings = field(default_factory=AuditSettings)
    # a failed run, and a nightly run late for its deadline, told by e-mail/Slack/SNS (include/alerts.py)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    # OpenLineage (include/lineage.py): every job's runs, inputs, outputs and column lineage, to
    # LAKE/_lineage as JSON lines, or to a Marquez/DataHub endpoint when lineage_url is set
    lineage: bool = True
    lineage_namespace: str = "customer_market_analytics"
    lineage_url: str = ""
    # the clickstream from this Kinesis data stream (its name): the nightly's land_clickstream task
    # lands its new records in landing/clickstream/ first (include/clickstream_kinesis.py); empty:
    # the clickstream is the files upstream delivers there
    clickstream_stream: str = ""
    # emr only
    code_uri: str = ""
    log_uri: str = ""
    subnet_id: str = ""
    master_security_group: str = ""
    core_security_group: str = ""
    service_security_group: str = ""
    release_label: str = DEFAULT_RELEASE
    service_role: str = "EMR_DefaultRole"
    instance_profile: str = "EMR_EC2_DefaultRole"
    idle_timeout_seconds: int = IDLE_TIMEOUT_SECONDS
    # 60 s measured 69 s step-to-step latency (docs/BENCHMARKS.md); 30 s gives 36 s
    poll_seconds: int = POLL_SECONDS
    # the last lines of each step's stdout and stderr copied into its task log (0: none), and the
    # longest a task waits for EMR to upload them after the step ended (EMR pushes logs periodically)
    step_log_lines: int = 200
    step_log_wait_seconds: int = 120
    aws_conn_id: str = "aws_default"
    region: str | None = None
    # One Glue database per table zone: <prefix>_processed, <prefix>_quarantine, <prefix>_curated.
    glue_database_prefix: str = DEFAULT_GLUE_PREFIX
    # Security (emr only). The security configuration is created once per account and region
    # with `python -m scripts.create_emr_security_configuration`; clusters only name it.
    security_configuration: str = "customer-market-analytics"
    kms_key_arn: str = ""  # local disk (and S3 with SSE-KMS) encryption key
    s3_encryption: str = "SSE-KMS"
    tls_certificates_uri: str = ""  # s3://.../certs.zip: PEM files for in-transit TLS
    # The `preflight` task checks that everything a cluster needs exists before RunJobFlow
    # (deployment/preflight/); off only where the caller may not read IAM, EC2 or EMR configuration.
    preflight: bool = True
    # emr only: the run report publishes the run's numbers to CloudWatch (include/run_report/metrics.py)
    cloudwatch_metrics: bool = True
    cloudwatch_namespace: str = CLOUDWATCH_NAMESPACE
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    # emr-serverless only: the job runtime role every job run assumes (its ARN), and the security
    # group of the run's application in PIPELINE_EMR_SUBNET_ID (include/targets/serverless.py)
    serverless_execution_role: str = ""
    serverless_security_group: str = ""

    @property
    def is_emr(self) -> bool:
        """A transient EMR cluster per run (not Serverless: see `on_aws`)."""
        return self.target == "emr"

    @property
    def is_serverless(self) -> bool:
        """An EMR Serverless application per run, a job run per step."""
        return self.target == "emr-serverless"

    @property
    def on_aws(self) -> bool:
        """The lake on S3 with the Glue catalog, the code uploaded, steps named as EMR names them:
        both AWS targets (EMR on EC2 and EMR Serverless)."""
        return self.target in AWS_TARGETS

    @property
    def namespaces(self) -> dict[str, str]:
        """Table zone -> Iceberg namespace: the zone's name locally, its Glue database on EMR."""
        return namespaces(self.lake, self.glue_database_prefix)


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
    return lowered in ("true", "1", "yes")


# Every PIPELINE_* variable, by section (the README's Settings has the same sections, each
# variable documented there): env var -> (Settings field, converter), or None for those read
# apart (the Glue prefix by spark_jobs.catalog.glue_prefix, which the jobs use too; the alerts'
# by include/alert_settings.py; the audit's by include/checks.py, each with its own format).
SECTIONS: dict[str, dict[str, tuple[str, Callable[[str], object]] | None]] = {
    "target": {
        "PIPELINE_TARGET": ("target", str),
        "PIPELINE_CLUSTER_PROFILE": ("default_profile", str),
        "PIPELINE_RETRIES": ("retries", int),
        "PIPELINE_RETRY_DELAY_SECONDS": ("retry_delay_seconds", int),
        "PIPELINE_LOCAL_SPARK_SERVER": ("local_spark_server", _boolean),
    },
    "lake": {
        "PIPELINE_LAKE": ("lake", str),
        GLUE_PREFIX_ENV: None,
        "PIPELINE_SNAPSHOT_RETENTION_DAYS": ("snapshot_retention_days", int),
        "PIPELINE_CLICKSTREAM_KINESIS_STREAM": ("clickstream_stream", str),
    },
    "emr": {
        "PIPELINE_CODE_URI": ("code_uri", str),
        "PIPELINE_EMR_LOG_URI": ("log_uri", str),
        "PIPELINE_EMR_SUBNET_ID": ("subnet_id", str),
        "PIPELINE_EMR_MASTER_SG": ("master_security_group", str),
        "PIPELINE_EMR_CORE_SG": ("core_security_group", str),
        "PIPELINE_EMR_SERVICE_SG": ("service_security_group", str),
        "PIPELINE_EMR_RELEASE": ("release_label", str),
        "PIPELINE_EMR_SERVICE_ROLE": ("service_role", str),
        "PIPELINE_EMR_INSTANCE_PROFILE": ("instance_profile", str),
        "PIPELINE_EMR_IDLE_TIMEOUT_SECONDS": ("idle_timeout_seconds", int),
        "PIPELINE_EMR_POLL_SECONDS": ("poll_seconds", int),
        "PIPELINE_EMR_STEP_LOG_LINES": ("step_log_lines", int),
        "PIPELINE_EMR_STEP_LOG_WAIT_SECONDS": ("step_log_wait_seconds", int),
        "PIPELINE_AWS_CONN_ID": ("aws_conn_id", str),
        "PIPELINE_AWS_REGION": ("region", str),
        "PIPELINE_EXTRA_TAGS": ("extra_tags", str),
        "PIPELINE_EMR_SECURITY_CONFIGURATION": ("security_configuration", str),
        "PIPELINE_EMR_KMS_KEY_ARN": ("kms_key_arn", str),
        "PIPELINE_EMR_S3_ENCRYPTION": ("s3_encryption", str),
        "PIPELINE_EMR_TLS_CERTIFICATES_URI": ("tls_certificates_uri", str),
        "PIPELINE_EMR_PREFLIGHT": ("preflight", str),
    },
    "serverless": {
        "PIPELINE_SERVERLESS_EXECUTION_ROLE": ("serverless_execution_role", str),
        "PIPELINE_SERVERLESS_SECURITY_GROUP": ("serverless_security_group", str),
    },
    "lineage": {
        "PIPELINE_LINEAGE": ("lineage", _boolean),
        "PIPELINE_LINEAGE_NAMESPACE": ("lineage_namespace", str),
        "PIPELINE_LINEAGE_URL": ("lineage_url", str),
    },
    "alerts": {
        **dict.fromkeys(ALERT_ENV),
        "PIPELINE_CLOUDWATCH_METRICS": ("cloudwatch_metrics", _boolean),
        "PIPELINE_CLOUDWATCH_NAMESPACE": ("cloudwatch_namespace", str),
    },
    "audit": dict.fromkeys(
        (
            "PIPELINE_AUDIT_ROW_COUNT_BAND",
            "PIPELINE_AUDIT_QUARANTINE_WARN",
            "PIPELINE_AUDIT_QUARANTINE_ERROR",
            "PIPELINE_AUDIT_SEVERITIES",
        )
    ),
}
ENV_VARS = tuple(var for section in SECTIONS.values() for var in section)
_ENV = {var: read for section in SECTIONS.values() for var, read in section.items() if read is not None}
# Settings that changed meaning: set, they fail the import with the new name rather than be ignored.
_RENAMED = {
    "PIPELINE_GLUE_DATABASE": "PIPELINE_GLUE_DATABASE_PREFIX (one Glue database per zone: "
    "<prefix>_processed, <prefix>_quarantine, <prefix>_curated)"
}


def _parse_tags(value: str, problems: list[str]) -> dict[str, str]:
    """`key=value,key2=value2` (cost allocation tags and the like)."""
    tags: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9 _.:/=+@-]{1,128}", key.strip()):
            problems.append(f"PIPELINE_EXTRA_TAGS: {item!r} is not key=value")
            continue
        tags[key.strip()] = val.strip()
    return tags


def _local_lake(value: str) -> str:
    if "://" in value:
        return value.rstrip("/")
    path = Path(value)
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve().as_uri()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `environ` (default os.environ); SettingsError names every bad variable."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    for old, new in _RENAMED.items():
        if env.get(old, "").strip():
            problems.append(f"{old} was replaced by {new}")
    values: dict[str, object] = {}
    for var, (attr, convert) in _ENV.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        if attr == "extra_tags":
            values[attr] = _parse_tags(raw, problems)
            continue
        try:
            values[attr] = convert(raw)
        except ValueError:
            kind = "true or false" if convert is _boolean else "a whole number"
            problems.append(f"{var}={raw!r} is not {kind}")

    target = values.get("target", "local")
    if target not in TARGETS:
        problems.append(f"PIPELINE_TARGET={target!r}: choose one of {', '.join(TARGETS)}")
    if values.get("default_profile", "dev") not in PROFILE_NAMES:
        problems.append(f"PIPELINE_CLUSTER_PROFILE: choose one of {', '.join(PROFILE_NAMES)}")
    for var, attr, low in (
        ("PIPELINE_RETRIES", "retries", 0),
        ("PIPELINE_RETRY_DELAY_SECONDS", "retry_delay_seconds", 1),
        ("PIPELINE_SNAPSHOT_RETENTION_DAYS", "snapshot_retention_days", 1),
        ("PIPELINE_EMR_STEP_LOG_LINES", "step_log_lines", 0),
        ("PIPELINE_EMR_STEP_LOG_WAIT_SECONDS", "step_log_wait_seconds", 0),
    ):
        if isinstance(values.get(attr), int) and values[attr] < low:  # type: ignore[operator]
            problems.append(f"{var} must be >= {low}")

    values["glue_database_prefix"] = glue_prefix(env)
    values["audit"] = parse_audit(env, problems)
    values["alerts"] = parse_alerts(env, problems)
    if "lineage_namespace" in values and not _LINEAGE_NAMESPACE.match(str(values["lineage_namespace"])):
        problems.append("PIPELINE_LINEAGE_NAMESPACE: letters, digits and _ . - only (at most 100)")
    if "lineage_url" in values and not _HTTP_URL.match(str(values["lineage_url"])):
        problems.append(
            f"PIPELINE_LINEAGE_URL={values['lineage_url']!r} is not an http(s)://host[:port] URL "
            "(the Marquez or DataHub server; the API path is added)"
        )

    if "clickstream_stream" in values:
        why = stream_problem(str(values["clickstream_stream"]))
        if why:
            problems.append(f"PIPELINE_CLICKSTREAM_KINESIS_STREAM={values['clickstream_stream']!r}: {why}")
    if "cloudwatch_namespace" in values and not _CLOUDWATCH_NAMESPACE.match(
        str(values["cloudwatch_namespace"])
    ):
        problems.append(
            f"PIPELINE_CLOUDWATCH_NAMESPACE={values['cloudwatch_namespace']!r}: letters, digits and "
            ". _ / # - only (at most 255), not starting with AWS/"
        )
    if "preflight" in values:
        flag = str(values["preflight"]).lower()
        if flag not in ("true", "false"):
            problems.append(f"PIPELINE_EMR_PREFLIGHT={values['preflight']!r}: true or false")
        values["preflight"] = flag != "false"

    if target in AWS_TARGETS:
        check_aws(values, problems, str(target))
    if target == "emr-serverless":
        check_serverless(values, problems)
    elif target == "local":
        values["lake"] = _local_lake(str(values.get("lake", Settings.lake)))
        if not _LOCAL_URI.match(str(values["lake"])):
            problems.append(
                f"PIPELINE_LAKE={values['lake']!r}: the local target needs a file:// URI or a path"
            )

    if problems:
        raise SettingsError("pipeline settings: " + "; ".join(problems))
    return Settings(**values)  # type: ignore[arg-type]
