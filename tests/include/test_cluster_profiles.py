"""Cluster profiles become complete RunJobFlow requests without ever changing the profiles themselves."""

from __future__ import annotations

import copy

import pytest

from include.cluster_profiles import PROFILES, cluster_tags, instance_types, job_flow_overrides
from include.emr_release import GRAVITON_FAMILIES
from include.settings import load_settings

_ENV = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://bucket/lake",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
    "PIPELINE_EMR_IDLE_TIMEOUT_SECONDS": "1800",
}
SETTINGS = load_settings(_ENV)
TAGS = {"project": "p", "dag_id": "d"}


def _groups(req: dict) -> dict[str, tuple]:
    return {
        g["InstanceRole"]: (g["InstanceType"], g["InstanceCount"], g["Market"])
        for g in req["Instances"]["InstanceGroups"]
    }


def test_dev_is_one_master_and_two_core_m5_xlarge_on_demand():
    req = job_flow_overrides("dev", SETTINGS, name="n", tags=TAGS)
    assert _groups(req) == {"MASTER": ("m5.xlarge", 1, "ON_DEMAND"), "CORE": ("m5.xlarge", 2, "ON_DEMAND")}
    assert "ManagedScalingPolicy" not in req


def test_prod_runs_instance_fleets_of_graviton_types_with_spot_task_capacity_over_six_types():
    req = job_flow_overrides("prod", SETTINGS, name="n", tags=TAGS)
    assert "InstanceGroups" not in req["Instances"]
    fleets = {f["InstanceFleetType"]: f for f in req["Instances"]["InstanceFleets"]}
    assert set(fleets) == {"MASTER", "CORE", "TASK"}
    assert fleets["MASTER"]["TargetOnDemandCapacity"] == 1
    assert fleets["CORE"]["TargetOnDemandCapacity"] == 5
    assert "TargetSpotCapacity" not in fleets["CORE"]  # HDFS and shuffle data stay on demand
    task = fleets["TASK"]
    assert task["TargetSpotCapacity"] == 2
    assert task["TargetOnDemandCapacity"] == 0
    types = [c["InstanceType"] for c in task["InstanceTypeConfigs"]]
    assert len(set(types)) >= 4  # AWS's advice for spot: many capacity pools
    assert len({t.split(".")[0] for t in types}) >= 4  # of several families and generations
    spot = task["LaunchSpecifications"]["SpotSpecification"]
    assert spot["AllocationStrategy"] == "capacity-optimized"
    assert spot["TimeoutAction"] == "SWITCH_TO_ON_DEMAND"  # the fallback
    assert {t.split(".")[0] for t in instance_types("prod")} <= GRAVITON_FAMILIES
    limits = req["ManagedScalingPolicy"]["ComputeLimits"]
    assert limits["UnitType"] == "InstanceFleetUnits"
    assert limits["MinimumCapacityUnits"] == 5  # the core nodes
    assert limits["MaximumCoreCapacityUnits"] == 5  # scaling adds task capacity only
    assert limits["MaximumOnDemandCapacityUnits"] > 5  # room for the task fleet's on-demand fallback
    assert limits["MaximumCapacityUnits"] > limits["MaximumOnDemandCapacityUnits"]


@pytest.mark.parametrize(
    ("release", "python"), [("emr-spark-8.1.0", "/usr/bin/python3.11"), ("emr-7.13.0", "/usr/bin/python3.9")]
)
def test_every_profile_names_pyspark_s_python_the_release_line_s(release, python):
    settings = load_settings({**_ENV, "PIPELINE_EMR_RELEASE": release})
    for profile in PROFILES:
        by_class = {
            c["Classification"]: c
            for c in job_flow_overrides(profile, settings, name="n", tags=TAGS)["Configurations"]
        }
        exported = by_class["spark-env"]["Configurations"][0]
        assert exported["Classification"] == "export"
        assert exported["Properties"] == {"PYSPARK_PYTHON": python}
        spark = by_class["spark-defaults"]["Properties"]
        assert spark["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == python
        assert spark["spark.executorEnv.PYSPARK_PYTHON"] == python


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_is_a_transient_spark_cluster_with_a_safety_net(profile):
    req = job_flow_overrides(profile, SETTINGS, name="customer_analytics_nightly-2024-06-30", tags=TAGS)
    assert req["Name"] == "customer_analytics_nightly-2024-06-30"
    assert req["ReleaseLabel"] == SETTINGS.release_label
    assert req["Applications"] == [{"Name": "Spark"}]
    assert req["LogUri"] == "s3://bucket/lake/_emr_logs/"
    assert req["StepConcurrencyLevel"] > 1
    assert req["AutoTerminationPolicy"] == {"IdleTimeout": 1800}
    assert req["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert req["Instances"]["TerminationProtected"] is False
    assert req["Instances"]["Ec2SubnetId"] == "subnet-0123456789abcdef0"
    assert "EmrManagedMasterSecurityGroup" not in req["Instances"]  # not configured: EMR's defaults
    assert req["Tags"] == [{"Key": "dag_id", "Value": "d"}, {"Key": "project", "Value": "p"}]
    spark = next(c for c in req["Configurations"] if c["Classification"] == "spark-defaults")
    assert spark["Properties"]["spark.sql.session.timeZone"] == "UTC"
    assert spark["Properties"]["spark.sql.ansi.enabled"] == "true"


def test_security_groups_are_passed_when_configured():
    settings = load_settings(
        {
            "PIPELINE_TARGET": "emr",
            "PIPELINE_LAKE": "s3://bucket/lake",
            "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
            "PIPELINE_EMR_MASTER_SG": "sg-00000000000000001",
            "PIPELINE_EMR_CORE_SG": "sg-00000000000000002",
            "PIPELINE_EMR_SERVICE_SG": "sg-00000000000000003",
        }
    )
    inst = job_flow_overrides("dev", settings, name="n", tags=TAGS)["Instances"]
    assert inst["EmrManagedMasterSecurityGroup"] == "sg-00000000000000001"
    assert inst["EmrManagedSlaveSecurityGroup"] == "sg-00000000000000002"
    assert inst["ServiceAccessSecurityGroup"] == "sg-00000000000000003"


def test_a_request_is_a_fresh_copy_changing_it_changes_neither_the_profile_nor_the_next_request():
    before = copy.deepcopy(PROFILES)
    first = job_flow_overrides("prod", SETTINGS, name="n", tags=TAGS)
    first["Instances"]["InstanceFleets"][1]["TargetOnDemandCapacity"] = 99
    first["ManagedScalingPolicy"]["ComputeLimits"]["MaximumCapacityUnits"] = 0
    first["Configurations"][0]["Properties"]["x"] = "y"
    assert before == PROFILES
    assert job_flow_overrides("prod", SETTINGS, name="n", tags=TAGS) != first


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown cluster profile"):
        job_flow_overrides("xl", SETTINGS, name="n", tags=TAGS)


def test_cluster_tags_name_the_project_dag_run_and_date_in_emr_safe_characters():
    tags = cluster_tags(
        dag_id="customer_analytics_nightly",
        run_id="manual__2024-06-30T02:00:00+00:00 (retry)",
        ds="2024-06-30",
        profile="dev",
        extra={"team": "data", "project": "overridden?"},
    )
    assert tags == {
        "team": "data",
        "project": "customer-market-analytics",
        "dag_id": "customer_analytics_nightly",
        "run_id": "manual__2024-06-30T02:00:00+00:00__retry_",
        "ds": "2024-06-30",
        "cluster_profile": "dev",
    }
