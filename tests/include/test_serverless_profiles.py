"""EMR Serverless profiles and the job runs a plan renders (pure: no AWS, no Airflow run)."""

from __future__ import annotations

import re
import shlex

import pytest

from include import pipeline as P
from include.planning import plan_nightly
from include.serverless_profiles import ICEBERG_RUNTIME, PROFILES, application_request
from include.settings import load_settings
from include.upkeep import plan_maintenance
from plugins.emr_naming import serverless_application_name
from tests.harness.settings import SERVERLESS_ENV

CODE = {
    "version": "0123456789ab",
    "py_files": "s3://lake-bucket/lake/_code/0123456789ab/spark_jobs-0123456789ab.zip",
    "entrypoint": "s3://lake-bucket/lake/_code/0123456789ab/spark_jobs_main.py",
    "jars": "s3://lake-bucket/lake/_code/jars/openlineage-spark_2.13-1.53.0.jar",
}
RUN_ID = "scheduled__2024-06-30T02:00:00+00:00"


def _gb(text: str) -> float:
    (number,) = re.fullmatch(r"(\d+)\s*(?:GB|g)", text).groups()
    return float(number)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_jobs_driver_and_executor_fit_the_pre_initialized_workers(profile):
    """Spark's memory plus its 10 % overhead (at least 384 MB) within the worker's memory, and the
    cores the worker's: a job then takes the pre-initialized workers instead of asking for new ones."""
    spec = PROFILES[profile]
    for role, prefix in (("DRIVER", "spark.driver"), ("EXECUTOR", "spark.executor")):
        worker = spec["initialCapacity"][role]["workerConfiguration"]
        memory = _gb(spec["spark"][f"{prefix}.memory"])
        assert memory + max(0.384, memory * 0.10) <= _gb(worker["memory"]), (profile, role)
        assert f"{spec['spark'][f'{prefix}.cores']} vCPU" == worker["cpu"], (profile, role)
    executors = spec["initialCapacity"]["EXECUTOR"]["workerCount"]
    cpu = int(spec["maximumCapacity"]["cpu"].split()[0])
    executor_cpu = int(spec["spark"]["spark.executor.cores"])
    driver_cpu = int(spec["spark"]["spark.driver.cores"])
    # the most executors a job may ask for fit the maximum capacity with the driver
    assert int(spec["spark"]["spark.dynamicAllocation.maxExecutors"]) * executor_cpu + driver_cpu <= cpu
    assert executors <= int(spec["spark"]["spark.dynamicAllocation.maxExecutors"])


def test_the_application_name_is_the_runs_own_within_serverless_rules():
    long_run = "manual__2024-06-30T00:00:00.123456+00:00_with_a_very_long_suffix_from_the_api"
    names = {
        serverless_application_name(dag, run)
        for dag in ("a", "customer_analytics_backfill")
        for run in (RUN_ID, long_run)
    }
    assert len(names) == 4
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._/#-]{1,64}", name), name
    assert serverless_application_name("a", RUN_ID) == serverless_application_name("a", RUN_ID)


def test_the_maintenance_job_run_gets_exactly_what_the_nightlys_job_runs_get():
    settings = load_settings(SERVERLESS_ENV)
    from include.lineage import spark_properties

    conf = spark_properties(settings)
    maintenance = plan_maintenance(
        settings, dag_id="m", run_id=RUN_ID, ds="2024-06-30", keep_days=14, code=CODE
    )
    nightly = plan_nightly(
        settings,
        dag_id="n",
        run_id=RUN_ID,
        ds="2024-06-30",
        params={"cluster_profile": "dev", "outputs": list(P.OUTPUTS)},
        code=CODE,
    )
    (maintain,) = maintenance.job_runs(P.MAINTAIN.name, conf)
    (graph,) = nightly.job_runs("graph", conf)
    for key in ("executionRoleArn", "configurationOverrides", "executionTimeoutMinutes"):
        assert maintain[key] == graph[key], key
    params = [shlex.split(r["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]) for r in (maintain, graph)]
    assert params[0] == params[1]  # the same jars, code and Spark properties
    assert params[0][:2] == ["--jars", f"{ICEBERG_RUNTIME},{CODE['jars']}"]
    assert maintain["jobDriver"]["sparkSubmit"]["entryPointArguments"][0] == "maintain"
    assert maintenance.serverless["application"]["name"] == serverless_application_name("m", RUN_ID)


def test_without_a_kms_key_nothing_names_one_and_prod_runs_on_graviton():
    env = {k: v for k, v in SERVERLESS_ENV.items() if k != "PIPELINE_EMR_KMS_KEY_ARN"}
    settings = load_settings(env)
    request = application_request("prod", settings, dag_id="n", run_id=RUN_ID, tags={"project": "p"})
    assert (request["architecture"], request["maximumCapacity"]["cpu"]) == ("ARM64", "400 vCPU")
    nightly = plan_nightly(
        settings,
        dag_id="n",
        run_id=RUN_ID,
        ds="2024-06-30",
        params={"cluster_profile": "prod", "outputs": list(P.OUTPUTS)},
        code=CODE,
    )
    (run,) = nightly.job_runs("graph", {})
    assert run["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"] == {
        "logUri": "s3://lake-bucket/lake/_emr_logs/"
    }
    params = run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    assert ".s3.sse." not in params
    assert "serverSideEncryption" not in params
    assert "spark.executor.memory=54g" in run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    with pytest.raises(ValueError, match="unknown profile"):
        application_request("huge", settings, dag_id="n", run_id=RUN_ID, tags={})
