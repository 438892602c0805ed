"""Figure 6: replacing one date of processed.sales, the Iceberg commit against the old Parquet swap.

The same cached DataFrame of N processed-sales rows of one date (generated, repartitioned to
the session's cores, cached and counted before any timing) replaces that date several ways, side
by side in one Spark session, interleaved run by run so that load hits all of them alike:

- **Parquet swap (before the Iceberg tables)**: the jobs' old `write_partition`, reimplemented
  here: Spark writes and commits the rows into a staging directory (snappy, as the old session
  set), counts them from the staged files, renames the current `dt=` directory aside, renames
  the staged one into its place and deletes the old one (Hadoop FileSystem calls).
- **the same swap with zstd**: the tables' codec (`write.parquet.compression-codec`), so the gap
  between this one and the Iceberg commit is the commit mechanism, not the codec.
- **Iceberg commit**: `spark_jobs.tables.replace_dates`, what every job calls now: the table
  check (`ensure_table`), one `overwrite(dt = ds)` that writes the data files and commits them
  as one snapshot, then the snapshot's row counts from the table's metadata. The
  `overwrite` call alone (write + commit) is timed too; the rest is that bookkeeping.
- **the same commit with other write options** (#28: a date written by every core), in place
  of the jobs' `tables.WRITE_OPTIONS` (hash distribution, AQE advisory partition size 64 MB):
  hash with Iceberg's own advisory size (the jobs' write before #28: its 512 MB target file
  size times the shuffle's compression ratio, so one task a date), hash at 32 MB and 128 MB,
  `none` (no shuffle: each input partition writes its own file of the date) and `range`.
  After each Iceberg write the date's data files are counted and sized (the table's `files`
  metadata table, untimed). `--ways` runs a subset (the swap and the jobs' way always run).

The input has as many partitions as the session has cores, so AQE can split a date into at
most that many pieces (a skewed partition is split at map-output boundaries): locally, every
core; on a cluster, as many pieces as the upstream stage had tasks and the advisory size allows.

Each size gets one untimed warm-up of each way (which also creates the date, so every timed
run replaces an existing one, as a rerun does), then `--repeat` runs (default 3), min and
median. After the runs both the `dt=` directory and the table's date are read back and must
hold the generated rows (count and money total). On S3 the comparison changes, and this local
figure cannot show it: S3 has no rename, so each of the swap's renames is a copy and a delete of
every object of the date (and a reader can list a half-moved directory), while the Iceberg
commit writes its data files once, in place, plus a few small metadata files and one catalog
update (Glue UpdateTable), whatever the data size. No S3 time is given here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from bench import cli, core, data

DS = dt.date(2024, 6, 30)
FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (50_000, 200_000)
MB = 1024 * 1024
WAYS = {
    "parquet_swap": "Parquet swap (old: staged write, 2 renames, delete)",
    "parquet_swap_zstd": "Parquet swap with zstd (the tables' codec)",
    "iceberg": "Iceberg commit (tables.replace_dates, as the jobs write)",
    "iceberg_iceberg_default": "Iceberg commit, hash with Iceberg's own advisory size (before #28)",
    "iceberg_hash_32mb": "Iceberg commit, hash, advisory 32 MB",
    "iceberg_hash_128mb": "Iceberg commit, hash, advisory 128 MB",
    "iceberg_none": "Iceberg commit, distribution none",
    "iceberg_range": "Iceberg commit, range, advisory as the jobs'",
}
# The Iceberg ways' write options over the jobs' (tables.WRITE_OPTIONS); None drops one.
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

    `options`: write options over the jobs' (tables.WRITE_OPTIONS) for this call.
    Afterwards (untimed) the date's data files: how many and their sizes.
    """
    from pyspark.sql import functions as F

    from spark_jobs import tables
    from spark_jobs.schemas import PROCESSED

    jobs_options = tables.WRITE_OPTIONS
    merged = {**jobs_options, **(options or {})}
    tables.WRITE_OPTIONS = {key: value for key, value in merged.items() if value is not None}
    try:
        with _OverwriteTimer() as timer:
            seconds, written = core.timed(
                lambda: tables.replace_dates(
                    df, "processed", "sales", PROCESSED["sales"], [ds], job="bench.commit"
                )
            )
    finally:
        tables.WRITE_OPTIONS = jobs_options
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


def measure(spark, work: Path, rows: int, n: int, chosen: list[str]) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from spark_jobs import tables

    source = prepare(work, rows)
    root = work / "fig6" / f"rows_{rows}"
    if root.exists():
        shutil.rmtree(root)  # fresh lakes: no earlier run's snapshots or directories
    lake_dir, parquet_lake = root / "lake", root / "parquet_lake"
    lake_dir.mkdir(parents=True)
    parquet_lake.mkdir(parents=True)
    session = tables.bind(spark, data.lake_uri(lake_dir))
    cores = spark.sparkContext.defaultParallelism
    df = (
        session.read.parquet(source.resolve().as_uri())
        .repartition(cores)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    cached = df.count()
    with_dt = df.withColumn("dt", F.lit(DS))
    plake = data.lake_uri(parquet_lake)
    everything = {
        "parquet_swap": lambda: parquet_swap(df, plake, DS, "snappy"),
        "parquet_swap_zstd": lambda: parquet_swap(df, plake, DS, "zstd"),
        **{name: (lambda o=options: iceberg_commit(with_dt, DS, o)) for name, options in VARIANTS.items()},
    }
    ways = {name: way for name, way in everything.items() if name in chosen}
    load = core.load_average()
    warmup = {name: way() for name, way in ways.items()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ways}
    for _ in range(n):
        for name, way in ways.items():
            runs[name].append(way())
    df.unpersist()
    result = {
        "rows": rows,
        "cached_rows": cached,
        "load_start": load,
        "warmup": warmup,
        "runs": runs,
        "check": check(lake_dir, parquet_lake, DS, source),
    }
    # the data is not needed afterwards; the source file is kept for the next run
    shutil.rmtree(root, ignore_errors=True)
    return result


def _timing(runs: list[dict[str, Any]], part: str) -> core.Timing:
    return core.Timing([r[part] for r in runs])


def run(args: argparse.Namespace) -> core.FigureResult:
    from spark_jobs.session import get_spark

    load = core.load_average()
    work = core.work_dir(args.work)
    sizes = tuple(args.sizes) if args.sizes else QUICK_SIZES if args.quick else FULL_SIZES
    n = cli.runs(args, full=3, quick=3)
    startup, spark = core.timed(lambda: get_spark("bench_commit"))
    chosen = [w for w in WAYS if w in set(args.ways or WAYS) | {"parquet_swap", "iceberg"}]
    unknown = set(args.ways or ()) - set(WAYS)
    if unknown:
        raise SystemExit(f"unknown ways {sorted(unknown)}; choose from {list(WAYS)}")
    per_size = {rows: measure(spark, work, rows, n, chosen) for rows in sizes}
    spark.stop()

    rows_out: list[core.Row] = []
    medians: dict[int, dict[str, float]] = {}
    for rows, r in per_size.items():
        label = f"{rows / 1e6:g}M rows"
        note = f"load {r['load_start']}"
        medians[rows] = {}
        for name, title in WAYS.items():
            if name not in chosen:
                continue
            total = _timing(r["runs"][name], "total")
            medians[rows][name] = total.median
            iceberg = name in VARIANTS
            files_note = ""
            if iceberg:
                last = r["runs"][name][-1]
                files = sorted({run["files"] for run in r["runs"][name]})
                files_note = (
                    f"; files a date {'/'.join(map(str, files))}, "
                    f"{min(last['file_mb'])}-{max(last['file_mb'])} MB"
                )
            rows_out.append(core.Row(f"{label}: {title}", total.min, total.median, note=note + files_note))
            parts = ("overwrite", "bookkeeping") if iceberg else ("write", "swap", "delete")
            for part in parts:
                t = _timing(r["runs"][name], part)
                what = {
                    "write": "of which staged write + count",
                    "swap": "of which the two renames",
                    "delete": "of which deleting the old directory",
                    "overwrite": "of which overwrite(dt = ds): write + commit",
                    "bookkeeping": "of which table check + snapshot lookups + row counts",
                }[part]
                rows_out.append(core.Row(f"{label}: {title}, {what}", t.min, t.median))
        ratio = medians[rows]["iceberg"] / medians[rows]["parquet_swap"]
        is_big = rows == max(sizes)
        rows_out.append(
            core.Row(
                f"{label}: Iceberg (as the jobs write) / Parquet swap (median)",
                None,
                ratio,
                unit="x",
                target="<= 1.2" if is_big else "",
                met=core.check(ratio, 1.2) if is_big else None,
            )
        )
        for name in chosen:
            if name not in ("parquet_swap", "iceberg"):
                rows_out.append(
                    core.Row(
                        f"{label}: {WAYS[name]} / Parquet swap (median)",
                        None,
                        medians[rows][name] / medians[rows]["parquet_swap"],
                        unit="x",
                    )
                )
        c = r["check"]
        rows_out.append(
            core.Row(
                f"{label}: both hold the generated rows",
                None,
                None,
                unit="",
                target="identical",
                met=c["agree"],
                note=(
                    f"{c['generated']['rows']:,} rows, total {c['generated']['total']}; files: Parquet "
                    f"{c['parquet_files']}, Iceberg {c['iceberg_files_added']}; "
                    f"staging left: {len(c['staging_leftovers'])}"
                ),
            )
        )
    rows_out.append(core.Row("Spark session start-up (once, not in the times)", startup, startup))
    big = max(sizes)
    m = medians[big]
    agree = all(r["check"]["agree"] for r in per_size.values())
    big_ratio = m["iceberg"] / m["parquet_swap"]
    before = m.get("iceberg_iceberg_default")
    summary = (
        f"replace one date of {big:,} rows: Iceberg commit as the jobs write {m['iceberg']:.1f}s "
        f"({big_ratio:.2f}x, target <= 1.2) vs Parquet swap {m['parquet_swap']:.1f}s"
        + (f"; before #28 (Iceberg's own advisory size) {before:.1f}s" if before else "")
        + f"; medians of {n}; same rows: {agree}; local disk (on S3 each rename is a copy + delete), "
        f"load {load}"
    )
    return core.FigureResult(
        figure=6,
        name="commit",
        title="Replacing a date: Iceberg commit vs the old Parquet directory swap",
        summary=summary,
        load_start=load,
        rows=rows_out,
        details={"sizes": {str(k): v for k, v in per_size.items()}, "runs": n},
        ok=agree and big_ratio <= 1.2,
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    cli.add_sizes(p, "table")
    p.add_argument(
        "--ways",
        type=lambda v: [w.strip() for w in v.split(",") if w.strip()],
        default=None,
        help=f"ways to run (default all): {', '.join(WAYS)}; the swap and the jobs' Iceberg way always run",
    )
    run(p.parse_args(argv)).emit()


if __name__ == "__main__":
    main()
