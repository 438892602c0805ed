"""Figure 6's ways of replacing one date of processed.sales (bench/fig_commit.py times them): the old
Parquet swap (staged write, two renames, a delete) and the Iceberg commit the jobs make, with the
jobs' write options or others; and the check that both places hold exactly the generated rows."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from bench import core, data

DS = dt.date(2024, 6, 30)


MB = 1024 * 1024


WAYS = {
    "parquet_swap": "Parquet swap (old: staged write, 2 renames, delete)",
    "parquet_swap_zstd": "Parquet swap with zstd (the tables' codec)",
    "iceberg": "Iceberg commit (table_writes.replace_dates, as the jobs write)",
    "iceberg_iceberg_default": "Iceberg commit, hash with Iceberg's own advisory size (before #28)",
    "iceberg_hash_32mb": "Iceberg commit, hash, advisory 32 MB",
    "iceberg_hash_128mb": "Iceberg commit, hash, advisory 128 MB",
    "iceberg_none": "Iceberg commit, distribution none",
    "iceberg_range": "Iceberg commit, range, advisory as the jobs'",
}


# The Iceberg ways' write options over the jobs' (table_writes.WRITE_OPTIONS); None drops one.
VARIANTS: dict[str, dict[str, str | None]] = {
    "iceberg": {},
    "iceberg_iceberg_default": {"distribution-mode": "hash", "advisory-partition-size": None},
    "iceberg_hash_32mb": {"distribution-mode": "hash", "advisory-partition-size": str(32 * MB)},
    "iceberg_hash_128mb": {"distribution-mode": "hash", "advisory-partition-size": str(128 * MB)},
    "iceberg_none": {"distribution-mode": "none"},
    "iceberg_range": {"distribution-mode": "range"},
}


def prepare(work: Path, rows: int) -> Path:
    """The generated rows of DS as one Parquet file (kept between runs)."""
    path = work / "fig6" / f"sales_{rows}_{DS}.parquet"
    if not path.exists():
        data.one_day_of_sales(path, rows, DS)
    return path


def partition_dir(lake: str, ds: dt.date) -> str:
    return f"{lake}/processed/sales/dt={ds}"


def parquet_swap(df, lake: str, ds: dt.date, compression: str = "snappy") -> dict[str, Any]:
    """Replace `LAKE/processed/sales/dt=ds/` with df the old way; seconds of each part and the rows.

    The jobs' `write_partition` before the Iceberg tables: write and commit into a staging
    directory, count the staged rows, move the current partition aside, move the staged one into
    place (restoring the old one if that fails), then delete the old one.
    """
    from spark_jobs.common import hadoop_fs

    spark = df.sparkSession
    target = partition_dir(lake, ds)
    staging = f"{lake}/_staging/processed/sales/dt={ds}.{uuid.uuid4().hex[:12]}"
    backup = f"{staging}.previous"
    start = time.perf_counter()
    df.write.mode("errorifexists").option("compression", compression).parquet(staging)
    rows = spark.read.parquet(staging).count()
    written = time.perf_counter()
    fs, target_path = hadoop_fs(spark, target)
    _, staged_path = hadoop_fs(spark, staging)
    _, backup_path = hadoop_fs(spark, backup)
    fs.mkdirs(target_path.getParent())
    had_previous = bool(fs.exists(target_path))
    if had_previous and not fs.rename(target_path, backup_path):
        raise OSError(f"could not move {target} aside; it is unchanged")
    if not fs.rename(staged_path, target_path):
        if had_previous and not fs.rename(backup_path, target_path):
            raise OSError(f"could not move the new {target} into place nor restore it; it is at {backup}")
        raise OSError(f"could not move the new {target} into place; the previous one is restored")
    swapped = time.perf_counter()
    if had_previous:
        fs.delete(backup_path, True)
    done = time.perf_counter()
    return {
        "total": done - start,
        "write": written - start,
        "swap": swapped - written,
        "delete": done - swapped,
        "rows": rows,
    }


class _OverwriteTimer:
    """Times DataFrameWriterV2.overwrite (Iceberg's write + commit) inside replace_dates."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __enter__(self) -> _OverwriteTimer:
        from pyspark.sql.readwriter import DataFrameWriterV2

        self._original = original = DataFrameWriterV2.overwrite
        timer = self

        def overwrite(writer, condition):
            start = time.perf_counter()
            try:
                return original(writer, condition)
            finally:
                timer.seconds.append(time.perf_counter() - start)

        DataFrameWriterV2.overwrite = overwrite
        return self

    def __exit__(self, *exc: object) -> None:
        from pyspark.sql.readwriter import DataFrameWriterV2

        DataFrameWriterV2.overwrite = self._original


def iceberg_commit(df, ds: dt.date, options: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Replace date ds of processed.sales with df (rows with `dt`) as every job does now.

    `options`: write options over the jobs' (table_writes.WRITE_OPTIONS) for this call.
    Afterwards (untimed) the date's data files: how many and their sizes.
    """
    from pyspark.sql import functions as F

    from spark_jobs import table_writes
    from spark_jobs.schemas import PROCESSED

    jobs_options = table_writes.WRITE_OPTIONS
    merged = {**jobs_options, **(options or {})}
    table_writes.WRITE_OPTIONS = {key: value for key, value in merged.items() if value is not None}
    try:
        with _OverwriteTimer() as timer:
            seconds, written = core.timed(
                lambda: table_writes.replace_dates(
                    df, "processed", "sales", PROCESSED["sales"], [ds], job="bench.commit"
                )
            )
    finally:
        table_writes.WRITE_OPTIONS = jobs_options
    files = df.sparkSession.table(f"{written.table}.files").where(F.col("partition.dt") == F.lit(ds))
    sizes = sorted(row.file_size_in_bytes for row in files.select("file_size_in_bytes").collect())
    return {
        "total": seconds,
        "overwrite": sum(timer.seconds),
        "bookkeeping": seconds - sum(timer.seconds),
        "rows": written.total,
        "snapshot_id": written.snapshot_id,
        "files": len(sizes),
        "file_mb": [round(size / MB, 2) for size in sizes],
    }


def check(lake_dir: Path, parquet_lake: Path, ds: dt.date, source: Path) -> dict[str, Any]:
    """Both places hold exactly the generated rows: count and money total, read without Spark."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    generated = pq.read_table(source, columns=["transaction_id", "total_amount"])
    swapped = pads.dataset(parquet_lake / "processed" / "sales" / f"dt={ds}", format="parquet").to_table(
        columns=["transaction_id", "total_amount"]
    )
    table = data.catalog(lake_dir).load_table("processed.sales")
    committed = table.scan(
        row_filter=f"dt = '{ds}'", selected_fields=("transaction_id", "total_amount")
    ).to_arrow()
    summary = table.current_snapshot().summary.additional_properties

    def facts(t) -> dict[str, Any]:
        return {
            "rows": t.num_rows,
            "ids": pc.count_distinct(t.column("transaction_id")).as_py(),
            "total": str(pc.sum(t.column("total_amount")).as_py()),
        }

    want, got_swap, got_ice = facts(generated), facts(swapped), facts(committed)
    leftovers = sorted(p.name for p in (parquet_lake / "_staging" / "processed" / "sales").glob("*"))
    return {
        "agree": want == got_swap == got_ice and not leftovers,
        "generated": want,
        "parquet_swap": got_swap,
        "iceberg": got_ice,
        "staging_leftovers": leftovers,
        "parquet_files": len(list((parquet_lake / "processed" / "sales" / f"dt={ds}").glob("*.parquet"))),
        "iceberg_files_added": int(summary.get("added-data-files", 0)),
    }
