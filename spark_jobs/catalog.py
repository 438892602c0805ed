"""Where the lake's Iceberg tables live: the Spark catalog `lake`, its namespaces and its settings.

One source for both targets. Locally the catalog is Iceberg's JDBC catalog on a SQLite file
inside the lake (`LAKE/_catalog/iceberg.db`, data under `LAKE/warehouse`), so Spark, pyiceberg
and DuckDB read the same tables. On EMR it is the Glue Data Catalog through Iceberg's Glue
catalog, one Glue database per zone (`<prefix>_processed`, ...); the cluster's configuration
sets it up (`include/cluster_profiles.py` calls `catalog_conf` too) and the release's own
Iceberg serves it.

Pure Python, no Spark import: the DAGs import it at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

CATALOG = "lake"
ZONES = ("processed", "quarantine", "curated")  # the zones that are Iceberg tables (landing is files)
CATALOG_FILE = "_catalog/iceberg.db"
WAREHOUSE = "warehouse"
DEFAULT_GLUE_PREFIX = "customer_analytics"
GLUE_PREFIX_ENV = "PIPELINE_GLUE_DATABASE_PREFIX"

# Spark settings that are ours, not Spark's or Iceberg's: which lake a session's catalog serves
# and each zone's namespace (Glue database). spark-submit passes on "spark.*" keys only.
LAKE_KEY = "spark.pipeline.lake"
NAMESPACE_KEY = "spark.pipeline.namespace."
EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"

# Every table: format v2 (row-level deletes for MERGE), Parquet with zstd, old metadata files
# cleaned up as new ones are written, write-audit-publish allowed (branches).
TABLE_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "write.wap.enabled": "true",
    # Commit conflicts (two writers) are retried with backoff before the job fails.
    "commit.retry.num-retries": "6",
    "commit.retry.min-wait-ms": "200",
}


def is_s3(lake: str) -> bool:
    return urlparse(lake).scheme in ("s3", "s3a")


def local_path(lake: str) -> str:
    """The absolute directory of a file:// lake."""
    parsed = urlparse(lake)
    if parsed.scheme != "file":
        raise ValueError(f"{lake} is not a file:// lake")
    return parsed.path.rstrip("/")


def glue_prefix(environ: Mapping[str, str] | None = None) -> str:
    """The Glue database prefix (PIPELINE_GLUE_DATABASE_PREFIX, default `customer_analytics`).

    The one reading of the variable: include/settings.py (which checks it with the other
    settings), the jobs (they get no settings object) and the lake's pyiceberg side all call this."""
    env = os.environ if environ is None else environ
    return env.get(GLUE_PREFIX_ENV, "").strip() or DEFAULT_GLUE_PREFIX


def namespaces(lake: str, glue_prefix: str = DEFAULT_GLUE_PREFIX) -> dict[str, str]:
    """zone -> namespace: the zone's own name locally, `<prefix>_<zone>` (a Glue database) on S3."""
    if is_s3(lake):
        return {zone: f"{glue_prefix}_{zone}" for zone in ZONES}
    return {zone: zone for zone in ZONES}


def catalog_conf(
    lake: str,
    *,
    glue_prefix: str = DEFAULT_GLUE_PREFIX,
    endpoints: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The Spark settings of catalog `lake` for this lake (runtime settings: a new session can take them).

    `endpoints` (tests only) points the Glue catalog and S3FileIO at a stand-in such as moto:
    {"glue": url, "s3": url, "region": name}.
    """
    prefix = f"spark.sql.catalog.{CATALOG}"
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog", LAKE_KEY: lake.rstrip("/")}
    base = lake.rstrip("/")
    if is_s3(lake):
        conf.update(
            {
                f"{prefix}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
                f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                f"{prefix}.warehouse": f"{base}/{WAREHOUSE}".replace("s3a://", "s3://", 1),
                # Glue's optimistic lock: a commit that lost a race is retried, not overwritten.
                f"{prefix}.glue.skip-name-validation": "false",
            }
        )
        if endpoints:
            conf.update(
                {
                    f"{prefix}.glue.endpoint": endpoints["glue"],
                    f"{prefix}.s3.endpoint": endpoints["s3"],
                    f"{prefix}.s3.path-style-access": "true",
                    f"{prefix}.client.region": endpoints.get("region", "us-east-1"),
                }
            )
    else:
        root = local_path(lake)
        conf.update(
            {
                f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
                f"{prefix}.uri": f"jdbc:sqlite:{root}/{CATALOG_FILE}",
                f"{prefix}.warehouse": f"file://{root}/{WAREHOUSE}",
                # V1 is the catalog schema pyiceberg's SqlCatalog reads and writes too.
                f"{prefix}.jdbc.schema-version": "V1",
                # SQLite allows one writer at a time: wait for the lock instead of failing.
                f"{prefix}.jdbc.busy_timeout": "30000",
                f"{prefix}.jdbc.journal_mode": "WAL",
            }
        )
    for zone, namespace in namespaces(lake, glue_prefix).items():
        conf[NAMESPACE_KEY + zone] = namespace
    return conf


def table_name(zone: str, name: str, namespace_of: Mapping[str, str] | None = None) -> str:
    """`lake.<namespace>.<name>`: the identifier Spark SQL and DataFrameWriterV2 take."""
    if zone not in ZONES:
        raise ValueError(f"{zone!r} is not a table zone; choose from {ZONES}")
    namespace = (namespace_of or {}).get(zone, zone)
    return f"{CATALOG}.{namespace}.{name}"
