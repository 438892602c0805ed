"""Figure 2: the `features` + `sales_rolling` jobs on 1M and 10M sales rows, against DuckDB.

Both engines read the same Iceberg tables of one lake (processed.sales over 90 dates,
processed.customers, curated.referral_graph; written by bench/data.py) and compute the same three
outputs (customer_features, feature_correlation, sales_rolling_30d) in the same process run.
Spark runs the jobs' own `run()` in one warm local session: what is timed is the jobs' whole
work, reading the tables through the catalog, computing, and replacing date ds of each output
table in one Iceberg commit (plus the jobs' row counts for their metrics). DuckDB runs
bench/duck.py's SQL with as many threads as Spark has cores: what is timed is pyiceberg's scan
of the same tables into Arrow (reported apart too), the SQL, and writing each output as a
Parquet file. Spark's session start-up and one untimed warm-up run of each engine on the small
input are reported apart. Each size then runs `--repeat` times (default 3), min and median
reported, with the load average when it started. Spark's output tables are then read back with
pyiceberg and compared row by row with DuckDB's files, so a fast wrong answer cannot pass.
"""

# ruff: noqa: S608 (SQL over generated paths and code constants only)
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from bench import cli, core, data, duck

DS = dt.date(2024, 6, 30)
FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (50_000, 200_000)
TOLERANCE = 1e-9  # relative, for the doubles; decimals and counts must be equal


def prepare(work: Path, rows: int) -> Path:
    root = work / "fig2" / f"rows_{rows}"
    manifest = root / "manifest.json"
    want = {"rows": rows, "ds": str(DS), "days": data.DAYS, "version": 2}  # 2: Iceberg tables
    if manifest.exists() and json.loads(manifest.read_text()).get("params") == want:
        return root / "lake"
    info = data.sales_lake(root / "lake", rows, DS)
    manifest.write_text(json.dumps({"params": want, "written": info}))
    return root / "lake"


def spark_runs(spark, lake: Path, n: int) -> dict[str, core.Timing]:
    from spark_jobs import features, sales_rolling, tables

    args = argparse.Namespace(ds=DS, lake=data.lake_uri(lake))
    spark = tables.bind(spark, args.lake)  # a session whose catalog `lake` serves this lake
    t_feat, t_roll, t_total = [], [], []
    for _ in range(n):
        a, _ = core.timed(lambda: features.run(spark, args))
        b, _ = core.timed(lambda: sales_rolling.run(spark, args))
        t_feat.append(a)
        t_roll.append(b)
        t_total.append(a + b)
    return {
        "features": core.Timing(t_feat),
        "sales_rolling": core.Timing(t_roll),
        "total": core.Timing(t_total),
    }


def duckdb_run(con, lake: Path, out: Path) -> tuple[float, float, float]:
    """One run: seconds of features (+ correlation), of sales_rolling, and of their pyiceberg reads."""
    reads: dict[str, float] = {}

    def feats() -> None:
        duck.customer_features(con, lake, DS, out / "customer_features.parquet", reads)
        duck.feature_correlation(con, out / "customer_features.parquet", out / "feature_correlation.parquet")

    a, _ = core.timed(feats)
    b, _ = core.timed(lambda: duck.sales_rolling(con, lake, DS, out / "sales_rolling_30d.parquet", reads))
    return a, b, reads["pyiceberg"]


def duckdb_runs(lake: Path, out: Path, n: int, threads: int) -> dict[str, core.Timing]:
    out.mkdir(parents=True, exist_ok=True)
    con = duck.connect(threads)
    t_feat, t_roll, t_total, t_read = [], [], [], []
    for _ in range(n):
        a, b, read = duckdb_run(con, lake, out)
        t_feat.append(a)
        t_roll.append(b)
        t_total.append(a + b)
        t_read.append(read)
    con.close()
    return {
        "features": core.Timing(t_feat),
        "sales_rolling": core.Timing(t_roll),
        "total": core.Timing(t_total),
        "of which pyiceberg read": core.Timing(t_read),
    }


def compare(lake: Path, out: Path) -> dict[str, Any]:
    """Row-by-row differences between Spark's output tables (date DS, read with pyiceberg) and
    DuckDB's files."""
    con = duck.connect()
    for name in ("customer_features", "feature_correlation", "sales_rolling_30d"):
        con.register(f"spark_{name}", duck.read_table(lake, "curated", name, f"dt = '{DS}'"))

    def one(sql: str) -> dict[str, Any]:
        cur = con.execute(sql)
        (row,) = cur.fetchall()
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    feats = one(f"""
        SELECT count(*) AS rows,
          count(*) FILTER (s.customer_id IS NULL OR d.customer_id IS NULL) AS unmatched,
          max(abs(s.lifetime_value - d.lifetime_value)) AS lifetime_value,
          max(abs(s.purchase_frequency - d.purchase_frequency)) AS purchase_frequency,
          max(abs(s.avg_basket_size - d.avg_basket_size) / greatest(abs(d.avg_basket_size), 1))
            AS avg_basket_size,
          max(abs(s.spend_volatility - d.spend_volatility) / greatest(abs(d.spend_volatility), 1))
            AS spend_volatility,
          count(*) FILTER ((s.spend_volatility IS NULL) <> (d.spend_volatility IS NULL)) AS volatility_nulls,
          max(abs(s.recency_days - d.recency_days)) AS recency_days,
          count(*) FILTER (s.region IS DISTINCT FROM d.region
                           OR s.community_id IS DISTINCT FROM d.community_id
                           OR s.last_purchase_date IS DISTINCT FROM d.last_purchase_date) AS text_or_date,
          max(abs(coalesce(s.pagerank, 0) - coalesce(d.pagerank, 0))) AS pagerank,
          max(list_max(list_transform(list_zip(s.features, d.features),
              lambda p: abs(p[1] - p[2]) / greatest(abs(p[2]), 1)))) AS features,
          sum(s.lifetime_value) AS spark_sum, sum(d.lifetime_value) AS duckdb_sum
        FROM spark_customer_features s
        FULL JOIN read_parquet('{out}/customer_features.parquet') d USING (customer_id)""")
    corr = one(f"""
        SELECT count(*) AS rows, count(*) FILTER (s.feature_a IS NULL OR d.feature_a IS NULL) AS unmatched,
          count(*) FILTER ((s.pearson IS NULL) <> (d.pearson IS NULL)) AS nulls,
          max(abs(s.pearson - d.pearson)) AS pearson
        FROM spark_feature_correlation s
        FULL JOIN read_parquet('{out}/feature_correlation.parquet') d USING (feature_a, feature_b)""")
    roll = one(f"""
        SELECT count(*) AS rows, count(*) FILTER (s.date IS NULL OR d.date IS NULL) AS unmatched,
          max(abs(s.daily_amount - d.daily_amount)) AS daily_amount,
          max(abs(s.daily_count - d.daily_count)) AS daily_count,
          max(abs(s.rolling_30d_sum - d.rolling_30d_sum)) AS rolling_30d_sum,
          max(abs(s.rolling_30d_count - d.rolling_30d_count)) AS rolling_30d_count,
          max(abs(s.rolling_30d_avg - d.rolling_30d_avg) / d.rolling_30d_avg) AS rolling_30d_avg,
          sum(s.rolling_30d_sum) AS spark_sum, sum(d.rolling_30d_sum) AS duckdb_sum
        FROM spark_sales_rolling_30d s
        FULL JOIN read_parquet('{out}/sales_rolling_30d.parquet') d
          ON s.region IS NOT DISTINCT FROM d.region""")
    con.close()
    exact = (
        "unmatched",
        "lifetime_value",
        "purchase_frequency",
        "volatility_nulls",
        "recency_days",
        "text_or_date",
        "nulls",
        "daily_amount",
        "daily_count",
        "rolling_30d_sum",
        "rolling_30d_count",
    )
    problems = []
    for name, result in (
        ("customer_features", feats),
        ("feature_correlation", corr),
        ("sales_rolling_30d", roll),
    ):
        for key, value in result.items():
            if key in ("rows", "spark_sum", "duckdb_sum") or value is None:
                continue
            limit = 0 if key in exact else TOLERANCE
            if float(value) > limit:
                problems.append(f"{name}.{key}={value}")
    if feats["rows"] == 0 or roll["rows"] == 0 or corr["rows"] != 36:
        problems.append("empty output")
    return {
        "agree": not problems,
        "problems": problems,
        "customer_features": feats,
        "feature_correlation": corr,
        "sales_rolling_30d": roll,
    }


def run(args: argparse.Namespace) -> core.FigureResult:
    from spark_jobs.common import get_spark

    load = core.load_average()
    work = core.work_dir(args.work)
    sizes = tuple(args.sizes) if args.sizes else QUICK_SIZES if args.quick else FULL_SIZES
    n = cli.runs(args, full=3)
    lakes = {rows: prepare(work, rows) for rows in sizes}
    # Millions of rows are not what the local default JVM options are for (quick compilation
    # only, spark_jobs/common.py): the Spark side runs with the JVM's own defaults, as a user
    # with this much data would set it, unless the environment says otherwise.
    jvm_options = os.environ.get("SPARK_DRIVER_JAVA_OPTIONS", "")
    with core.environ(SPARK_DRIVER_JAVA_OPTIONS=jvm_options):
        startup, spark = core.timed(lambda: get_spark("bench_features"))
    cores = spark.sparkContext.defaultParallelism
    # One untimed run on the small input: class loading and JIT warm-up of a fresh JVM are a
    # once-per-process cost (reported as start-up), not part of either size's job time.
    warmup, _ = core.timed(lambda: spark_runs(spark, lakes[sizes[0]], 1))
    # DuckDB's side too: its first run imports pyiceberg's readers and opens the catalog.
    small = lakes[sizes[0]]
    duck_warmup, _ = core.timed(lambda: duckdb_runs(small, small.parent / "duckdb_out", 1, threads=cores))
    per_size: dict[int, dict[str, Any]] = {}
    for rows, lake in lakes.items():
        load_size = core.load_average()
        s = spark_runs(spark, lake, n)
        out = lake.parent / "duckdb_out"
        d = duckdb_runs(lake, out, n, threads=cores)
        per_size[rows] = {
            "load_start": load_size,
            "spark": {k: v.as_dict() for k, v in s.items()},
            "duckdb": {k: v.as_dict() for k, v in d.items()},
            "ratio_median": s["total"].median / d["total"].median,
            "ratio_min": s["total"].min / d["total"].min,
            "check": compare(lake, out),
            "spark_timing": s,
            "duckdb_timing": d,
        }
    spark.stop()

    small, big = sizes
    rows_out: list[core.Row] = []
    for rows in sizes:
        r = per_size[rows]
        label = f"{rows / 1e6:g}M rows"
        for engine in ("spark", "duckdb"):
            for part in r[f"{engine}_timing"]:
                t = r[f"{engine}_timing"][part]
                rows_out.append(
                    core.Row(f"{label}: {engine} {part}", t.min, t.median, note=f"load {r['load_start']}")
                )
        is_big = rows == big
        rows_out.append(
            core.Row(
                f"{label}: Spark/DuckDB",
                r["ratio_min"],
                r["ratio_median"],
                unit="x",
                target="<= 3" if is_big else "",
                met=core.check(r["ratio_median"], 3) if is_big else None,
            )
        )
        check = r["check"]
        rows_out.append(
            core.Row(
                f"{label}: outputs agree",
                None,
                None,
                unit="",
                target="identical",
                met=check["agree"],
                note="; ".join(check["problems"])
                or (
                    f"{check['customer_features']['rows']} customers, "
                    f"sum lifetime_value {check['customer_features']['spark_sum']} both"
                ),
            )
        )
    scale = per_size[big]["spark_timing"]["total"].median / per_size[small]["spark_timing"]["total"].median
    scale_min = per_size[big]["spark_timing"]["total"].min / per_size[small]["spark_timing"]["total"].min
    rows_out.append(
        core.Row(
            f"Spark {big / 1e6:g}M / {small / 1e6:g}M time",
            scale_min,
            scale,
            unit="x",
            target="<= 8",
            met=core.check(scale, 8),
        )
    )
    rows_out.append(core.Row("Spark session start-up (once, not in the totals)", startup, startup))
    rows_out.append(core.Row("Spark warm-up run on the small input (untimed in the totals)", warmup, warmup))
    rows_out.append(
        core.Row("DuckDB warm-up run on the small input (untimed in the totals)", duck_warmup, duck_warmup)
    )
    for r in per_size.values():
        del r["spark_timing"], r["duckdb_timing"]
    ratio = per_size[big]["ratio_median"]
    agree = all(r["check"]["agree"] for r in per_size.values())
    targets = [row.met for row in rows_out if row.met is not None]
    summary = (
        f"features+sales_rolling: Spark/DuckDB {ratio:.2f}x at {big:,} rows (target <= 3), "
        f"Spark {big:,}/{small:,} rows time {scale:.2f}x (target <= 8), outputs agree: {agree}, "
        f"Spark median {per_size[big]['spark']['total']['median']:.1f}s vs DuckDB "
        f"{per_size[big]['duckdb']['total']['median']:.1f}s, {cores} cores, load {load}"
    )
    return core.FigureResult(
        figure=2,
        name="features",
        title="features + sales_rolling: Spark vs DuckDB on the same Iceberg tables",
        summary=summary,
        load_start=load,
        rows=rows_out,
        details={
            "sizes": {str(k): v for k, v in per_size.items()},
            "cores": cores,
            "runs": n,
            "spark_env": {
                **{k: os.environ.get(k) for k in ("SPARK_SHUFFLE_PARTITIONS", "SPARK_DRIVER_MEMORY")},
                "SPARK_DRIVER_JAVA_OPTIONS": jvm_options,
            },
        },
        ok=all(targets),
        method=core.method(__doc__),
    )


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    cli.add_sizes(p, "sales")
    run(p.parse_args(argv)).emit()


if __name__ == "__main__":
    main()
