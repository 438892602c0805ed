"""The jobs' SparkSession, its catalog `lake` bound to the lake a job runs on.

Under spark-submit (EMR) the cluster's configuration sets Spark up; in local mode this starts
Spark with what EMR gives a cluster by configuration (Iceberg, its SQL, s3 through s3a); in a
long-lived local application (`spark_jobs.server`) each job gets a new session of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

from spark_jobs.catalog import EXTENSIONS, is_s3
from spark_jobs.tables import bind, close_catalog

# Set by a long-lived local Spark application (spark_jobs.server) that runs many jobs: each job
# then gets a new session of it (own SQL settings, catalogs and temporary views) instead of a JVM.
_SHARED: SparkSession | None = None
_ISSUED: list[SparkSession] = []  # the sessions handed out of _SHARED, closed after each job

JARS_DIR_VAR = "SPARK_JOBS_JARS_DIR"
ANSI = "spark.sql.ansi.enabled"
_DEFAULT_JARS_DIR = Path(__file__).resolve().parent.parent / ".cache" / "jars"
# Local runs need Iceberg's runtime, the SQLite JDBC driver and the OpenLineage listener (it only
# listens when a job's lineage settings say so: spark_jobs.lineage) built for this Spark's Scala
# (2.13 for Spark 4, 2.12 for Spark 3.5: `make jars` also keeps the 2.12 listener, which emr-7.x
# clusters are sent); an s3:// lake (the EMR target's commands run locally against a stand-in of
# S3 and Glue) also Iceberg's AWS bundle (its AWS SDK v2 serves s3a too) and s3a. A folder of the
# emr-7.x line's jars (Hadoop 3.3's s3a on the AWS SDK v1) works the same.
SCALA_BINARY = "2.12" if pyspark.__version__.startswith("3.") else "2.13"
_LOCAL_JARS = ("iceberg-spark-runtime-", "sqlite-jdbc-", f"openlineage-spark_{SCALA_BINARY}-")
_S3_JARS = ("iceberg-aws-bundle-", "hadoop-aws-")
_S3_SDK_JARS = {"3.": ("aws-java-sdk-bundle-",), "4.": ("s3-transfer-manager-", "analyticsaccelerator-s3-")}


def local_jars(*, s3: bool = False) -> list[str]:
    """The Spark packages of a local run (fetched by `make jars`), as absolute paths."""
    folder = Path(os.environ.get(JARS_DIR_VAR) or _DEFAULT_JARS_DIR)
    sdk = _S3_SDK_JARS[pyspark.__version__[:2]]
    wanted = _LOCAL_JARS + (_S3_JARS + sdk if s3 else ())
    found = sorted(str(p) for p in folder.glob("*.jar") if p.name.startswith(wanted))
    missing = [w for w in wanted if not any(Path(f).name.startswith(w) for f in found)]
    if missing:
        raise RuntimeError(
            f"no {', '.join(m + '*.jar' for m in missing)} in {folder}: run `make jars` "
            f"(or point {JARS_DIR_VAR} at a folder holding them)"
        )
    return found


# Local mode runs development-sized data in one JVM (driver and executor). The JVM's server
# defaults compile hot code twice (C1, then C2) and collect garbage with parallel threads: on a
# laptop or a 2-core runner that work competes with the job itself, and a local step ends
# before C2's code pays off. Quick compilation only and the serial collector took the same
# three jobs from 179-220 s to 86-98 s on 2 busy cores (docs/BENCHMARKS.md). EMR clusters keep
# the JVM's defaults; SPARK_DRIVER_JAVA_OPTIONS="" restores them locally (large local data).
# Quick compilation only also shrinks the JVM's default code cache from 240 MB to 48 MB, and one
# application runs a whole local run (spark_jobs.server) or test session: Spark's generated
# classes filled it (max 48.4 MB of 48 MB in a test nightly), and a full cache turns compilation
# off for good or ends the JVM ("Out of space in CodeCache for adapters", a task's
# VirtualMachineError). The tiered default's size is kept.
LOCAL_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=240m"


def local_builder(app_name: str, *, master: str | None = None, s3: bool = False) -> SparkSession.Builder:
    """A local-mode session with what EMR gives a cluster by configuration: Iceberg and its SQL."""
    jvm_options = os.environ.get("SPARK_DRIVER_JAVA_OPTIONS", LOCAL_JVM_OPTIONS)
    # Python workers (pandas UDFs) run the driver's interpreter and packages unless told otherwise;
    # PySpark reads this when the SparkContext starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or os.environ.get("SPARK_MASTER", "local[*]"))
        .config("spark.jars", ",".join(local_jars(s3=s3)))
        .config("spark.sql.extensions", EXTENSIONS)
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.driver.extraJavaOptions", jvm_options)
        .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # ANSI SQL, as on an EMR cluster (emr-spark-8.x's default; include/cluster_profiles.py
        # sets it on emr-7.x too): a cast or an arithmetic that fails raises instead of giving
        # null. Landing values are typed with try_cast, so a bad one is a quarantine row.
        .config(ANSI, "true")
        # Our row_number() = 1 filters deduplicate by transaction/event id, which are nearly all
        # unique: Spark 3.5's partial WindowGroupLimit would sort every row before the shuffle
        # and drop none (one extra sort of the whole input; see docs/BENCHMARKS.md, figure 2).
        .config("spark.sql.optimizer.windowGroupLimitThreshold", "-1")
        # Listing landing directories from the driver takes milliseconds; above the default
        # threshold (32 paths) Spark starts a job to list them (seconds for a history range).
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "4096")
    )
    if s3:
        builder = _with_local_s3(builder)
    return builder


def _with_local_s3(builder: SparkSession.Builder) -> SparkSession.Builder:
    """s3:// through Hadoop's s3a (EMR has EMRFS), at AWS_ENDPOINT_URL(_S3) when one is set (moto)."""
    builder = builder.config("spark.hadoop.fs.s3.impl", "org.apache.hadoop.fs.s3a.S3AFileSystem")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        builder = (
            builder.config("spark.hadoop.fs.s3a.endpoint", endpoint)
            .config("spark.hadoop.fs.s3a.path.style.access", "true")
            .config("spark.hadoop.fs.s3a.connection.ssl.enabled", str(endpoint.startswith("https")).lower())
            .config("spark.hadoop.fs.s3a.change.detection.mode", "none")
        )
    return builder


def get_spark(app_name: str = "spark_jobs", lake: str | None = None) -> SparkSession:
    """The job's SparkSession, its catalog `lake` serving `lake`.

    Under spark-submit (EMR) the cluster's configuration set up the catalog; in local mode
    (`python -m spark_jobs`) this starts Spark with Iceberg and points the catalog at the lake.
    """
    if _SHARED is not None:
        spark = _SHARED.newSession()
        _ISSUED.append(spark)
    elif "PYSPARK_GATEWAY_PORT" in os.environ:
        # spark-submit opened the gateway: the cluster's session, configured by the cluster.
        spark = SparkSession.builder.appName(app_name).getOrCreate()
    else:
        spark = local_builder(app_name, s3=bool(lake and is_s3(lake))).getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    if lake:
        spark = bind(spark, lake)
        if _SHARED is not None:
            _ISSUED.append(spark)
    return spark


def release_sessions() -> None:
    """Close the catalogs of the sessions handed out since the last call (a shared application
    between two jobs): their connections to the catalog go with the job that opened them."""
    while _ISSUED:
        close_catalog(_ISSUED.pop())
