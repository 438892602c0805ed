"""The lake's Iceberg tables for the tests: written through the jobs' own code, read independently.

Reads go through pyiceberg and the lake's SQLite catalog file (no Spark): what a test asserts is
what any reader of the lake would see. Writes of test inputs go through `spark_jobs.tables`, the
code the jobs write with, so inputs look exactly like a job's output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import table_writes, tables
from spark_jobs.catalog import CATALOG, CATALOG_FILE, WAREHOUSE


def catalog(lake: str):
    """pyiceberg's SqlCatalog on the lake's catalog file (the data contract's reader recipe)."""
    return _catalog(_root(lake))


@cache
def _catalog(root: str):
    from pyiceberg.catalog.sql import SqlCatalog

    Path(root, CATALOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(CATALOG, uri=f"sqlite:///{root}/{CATALOG_FILE}", warehouse=f"file://{root}/{WAREHOUSE}")


def _root(lake: str) -> str:
    return str(Path(lake.removeprefix("file://")).resolve())


def table_exists(lake: str, zone: str, name: str) -> bool:
    return (Path(_root(lake)) / CATALOG_FILE).exists() and catalog(lake).table_exists(f"{zone}.{name}")


def load(lake: str, zone: str, name: str):
    return catalog(lake).load_table(f"{zone}.{name}")


def read_table(lake: str, zone: str, name: str, ds: dt.date | str | None = None) -> pd.DataFrame:
    """The table's rows (of one date, without `dt`, when ds is given) as pandas, via pyiceberg."""
    table = load(lake, zone, name)
    if ds is None:
        return table.scan().to_pandas()
    rows = table.scan(row_filter=f"dt = '{ds}'").to_pandas()
    return rows.drop(columns=["dt"]).reset_index(drop=True)


def dates_with_rows(lake: str, zone: str, name: str) -> list[dt.date]:
    if not table_exists(lake, zone, name):
        return []
    dts = load(lake, zone, name).scan(selected_fields=("dt",)).to_pandas()["dt"]
    return sorted(set(dts))


def snapshot_ids(lake: str, zone: str, name: str) -> list[int]:
    """Every snapshot of the table, oldest first."""
    return [s.snapshot_id for s in load(lake, zone, name).snapshots()]


def seed(
    spark: SparkSession,
    lake: str,
    zone: str,
    name: str,
    df: DataFrame,
    dates: Sequence[dt.date],
    *,
    schema=None,
    partitioned_by: Sequence[str] = ("dt",),
) -> table_writes.Written:
    """Write df (with `dt`) as the rows of `dates`, as a job would (one commit)."""
    from spark_jobs.schemas import CURATED, PROCESSED, QUARANTINE

    if schema is None:
        schema = {"processed": PROCESSED, "quarantine": QUARANTINE, "curated": CURATED}[zone][name]
    session = tables.bind(spark, lake)
    frame = session.createDataFrame(df.rdd, df.schema) if df.sparkSession is not session else df
    return table_writes.replace_dates(
        frame, zone, name, schema, dates, job="test", partitioned_by=partitioned_by
    )


def seed_rows(
    spark: SparkSession,
    lake: str,
    zone: str,
    name: str,
    rows: list[tuple],
    *,
    schema=None,
    dates: Sequence[dt.date] | None = None,
    partitioned_by: Sequence[str] = ("dt",),
) -> table_writes.Written:
    """Rows given as tuples of the contract's columns plus dt (last), seeded for `dates`
    (default: every date from the rows' first to their last)."""
    from spark_jobs.schemas import CURATED, PROCESSED, QUARANTINE

    if schema is None:
        schema = {"processed": PROCESSED, "quarantine": QUARANTINE, "curated": CURATED}[zone][name]
    if dates is None:
        first, last = min(r[-1] for r in rows), max(r[-1] for r in rows)
        dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    frame = tables.bind(spark, lake).createDataFrame(rows, tables.with_dt(schema))
    return table_writes.replace_dates(
        frame, zone, name, schema, dates, job="test", partitioned_by=partitioned_by
    )


def with_dt(df: DataFrame, ds: dt.date) -> DataFrame:
    return df.withColumn("dt", F.lit(ds))


def append_rows(lake: str, zone: str, name: str, rows: pd.DataFrame, ds: dt.date | str) -> None:
    """Add pandas rows as date ds of a table, with pyiceberg alone (no Spark): for tests of readers."""
    import pyarrow as pa
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    Path(_root(lake), CATALOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    frame = pa.Table.from_pandas(rows.assign(dt=dt.date.fromisoformat(str(ds))), preserve_index=False)
    cat = catalog(lake)
    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace(zone)
    table = cat.create_table_if_not_exists(f"{zone}.{name}", schema=frame.schema)
    table.append(frame)


def fail_table_writes(monkeypatch, zone: str, *, in_spark: bool = False) -> None:
    """Make every write of a `zone` table (spark_jobs.table_writes.replace_dates) fail; other zones'
    writes go through.

    By default the write raises OSError("injected: ...") before Spark runs anything. With
    `in_spark`, the write's Spark job runs and fails in its tasks (every row raises "injected:
    ..." as the table's data files are written, as a lost executor or a poisoned row would),
    so the failure comes from inside Spark and Iceberg; the frame must hold at least one row.
    """
    real = table_writes.replace_dates

    def fail_there(df, zone_, name, schema, *args, **kwargs):
        if zone_ != zone:
            return real(df, zone_, name, schema, *args, **kwargs)
        message = f"injected: the write of {zone}.{name} failed"
        if not in_spark:
            raise OSError(message)
        first = schema.fieldNames()[0]
        # A non-deterministic condition, so that the optimizer cannot fold the error away.
        poisoned = F.when(F.spark_partition_id() >= 0, F.raise_error(F.lit(message))).otherwise(F.col(first))
        return real(df.withColumn(first, poisoned), zone_, name, schema, *args, **kwargs)

    monkeypatch.setattr(table_writes, "replace_dates", fail_there)
