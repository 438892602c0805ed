"""Helpers for tests: write landing files exactly as upstream systems would."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path


def _partition_dir(lake_uri: str, dataset: str, ds: str) -> Path:
    path = Path(lake_uri.removeprefix("file://")) / "landing" / dataset / f"dt={ds}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_landing_csv(
    lake_uri: str,
    dataset: str,
    ds: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    name: str = "part-0000.csv",
) -> Path:
    path = _partition_dir(lake_uri, dataset, ds) / name
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


def write_landing_jsonl(
    lake_uri: str, dataset: str, ds: str, records: Iterable[dict | str], name: str = "part-0000.json"
) -> Path:
    """Records as JSON lines; a str is written verbatim (to inject malformed lines)."""
    path = _partition_dir(lake_uri, dataset, ds) / name
    with path.open("w") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    return path


def fail_table_writes(monkeypatch, zone: str, *, in_spark: bool = False) -> None:
    """Make every write of a `zone` table (spark_jobs.tables.replace_dates) fail; other zones'
    writes go through.

    By default the write raises OSError("injected: ...") before Spark runs anything. With
    `in_spark`, the write's Spark job runs and fails in its tasks (every row raises "injected:
    ..." as the table's data files are written, as a lost executor or a poisoned row would),
    so the failure comes from inside Spark and Iceberg; the frame must hold at least one row.
    """
    from pyspark.sql import functions as F

    from spark_jobs import tables

    real = tables.replace_dates

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

    monkeypatch.setattr(tables, "replace_dates", fail_there)
