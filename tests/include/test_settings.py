"""Deployment settings: defaults, the emr target's requirements, and messages that name the variable."""

from __future__ import annotations

import os
import re

import pytest

from include.settings import PROJECT_ROOT, SettingsError, load_settings

EMR = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://my-bucket/lake/",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
}


def test_defaults_run_locally_on_the_projects_lake_directory():
    settings = load_settings({})
    assert settings.target == "local"
    assert settings.lake == (PROJECT_ROOT / "lake").as_uri()
    assert settings.default_profile == "dev"


def test_a_relative_local_lake_is_resolved_against_the_project():
    assert load_settings({"PIPELINE_LAKE": "data/lake"}).lake == (PROJECT_ROOT / "data" / "lake").as_uri()
    assert load_settings({"PIPELINE_LAKE": "file:///tmp/lake/"}).lake == "file:///tmp/lake"


def test_emr_derives_code_and_log_locations_from_the_lake():
    settings = load_settings(EMR)
    assert settings.is_emr
    assert settings.lake == "s3://my-bucket/lake"
    assert settings.code_uri == "s3://my-bucket/lake/_code"
    assert settings.log_uri == "s3://my-bucket/lake/_emr_logs/"
    assert settings.release_label == "emr-spark-8.1.0"


def test_emr_settings_can_be_overridden_one_by_one():
    settings = load_settings(
        {
            **EMR,
            "PIPELINE_CODE_URI": "s3://code-bucket/spark",
            "PIPELINE_EMR_LOG_URI": "s3://log-bucket/emr",
            "PIPELINE_EMR_RELEASE": "emr-7.9.0",
            "PIPELINE_EMR_IDLE_TIMEOUT_SECONDS": "900",
            "PIPELINE_AWS_REGION": "eu-west-1",
            "PIPELINE_EXTRA_TAGS": "cost-center=analytics, team=data",
        }
    )
    assert settings.code_uri == "s3://code-bucket/spark"
    assert settings.log_uri == "s3://log-bucket/emr/"
    assert settings.release_label == "emr-7.9.0"
    assert settings.idle_timeout_seconds == 900
    assert settings.region == "eu-west-1"
    assert settings.extra_tags == {"cost-center": "analytics", "team": "data"}


def test_step_logs_default_to_the_last_200_lines_after_at_most_two_minutes_and_can_be_switched_off():
    settings = load_settings(EMR)
    assert (settings.step_log_lines, settings.step_log_wait_seconds) == (200, 120)
    off = load_settings(
        {**EMR, "PIPELINE_EMR_STEP_LOG_LINES": "0", "PIPELINE_EMR_STEP_LOG_WAIT_SECONDS": "0"}
    )
    assert (off.step_log_lines, off.step_log_wait_seconds) == (0, 0)


def test_emr_without_lake_and_subnet_names_both_variables():
    with pytest.raises(SettingsError) as err:
        load_settings({"PIPELINE_TARGET": "emr"})
    assert "PIPELINE_LAKE is required" in str(err.value)
    assert "PIPELINE_EMR_SUBNET_ID is required" in str(err.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("PIPELINE_TARGET", "k8s"),
        ("PIPELINE_LAKE", "file:///tmp/lake"),
        ("PIPELINE_EMR_SUBNET_ID", "vpc-123"),
        ("PIPELINE_EMR_MASTER_SG", "sg-nothex!"),
        ("PIPELINE_EMR_RELEASE", "emr-6.15.0"),
        ("PIPELINE_EMR_IDLE_TIMEOUT_SECONDS", "10"),
        ("PIPELINE_EMR_POLL_SECONDS", "soon"),
        ("PIPELINE_GLUE_DATABASE_PREFIX", "Analytics-DB"),
        ("PIPELINE_GLUE_DATABASE", "analytics"),  # renamed: the old name is refused, not ignored
        ("PIPELINE_AWS_REGION", "europe"),
        ("PIPELINE_CLUSTER_PROFILE", "huge"),
        ("PIPELINE_RETRIES", "-1"),
        ("PIPELINE_EXTRA_TAGS", "no-equals-sign"),
        ("PIPELINE_EMR_STEP_LOG_LINES", "-1"),
        ("PIPELINE_EMR_STEP_LOG_LINES", "all"),
        ("PIPELINE_EMR_STEP_LOG_WAIT_SECONDS", "-5"),
        ("PIPELINE_CLOUDWATCH_METRICS", "sometimes"),
        ("PIPELINE_CLOUDWATCH_NAMESPACE", "AWS/EMR"),  # AWS's own namespaces are refused by CloudWatch
        ("PIPELINE_CLOUDWATCH_NAMESPACE", "analytics; drop"),
        ("PIPELINE_CLOUDWATCH_NAMESPACE", "x" * 256),
    ],
)
def test_a_bad_value_fails_with_the_variables_name(var, value):
    with pytest.raises(SettingsError, match=var):
        load_settings({**EMR, var: value})


def test_cloudwatch_metrics_are_on_in_one_namespace_unless_told_otherwise():
    settings = load_settings(EMR)
    assert (settings.cloudwatch_metrics, settings.cloudwatch_namespace) == (True, "CustomerMarketAnalytics")
    other = load_settings(
        {**EMR, "PIPELINE_CLOUDWATCH_METRICS": "false", "PIPELINE_CLOUDWATCH_NAMESPACE": "Team/Analytics-1"}
    )
    assert (other.cloudwatch_metrics, other.cloudwatch_namespace) == (False, "Team/Analytics-1")


def test_security_groups_for_master_and_core_go_together():
    with pytest.raises(SettingsError, match="go together"):
        load_settings({**EMR, "PIPELINE_EMR_MASTER_SG": "sg-0123456789abcdef0"})


def test_the_local_target_refuses_an_s3_lake():
    with pytest.raises(SettingsError, match="PIPELINE_LAKE"):
        load_settings({"PIPELINE_LAKE": "s3://bucket/lake"})


@pytest.mark.parametrize(("value", "checked"), [("", True), ("true", True), ("TRUE", True), ("false", False)])
def test_preflight_is_on_unless_switched_off(value, checked):
    env = {"PIPELINE_EMR_PREFLIGHT": value} if value else {}
    assert load_settings(env).preflight is checked


def test_preflight_takes_only_true_or_false():
    with pytest.raises(SettingsError, match="PIPELINE_EMR_PREFLIGHT='no'"):
        load_settings({"PIPELINE_EMR_PREFLIGHT": "no"})


def test_the_audit_settings_default_to_the_issues_bands_and_are_read_when_given():
    from include.checks import AuditSettings

    assert load_settings({}).audit == AuditSettings((0.5, 2.0), 0.01, 0.10, {})
    audit = load_settings(
        {
            "PIPELINE_AUDIT_ROW_COUNT_BAND": "0.8..1.25",
            "PIPELINE_AUDIT_QUARANTINE_WARN": "0.02",
            "PIPELINE_AUDIT_QUARANTINE_ERROR": "0.2",
            "PIPELINE_AUDIT_SEVERITIES": "quarantine_share=error, row_count_vs_history=warn",
        }
    ).audit
    assert audit == AuditSettings(
        (0.8, 1.25), 0.02, 0.2, {"quarantine_share": "error", "row_count_vs_history": "warn"}
    )


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("PIPELINE_AUDIT_ROW_COUNT_BAND", "50%..200%", "is not a range LOW..HIGH"),
        ("PIPELINE_AUDIT_ROW_COUNT_BAND", "2.0..0.5", "is not a range LOW..HIGH"),
        ("PIPELINE_AUDIT_ROW_COUNT_BAND", "0.5", "is not a range LOW..HIGH"),
        ("PIPELINE_AUDIT_QUARANTINE_WARN", "1.5", "is not a share between 0 and 1"),
        ("PIPELINE_AUDIT_QUARANTINE_ERROR", "ten", "is not a share between 0 and 1"),
        ("PIPELINE_AUDIT_QUARANTINE_WARN", "0.5", "must not be above PIPELINE_AUDIT_QUARANTINE_ERROR"),
        ("PIPELINE_AUDIT_SEVERITIES", "no_such_check=warn", "no check named 'no_such_check'"),
        ("PIPELINE_AUDIT_SEVERITIES", "quarantine_share=fatal", "severity must be error or warn"),
        ("PIPELINE_AUDIT_SEVERITIES", "quarantine_share", "'quarantine_share' is not check=severity"),
    ],
)
def test_a_bad_audit_setting_fails_naming_the_setting(var, value, message):
    with pytest.raises(SettingsError, match=var) as err:
        load_settings({var: value})
    assert re.search(message, str(err.value)), str(err.value)


def test_a_bad_audit_setting_fails_the_dag_import_naming_it(tmp_path):
    """What Airflow sees: the DAG file does not import, and the error names the setting."""
    import subprocess
    import sys

    env = {**os.environ, "PIPELINE_AUDIT_ROW_COUNT_BAND": "0.5", "PYTHONPATH": str(PROJECT_ROOT)}
    env["AIRFLOW_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import runpy; runpy.run_path('dags/customer_analytics_nightly.py')"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "PIPELINE_AUDIT_ROW_COUNT_BAND='0.5' is not a range LOW..HIGH" in done.stderr


def _readme_settings_sections() -> dict[str, set[str]]:
    """README's Settings: each `### Settings: <section>` -> the variables its table documents."""
    text = (PROJECT_ROOT / "README.md").read_text()
    settings = text[text.index("\n## Settings\n") :]
    settings = settings[: settings.index("\n## ", 1)]
    sections: dict[str, set[str]] = {}
    for part in re.split(r"\n### Settings: ", settings)[1:]:
        name, _, body = part.partition("\n")
        first_cells = [line.split("|")[1] for line in body.splitlines() if line.startswith("| `")]
        sections[name.strip()] = {
            v for cell in first_cells for v in re.findall(r"`(PIPELINE_[A-Z0-9_]+)`", cell)
        }
    return sections


def test_every_setting_is_read_in_one_section_and_documented_in_the_readmes_same_section():
    from include.settings import ENV_VARS, SECTIONS

    assert list(SECTIONS) == ["target", "lake", "emr", "serverless", "lineage", "alerts", "audit"]
    assert len(ENV_VARS) == len(set(ENV_VARS))  # no variable in two sections
    assert _readme_settings_sections() == {name: set(section) for name, section in SECTIONS.items()}
    assert {
        "PIPELINE_AUDIT_ROW_COUNT_BAND",
        "PIPELINE_AUDIT_QUARANTINE_WARN",
        "PIPELINE_AUDIT_QUARANTINE_ERROR",
        "PIPELINE_AUDIT_SEVERITIES",
        "PIPELINE_GLUE_DATABASE_PREFIX",
        "PIPELINE_ALERT_EMAIL",
    } <= set(ENV_VARS)


def test_the_glue_prefix_is_one_reading_for_the_settings_and_the_jobs():
    from spark_jobs.catalog import glue_prefix

    assert glue_prefix({}) == load_settings({}).glue_database_prefix == "customer_analytics"
    env = {**EMR, "PIPELINE_GLUE_DATABASE_PREFIX": " acme "}
    assert glue_prefix(env) == load_settings(env).glue_database_prefix == "acme"
    assert load_settings(env).namespaces["curated"] == "acme_curated"


SERVERLESS = {
    **EMR,
    "PIPELINE_TARGET": "emr-serverless",
    "PIPELINE_SERVERLESS_EXECUTION_ROLE": "arn:aws:iam::123456789012:role/analytics-jobs",
    "PIPELINE_SERVERLESS_SECURITY_GROUP": "sg-0123456789abcdef0",
}


def test_serverless_shares_the_emr_sections_lake_code_and_logs_and_names_its_role_and_group():
    settings = load_settings(SERVERLESS)
    assert (settings.is_serverless, settings.is_emr, settings.on_aws) == (True, False, True)
    assert settings.code_uri == "s3://my-bucket/lake/_code"
    assert settings.log_uri == "s3://my-bucket/lake/_emr_logs/"
    assert settings.subnet_id == "subnet-0123456789abcdef0"
    assert settings.serverless_execution_role == "arn:aws:iam::123456789012:role/analytics-jobs"
    assert settings.serverless_security_group == "sg-0123456789abcdef0"
    assert load_settings(EMR).on_aws
    assert not load_settings({}).on_aws


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PIPELINE_SERVERLESS_EXECUTION_ROLE": ""}, "PIPELINE_SERVERLESS_EXECUTION_ROLE is required"),
        ({"PIPELINE_SERVERLESS_EXECUTION_ROLE": "analytics-jobs"}, "is not an IAM role ARN"),
        ({"PIPELINE_SERVERLESS_SECURITY_GROUP": ""}, "PIPELINE_SERVERLESS_SECURITY_GROUP is required"),
        ({"PIPELINE_SERVERLESS_SECURITY_GROUP": "default"}, "'default' is not a security group id"),
        (
            {"PIPELINE_EMR_SUBNET_ID": ""},
            "PIPELINE_EMR_SUBNET_ID is required when PIPELINE_TARGET=emr-serverless",
        ),
        ({"PIPELINE_LAKE": "/tmp/lake"}, "must be an s3://bucket/prefix URI for the emr-serverless target"),
        ({"PIPELINE_EMR_RELEASE": "emr-5.36.0"}, "PIPELINE_EMR_RELEASE"),
    ],
)
def test_serverless_settings_fail_naming_the_variable(change, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings({**SERVERLESS, **change})


def test_the_serverless_settings_are_ignored_by_the_other_targets():
    odd = {"PIPELINE_SERVERLESS_EXECUTION_ROLE": "x", "PIPELINE_SERVERLESS_SECURITY_GROUP": "y"}
    assert load_settings({**EMR, **odd}).is_emr
    assert load_settings(odd).target == "local"
