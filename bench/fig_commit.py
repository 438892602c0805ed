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
- **Iceberg commit**: `spark_jobs.table_writes.replace_dates`, what every job calls now: the table
  check (`ensure_table`), one `overwrite(dt = ds)` that writes the data files and commits them
  as one snapshot, then the snapshot's row counts from the table's metadata. The
  `overwrite` call alone (write + commit) is timed too; the rest is that bookkeeping.
- **the same commit with other write options** (#28: a date written by every core), in place
  of the jobs' `table_writes.WRITE_OPTIONS` (hash distribution, AQE advisory partition size 64 MB):
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
import shutil
from pathlib import Path
from typing import Any

from bench import cli, core, data
from bench.commit_ways import (
    DS,
    VARIANTS,
    WAYS,
    check,
    iceberg_commit,
    parquet_swap,
    prepare,
)

FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (50_000, 200_000)


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
