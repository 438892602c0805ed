"""Shared plumbing of the jobs: arguments, the Spark session, and paths of the landing files.

The tables (processed, quarantine, curated zones) are Iceberg tables: see `spark_jobs.tables`.
Landing stays the files upstream delivers; they, the run metrics and the stream checkpoints are
read and written through Hadoop's FileSystem, so the same code works on `file://` locally and
on `s3://` (EMRFS) on a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

log = logging.getLogger("spark_jobs")

_MICROS_PER_DAY = 86_400_000_000
_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LAKE_RE = re.compile(r"^(file|s3|s3a)://[A-Za-z0-9._/+=@-]+$")


class JobInputError(Exception):
    """Bad input (missing partition, wrong header, ...): one line on stderr, exit code 2."""


# ---- arguments -----------------------------------------------------------------------------
def parse_ds(value: str) -> dt.date:
    """A real calendar date written YYYY-MM-DD, or JobInputError."""
    if not isinstance(value, str) or not _DS_RE.match(value):
        raise JobInputError(f"date {value!r} is not YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise JobInputError(f"date {value!r} is not a calendar date: {exc}") from None


def normalize_lake(value: str) -> str:
    """A lake URI without trailing slash; a plain local path becomes an absolute file:// URI."""
    if "://" not in value:
        value = Path(value).resolve().as_uri()
    value = value.rstrip("/")
    if not _LAKE_RE.match(value):
        raise JobInputError(f"lake {value!r} is not a file://, s3:// or s3a:// URI")
    return value


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise JobInputError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


# ---- Spark ---------------------------------------------------------------------------------
# Set by a long-lived local Spark application (spark_jobs.server) that runs many jobs: each job
# then gets a new session of it (own SQL settings, catalogs and temporary views) instead of a JVM.
_SHARED: SparkSession | None = None
_ISSUED: list[SparkSession] = []  # the sessions handed out of _SHARED, closed after each job

JARS_DIR_VAR = "SPARK_JOBS_JARS_DIR"
_DEFAULT_JARS_DIR = Path(__file__).resolve().parent.parent / ".cache" / "jars"
# Local runs need Iceberg's runtime, the SQLite JDBC driver and the OpenLineage listener (it only
# listens when a job's lineage settings say so: spark_jobs.lineage); an s3:// lake (the EMR
# target's commands run locally against a stand-in of S3 and Glue) also Iceberg's AWS bundle and s3a.
_LOCAL_JARS = ("iceberg-spark-runtime-", "sqlite-jdbc-", "openlineage-spark_")
_S3_JARS = ("iceberg-aws-bundle-", "hadoop-aws-", "aws-java-sdk-bundle-")


def local_jars(*, s3: bool = False) -> list[str]:
    """The Spark packages of a local run (fetched by `make jars`), as absolute paths."""
    folder = Path(os.environ.get(JARS_DIR_VAR) or _DEFAULT_JARS_DIR)
    wanted = _LOCAL_JARS + (_S3_JARS if s3 else ())
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
LOCAL_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def local_builder(app_name: str, *, master: str | None = None, s3: bool = False) -> SparkSession.Builder:
    """A local-mode session with what EMR gives a cluster by configuration: Iceberg and its SQL."""
    from spark_jobs.catalog import EXTENSIONS

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
    from spark_jobs.catalog import is_s3
    from spark_jobs.tables import bind

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
    from spark_jobs.tables import close_catalog

    while _ISSUED:
        close_catalog(_ISSUED.pop())


def hadoop_fs(spark: SparkSession, uri: str):
    """(Hadoop FileSystem, Path) of a URI: file:// locally, s3:// on EMR (EMRFS) or through s3a."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def path_exists(spark: SparkSession, uri: str) -> bool:
    fs, path = hadoop_fs(spark, uri)
    return bool(fs.exists(path))


def delete_path(spark: SparkSession, uri: str) -> None:
    fs, path = hadoop_fs(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def read_text(spark: SparkSession, uri: str) -> str:
    """A small text object, through Hadoop's FileSystem (FileNotFoundException when absent)."""
    fs, path = hadoop_fs(spark, uri)
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write (replace) a small text object, through Hadoop's FileSystem."""
    fs, path = hadoop_fs(spark, uri)
    out = fs.create(path, True)
    try:
        out.write(bytearray(text.encode()))
    finally:
        out.close()


# ---- landing files -------------------------------------------------------------------------
def landing_path(lake: str, dataset: str, ds: dt.date | str | None = None) -> str:
    """`LAKE/landing/<dataset>[/dt=YYYY-MM-DD]`: where upstream systems deliver their files."""
    base = f"{lake}/landing/{dataset}"
    return base if ds is None else f"{base}/dt={ds}"


def utc_date(ts: Column) -> Column:
    """The UTC calendar date of a timestamp, whatever the session time zone is."""
    return F.date_from_unix_date(F.floor(F.unix_micros(ts) / F.lit(_MICROS_PER_DAY)).cast("int"))
