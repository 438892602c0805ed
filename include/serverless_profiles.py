"""EMR Serverless profiles as data, and the pure functions that turn one into the run's
CreateApplication request and the StartJobRun arguments every job run of the run shares.

The `dev` and `prod` profiles are the clusters' (include/cluster_profiles.py) in Serverless terms:
pre-initialized workers sized like the cluster's nodes (the driver one worker, the executors the
core nodes), the maximum capacity like the cluster's managed scaling limit, and each job's driver
and executor sizes fitting those workers (Spark's memory plus its 10 % overhead within the
worker's memory, so a job takes the pre-initialized workers instead of asking for new ones).
The Spark settings are the cluster's (`cluster_profiles.iceberg_configurations`): the same
Iceberg catalog on Glue, the same session defaults, the release's Python.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from include.cluster_profiles import _SPARK_DEFAULTS
from include.emr_release import cluster_python
from include.settings import Settings
from plugins.emr_naming import serverless_application_name
from spark_jobs.catalog import EXTENSIONS, catalog_conf

# The release's own Iceberg runtime on the Serverless image (EMR Serverless User Guide, "Using
# Apache Iceberg with EMR Serverless"): named on every job run, no Iceberg jar is shipped.
ICEBERG_RUNTIME = "/usr/share/aws/iceberg/lib/iceberg-spark3-runtime.jar"
AUTO_STOP_MINUTES = 15  # the net if the teardown never runs: an idle application stops itself

PROFILES: dict[str, dict[str, Any]] = {
    "dev": {
        "description": "x86_64; pre-initialized 1 driver (2 vCPU, 8 GB) + 2 executors (4 vCPU, 16 GB), "
        "at most 16 vCPU: the dev cluster's 1 + 2 m5.xlarge",
        "architecture": "X86_64",
        "initialCapacity": {
            "DRIVER": {"workerCount": 1, "workerConfiguration": {"cpu": "2 vCPU", "memory": "8 GB"}},
            "EXECUTOR": {"workerCount": 2, "workerConfiguration": {"cpu": "4 vCPU", "memory": "16 GB"}},
        },
        "maximumCapacity": {"cpu": "16 vCPU", "memory": "64 GB", "disk": "200 GB"},
        "spark": {
            "spark.driver.cores": "2",
            "spark.driver.memory": "7g",
            "spark.executor.cores": "4",
            "spark.executor.memory": "14g",
            "spark.dynamicAllocation.maxExecutors": "3",
            "spark.sql.shuffle.partitions": "64",
        },
    },
    "prod": {
        "description": "ARM64 (Graviton, as the prod cluster); pre-initialized 1 driver (4 vCPU, "
        "16 GB) + 10 executors (8 vCPU, 60 GB), at most 400 vCPU: the prod cluster's scaling limit",
        "architecture": "ARM64",
        "initialCapacity": {
            "DRIVER": {"workerCount": 1, "workerConfiguration": {"cpu": "4 vCPU", "memory": "16 GB"}},
            "EXECUTOR": {"workerCount": 10, "workerConfiguration": {"cpu": "8 vCPU", "memory": "60 GB"}},
        },
        "maximumCapacity": {"cpu": "400 vCPU", "memory": "3000 GB", "disk": "20000 GB"},
        "spark": {
            "spark.driver.cores": "4",
            "spark.driver.memory": "14g",
            "spark.executor.cores": "8",
            "spark.executor.memory": "54g",
            "spark.dynamicAllocation.maxExecutors": "49",
            "spark.sql.shuffle.partitions": "400",
            "spark.sql.adaptive.enabled": "true",
        },
    },
}


def application_request(
    profile: str, settings: Settings, *, dag_id: str, run_id: str, tags: Mapping[str, str]
) -> dict[str, Any]:
    """The CreateApplication request of a run's application under `settings`; a fresh dict."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    spec = copy.deepcopy(PROFILES[profile])
    return {
        # unique to the run (a retried create finds it by this name), within Serverless's 64 characters
        "name": serverless_application_name(dag_id, run_id),
        "releaseLabel": settings.release_label,
        "type": "SPARK",
        "architecture": spec["architecture"],
        "initialCapacity": spec["initialCapacity"],
        "maximumCapacity": spec["maximumCapacity"],
        # the first job run starts it; idle after the last one, it stops itself (the teardown
        # deletes it anyway, whatever happened)
        "autoStartConfiguration": {"enabled": True},
        "autoStopConfiguration": {"enabled": True, "idleTimeoutMinutes": AUTO_STOP_MINUTES},
        # a private subnet, one security group: the workers reach S3, Glue and KMS through it
        "networkConfiguration": {
            "subnetIds": [settings.subnet_id],
            "securityGroupIds": [settings.serverless_security_group],
        },
        "tags": {key: str(value)[:256] for key, value in sorted(tags.items())},
    }


def spark_conf(profile: str, settings: Settings) -> dict[str, str]:
    """Every job run's Spark properties: the profile's sizes, Iceberg on the Glue catalog, the
    session defaults and the release's Python (what a cluster's configuration gives its steps)."""
    python = cluster_python(settings.release_label)
    conf = {
        **_SPARK_DEFAULTS,
        "spark.sql.extensions": EXTENSIONS,
        # the driver and executors' PySpark on the release's Python
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": python,
        "spark.executorEnv.PYSPARK_PYTHON": python,
        **catalog_conf(settings.lake, glue_prefix=settings.glue_database_prefix),
        **PROFILES[profile]["spark"],
    }
    if settings.kms_key_arn and settings.s3_encryption == "SSE-KMS":
        # what Iceberg writes (S3FileIO) and what Spark writes through EMRFS: SSE-KMS with the key
        conf.update(
            {
                "spark.sql.catalog.lake.s3.sse.type": "kms",
                "spark.sql.catalog.lake.s3.sse.key": settings.kms_key_arn,
                "spark.hadoop.fs.s3.enableServerSideEncryption": "true",
                "spark.hadoop.fs.s3.serverSideEncryption.kms.keyId": settings.kms_key_arn,
            }
        )
    return conf


def job_defaults(profile: str, settings: Settings, *, tags: Mapping[str, str], timeout_minutes: int) -> dict:
    """What every job run of a run shares (StartJobRun's executionRoleArn, configurationOverrides,
    tags, executionTimeoutMinutes), its Spark properties (`spark_conf`) and jars (sparkSubmitParameters)."""
    monitoring: dict[str, Any] = {"logUri": settings.log_uri}
    if settings.kms_key_arn:
        monitoring["encryptionKeyArn"] = settings.kms_key_arn  # the driver's and executors' logs
    return {
        "executionRoleArn": settings.serverless_execution_role,
        "configurationOverrides": {"monitoringConfiguration": {"s3MonitoringConfiguration": monitoring}},
        "tags": {key: str(value)[:256] for key, value in sorted(tags.items())},
        "executionTimeoutMinutes": timeout_minutes,
        "spark": spark_conf(profile, settings),
        "jars": [ICEBERG_RUNTIME],  # before the code's own (the OpenLineage listener)
    }
