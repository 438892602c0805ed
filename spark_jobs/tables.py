"""The lake's Iceberg tables: the session bound to the catalog, each table's identifier and
location, and its creation. Reading is table_reads, writing (one atomic commit per job's dates,
taken back when the job fails) table_writes, the snapshots and branches a session sees
table_history.

Tables are created on first write with the contract's columns plus `dt` (partition column), at
`LAKE/warehouse/<zone>/<name>` on both targets. An existing table is never replaced: columns the
code added since are added to it (schema evolution: no rewrite, old snapshots still read), and
a table whose columns drifted otherwise fails the job before anything is written.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DateType, StructField, StructType

from spark_jobs.catalog import (
    CATALOG,
    CATALOG_FILE,
    LAKE_KEY,
    NAMESPACE_KEY,
    TABLE_PROPERTIES,
    WAREHOUSE,
    ZONES,
    catalog_conf,
    glue_prefix,
    is_s3,
    local_path,
)
from spark_jobs.common import JobInputError, hadoop_fs

log = logging.getLogger("spark_jobs.tables")

DT = "dt"
PROPERTY = "pipeline."
WAP_BRANCH = "spark.wap.branch"
_NAME = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_TABLE = re.compile(
    rf"^{CATALOG}\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$"
)  # prefix of the snapshot properties this pipeline writes


class TableSchemaError(JobInputError):
    """A table's columns drifted from the code's in a way no column addition can mend."""


# ---- the session's catalog -----------------------------------------------------------------
def bind(spark: SparkSession, lake: str) -> SparkSession:
    """A session whose catalog `lake` serves `lake`: `spark` itself when it already does.

    Catalog settings are per session, so another lake gets a new session of the same Spark
    application (tests use many lakes; a long-lived local Spark runs jobs of several runs).
    """
    lake = lake.rstrip("/")
    if spark.conf.get(LAKE_KEY, None) == lake:
        return spark
    if not is_s3(lake):
        # SQLite creates the catalog file, not its folder.
        os.makedirs(os.path.dirname(f"{local_path(lake)}/{CATALOG_FILE}"), exist_ok=True)
    session = spark.newSession()
    for key, value in catalog_conf(lake, glue_prefix=_glue_prefix(), endpoints=_aws_endpoints(lake)).items():
        session.conf.set(key, value)
    if not is_s3(lake):
        _create_catalog_tables_once(session, lake)
    return session


def _create_catalog_tables_once(session: SparkSession, lake: str) -> None:
    """Start the JDBC catalog only without its "do my tables exist?" check, once they exist.

    Iceberg 1.10's JdbcCatalog runs that check when it starts and leaves its ResultSet open when
    the tables are there (apache/iceberg#15462, fixed after 1.10). On SQLite an open statement is
    an open read transaction, held until the JVM happens to collect it: with a rollback journal
    every other connection's commit waits on it (SQLITE_BUSY after busy_timeout); in WAL mode
    this session keeps reading the catalog as it was when it started (stale tables, and
    SQLITE_BUSY_SNAPSHOT on its commits). Every new session and every streaming query (a clone
    of its session) starts a catalog of its own, so this happened on any lake used twice in one
    JVM. The tables are therefore created by a catalog started while they are missing (its check
    finds nothing and finishes), and no catalog of this session or its clones checks again.
    """
    if not _catalog_tables_exist(f"{local_path(lake)}/{CATALOG_FILE}"):
        session.sql(f"SHOW NAMESPACES IN {CATALOG}").collect()  # starts the catalog: it creates its tables
    session.conf.set(f"spark.sql.catalog.{CATALOG}.jdbc.init-catalog-tables", "false")


def _catalog_tables_exist(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"iceberg_tables", "iceberg_namespace_properties"} <= names


def _glue_prefix() -> str:
    return glue_prefix()


def _aws_endpoints(lake: str) -> dict[str, str] | None:
    """Stand-in endpoints for Glue and S3 (moto) from the AWS SDKs' own variables, when set."""
    if not is_s3(lake):
        return None
    default = os.environ.get("AWS_ENDPOINT_URL")
    glue = os.environ.get("AWS_ENDPOINT_URL_GLUE") or default
    s3 = os.environ.get("AWS_ENDPOINT_URL_S3") or default
    if not (glue and s3):
        return None
    return {"glue": glue, "s3": s3, "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}


def close_catalog(spark: SparkSession) -> None:
    """Close the session's Iceberg catalog (its connection pool), if the session opened one."""
    manager = spark._jsparkSession.sessionState().catalogManager()
    if manager.isCatalogRegistered(CATALOG):
        manager.catalog(CATALOG).icebergCatalog().close()


def lake_of(spark: SparkSession) -> str:
    lake = spark.conf.get(LAKE_KEY, None)
    if not lake:
        raise RuntimeError("this session's catalog serves no lake: get it from get_spark(app, lake)")
    return lake


def namespace(spark: SparkSession, zone: str) -> str:
    if zone not in ZONES:
        raise ValueError(f"{zone!r} is not a table zone; choose from {ZONES}")
    return spark.conf.get(NAMESPACE_KEY + zone, zone)


def identifier(spark: SparkSession, zone: str, name: str) -> str:
    """`lake.<namespace>.<name>`; both parts checked, since identifiers go into SQL text."""
    parts = (namespace(spark, zone), name)
    bad = [p for p in parts if not _NAME.match(p)]
    if bad:
        raise ValueError(f"not a table or namespace name: {bad}")
    return f"{CATALOG}.{parts[0]}.{parts[1]}"


def table_names(spark: SparkSession) -> list[tuple[str, str]]:
    """(zone, table) of every table the catalog holds in the lake's namespaces."""
    found = []
    for zone in ZONES:
        ns = namespace(spark, zone)
        if not spark.catalog.databaseExists(f"{CATALOG}.{ns}"):
            continue
        for row in spark.sql(f"SHOW TABLES IN {CATALOG}.{ns}").collect():
            found.append((zone, row.tableName))
    return sorted(found)


def metadata(spark: SparkSession, table: str, kind: str, tail: str = "") -> DataFrame:
    """`SELECT * FROM <table>.<kind> <tail>`: an Iceberg metadata table (refs, snapshots,
    partitions...). `table` comes from `identifier` (checked); values are filtered as columns
    (Spark 4.1 leaves a named parameter unbound in a query of a metadata table)."""
    if not _TABLE.match(table) or not kind.isalpha():
        raise ValueError(f"not a table identifier: {table}.{kind}")
    return spark.sql(f"SELECT * FROM {table}.{kind} {tail}")  # noqa: S608


def location(spark: SparkSession, zone: str, name: str) -> str:
    """Where a table's files live: `LAKE/warehouse/<zone>/<name>`, the same on both targets."""
    lake = lake_of(spark).replace("s3a://", "s3://", 1)
    return f"{lake}/{WAREHOUSE}/{zone}/{name}"


# ---- creating and checking tables ----------------------------------------------------------
def with_dt(schema: StructType) -> StructType:
    """A contract schema plus the partition column `dt` (DATE)."""
    return StructType([*schema.fields, StructField(DT, DateType(), True)])


def ensure_table(
    spark: SparkSession, zone: str, name: str, schema: StructType, partitioned_by: Sequence[str] = (DT,)
) -> str:
    """The table's identifier; created (with its namespace) when missing, evolved when behind.

    `schema` is the contract's columns without `dt`. Never drops or replaces a table: if the
    catalog has no table but its location holds Iceberg metadata, the catalog lost it and the
    job stops rather than start a new table over the old files.
    """
    table = identifier(spark, zone, name)
    wanted = with_dt(schema)
    if spark.catalog.tableExists(table):
        _evolve(spark, table, wanted)
        return table
    where = location(spark, zone, name)
    if _has_metadata(spark, where):
        raise TableSchemaError(
            f"{table} is not in the catalog but {where} holds an Iceberg table: the catalog lost it. "
            f"Register it again (CALL {CATALOG}.system.register_table) instead of writing a new one over it"
        )
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace(spark, zone)}")
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in wanted.fields)
    properties = ", ".join(f"'{k}'='{v}'" for k, v in TABLE_PROPERTIES.items())
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {table} ({columns}) USING iceberg "
        f"PARTITIONED BY ({', '.join(partitioned_by)}) LOCATION '{where}' TBLPROPERTIES ({properties})"
    )
    log.warning("created table %s at %s", table, where)
    return table


def _has_metadata(spark: SparkSession, where: str) -> bool:
    fs, path = hadoop_fs(spark, f"{where}/metadata")
    return bool(fs.exists(path)) and any(
        s.getPath().getName().endswith(".metadata.json") for s in fs.listStatus(path)
    )


def _evolve(spark: SparkSession, table: str, wanted: StructType) -> None:
    """Add the columns the code has and the table lacks; refuse any other difference."""
    have = {f.name: f.dataType for f in spark.table(table).schema.fields}
    want = {f.name: f.dataType for f in wanted.fields}
    changed = [f"{n}: table {have[n].simpleString()}, code {t.simpleString()}" for n, t in want.items()
               if n in have and not _same_type(have[n], t)]  # fmt: skip
    extra = [n for n in have if n not in want]
    if changed or extra:
        raise TableSchemaError(
            f"{table} drifted from the code: "
            + "; ".join([*changed, *(f"{n}: in the table, not in the code" for n in extra)])
            + " (nothing was written)"
        )
    for name, dtype in want.items():
        if name not in have:
            spark.sql(f"ALTER TABLE {table} ADD COLUMN `{name}` {dtype.simpleString()}")
            log.warning("added column %s %s to %s", name, dtype.simpleString(), table)


def _same_type(a, b) -> bool:
    # Iceberg keeps no containsNull / nullability difference that matters for our writes.
    return a.simpleString() == b.simpleString()
