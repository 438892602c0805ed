"""EMR cluster profiles as data, and the pure function that turns one into RunJobFlow overrides.

A profile holds only what differs between sizes (instances, step concurrency, Spark tuning);
`job_flow_overrides` adds the deployment's settings (release, roles, network, log URI) and the
run's tags to a deep copy, so the module-level profiles are never changed by a run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from include.emr_release import cluster_python, line_of
from include.settings import Settings
from plugins.emr_naming import run_tags, safe_name
from spark_jobs.catalog import EXTENSIONS, catalog_conf

# Steps of independent branches (the five ingests, then graph/rolling/stock/clickstream) run
# side by side up to StepConcurrencyLevel; YARN shares the nodes between them.
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {
        "description": "1 master + 2 core m5.xlarge, on demand: small days and tests",
        "StepConcurrencyLevel": 3,
        "InstanceGroups": [
            {
                "Name": "master",
                "InstanceRole": "MASTER",
                "Market": "ON_DEMAND",
                "InstanceType": "m5.xlarge",
                "InstanceCount": 1,
            },
            {
                "Name": "core",
                "InstanceRole": "CORE",
                "Market": "ON_DEMAND",
                "InstanceType": "m5.xlarge",
                "InstanceCount": 2,
            },
        ],
        "SparkDefaults": {"spark.sql.shuffle.partitions": "64"},
    },
    "prod": {
        "description": "instance fleets on Graviton: primary m7g.2xlarge, 5 core r7g/r6g.4xlarge on "
        "demand, task nodes on spot over six types (capacity-optimized, on-demand fallback), "
        "managed scaling",
        "StepConcurrencyLevel": 5,
        "InstanceFleets": [
            {
                "Name": "primary",
                "InstanceFleetType": "MASTER",
                "TargetOnDemandCapacity": 1,
                "InstanceTypeConfigs": [{"InstanceType": "m7g.2xlarge"}, {"InstanceType": "m6g.2xlarge"}],
            },
            {
                # Core nodes hold HDFS and shuffle data: on demand, fixed, memory-heavy.
                "Name": "core",
                "InstanceFleetType": "CORE",
                "TargetOnDemandCapacity": 5,
                "InstanceTypeConfigs": [
                    {"InstanceType": "r7g.4xlarge", "WeightedCapacity": 1},
                    {"InstanceType": "r6g.4xlarge", "WeightedCapacity": 1},
                ],
                "LaunchSpecifications": {"OnDemandSpecification": {"AllocationStrategy": "lowest-price"}},
            },
            {
                # Spot capacity from the deepest pools of several types and generations (AWS's
                # advice: the more pools, the fewer interruptions); on demand when spot cannot be
                # had within the timeout. All 16 vCPUs, so one unit is one node whichever type.
                "Name": "task-spot",
                "InstanceFleetType": "TASK",
                "TargetSpotCapacity": 2,
                "TargetOnDemandCapacity": 0,
                "InstanceTypeConfigs": [
                    {"InstanceType": t, "WeightedCapacity": 1}
                    for t in (
                        "c7g.4xlarge",
                        "c6g.4xlarge",
                        "m7g.4xlarge",
                        "m6g.4xlarge",
                        "r7g.4xlarge",
                        "r6g.4xlarge",
                    )
                ],
                "LaunchSpecifications": {
                    "SpotSpecification": {
                        "AllocationStrategy": "capacity-optimized",
                        "TimeoutDurationMinutes": 10,
                        "TimeoutAction": "SWITCH_TO_ON_DEMAND",
                    }
                },
            },
        ],
        # Scaling adds or removes task capacity only (limits count core + task units, not the
        # primary); on-demand room above the core's 5 units is for the task fleet's fallback.
        "ManagedScalingPolicy": {
            "ComputeLimits": {
                "UnitType": "InstanceFleetUnits",
                "MinimumCapacityUnits": 5,
                "MaximumCapacityUnits": 25,
                "MaximumOnDemandCapacityUnits": 7,
                "MaximumCoreCapacityUnits": 5,
            }
        },
        "SparkDefaults": {"spark.sql.shuffle.partitions": "400", "spark.sql.adaptive.enabled": "true"},
    },
}

# Every cluster, whatever its size. ANSI SQL is emr-spark-8.x's default and local runs' setting
# (spark_jobs/session.py); named here so that an emr-7.x cluster (Spark 3.5: off by default)
# runs the jobs the same way: a failing cast or arithmetic raises instead of giving null.
_SPARK_DEFAULTS = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true"}


def instance_types(profile: str) -> set[str]:
    """Every instance type a profile's cluster may run (a fleet's choices included)."""
    spec = PROFILES[profile]
    groups = {g["InstanceType"] for g in spec.get("InstanceGroups", [])}
    fleets = {c["InstanceType"] for f in spec.get("InstanceFleets", []) for c in f["InstanceTypeConfigs"]}
    return groups | fleets


def cluster_tags(
    *, dag_id: str, run_id: str, ds: str, profile: str, extra: Mapping[str, str] = ()
) -> dict[str, str]:
    """Tags naming the DAG and run on the cluster (and, by EMR propagation, its instances)."""
    tags = dict(extra)
    tags.update({**run_tags(dag_id, run_id), "ds": ds, "cluster_profile": profile})
    return tags


def iceberg_configurations(settings: Settings, spark_defaults: Mapping[str, str]) -> list[dict[str, Any]]:
    """The release's own Iceberg, switched on, and the Spark catalog `lake` on the Glue Data Catalog.

    No Iceberg jar is shipped: `iceberg-defaults` puts the release's Iceberg on Spark's classpath,
    and spark-defaults names the catalog, its warehouse and the zones' Glue databases exactly as
    local runs name them (spark_jobs/catalog.py is the one source).
    """
    catalog = catalog_conf(settings.lake, glue_prefix=settings.glue_database_prefix)
    python = cluster_python(settings.release_label)
    return [
        {"Classification": "iceberg-defaults", "Properties": {"iceberg.enabled": "true"}},
        # PySpark on the release line's Python (emr_release.Line.python), named rather than left to
        # PATH: spark_jobs/ is kept to the oldest of them (make test checks it with vermin,
        # tests/include/test_emr_release.py).
        {
            "Classification": "spark-env",
            "Configurations": [{"Classification": "export", "Properties": {"PYSPARK_PYTHON": python}}],
            "Properties": {},
        },
        {
            "Classification": "spark-defaults",
            "Properties": {
                **_SPARK_DEFAULTS,
                "spark.sql.extensions": EXTENSIONS,
                # cluster deploy mode: the driver runs in YARN's application master
                "spark.yarn.appMasterEnv.PYSPARK_PYTHON": python,
                "spark.executorEnv.PYSPARK_PYTHON": python,
                **catalog,
                **spark_defaults,
            },
        },
    ]


def job_flow_overrides(
    profile: str, settings: Settings, *, name: str, tags: Mapping[str, str]
) -> dict[str, Any]:
    """The RunJobFlow request for `profile` under `settings`; a fresh dict each call."""
    if profile not in PROFILES:
        raise ValueError(f"unknown cluster profile {profile!r}; choose from {sorted(PROFILES)}")
    spec = copy.deepcopy(PROFILES[profile])

    # a profile is on instance groups (one type per role) or instance fleets (several types)
    collection = "InstanceFleets" if "InstanceFleets" in spec else "InstanceGroups"
    instances: dict[str, Any] = {
        collection: spec[collection],
        # Steps are added after creation, one branch at a time: an idle cluster must not end
        # itself between two steps. The teardown terminates it; AutoTerminationPolicy is the net.
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
        # A private subnet (no route to an internet gateway, no public IPs on launch) and no
        # Ec2KeyName: nobody logs in to the nodes; step logs go to LogUri.
        "Ec2SubnetId": settings.subnet_id,
    }
    # EMR-managed security groups: EMR keeps their rules to what the cluster needs. In a private
    # subnet EMR also requires the service access group (its own endpoint reaches the master).
    if settings.master_security_group:
        instances["EmrManagedMasterSecurityGroup"] = settings.master_security_group
        instances["EmrManagedSlaveSecurityGroup"] = settings.core_security_group
    if settings.service_security_group:
        instances["ServiceAccessSecurityGroup"] = settings.service_security_group

    overrides: dict[str, Any] = {
        "Name": safe_name(name)[:256],
        "ReleaseLabel": settings.release_label,
        "Applications": [{"Name": app} for app in line_of(settings.release_label).applications],
        "LogUri": settings.log_uri,
        "ServiceRole": settings.service_role,
        "JobFlowRole": settings.instance_profile,
        "VisibleToAllUsers": True,
        # Encryption at rest (S3 + local disks) and in transit (TLS), and IMDSv2 only: see
        # infra/documents.py, which defines this configuration (scripts/ or the stack creates it).
        "SecurityConfiguration": settings.security_configuration,
        "Instances": instances,
        "StepConcurrencyLevel": spec["StepConcurrencyLevel"],
        "AutoTerminationPolicy": {"IdleTimeout": settings.idle_timeout_seconds},
        "Configurations": iceberg_configurations(settings, spec["SparkDefaults"]),
        "Tags": [{"Key": key, "Value": str(value)[:256]} for key, value in sorted(tags.items())],
    }
    if "ManagedScalingPolicy" in spec:
        overrides["ManagedScalingPolicy"] = spec["ManagedScalingPolicy"]
    return overrides
