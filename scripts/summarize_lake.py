"""Print what a run produced in a local lake: every table's rows of a date, with highlights.

Reads the Iceberg tables with pyiceberg (no Spark start-up), so `make demo` can show its outputs
at once. `python -m scripts.summarize_lake --lake LAKE --ds YYYY-MM-DD`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from include.lake import read_date
from spark_jobs.schemas import CURATED, DATASETS

pd.set_option("display.width", 140)
pd.set_option("display.max_columns", 20)


def read_partition(lake: str, zone: str, name: str, ds: str) -> pd.DataFrame | None:
    """One date of a table (pyiceberg), None when no job wrote it."""
    return read_date(lake, zone, name, ds)


def _highlight(name: str, df: pd.DataFrame) -> str:
    """A few lines a person would look at first for each output."""
    if df.empty:
        return "  (no rows)"
    if name == "customer_segments":
        by = df.groupby("segment").agg(
            customers=("customer_id", "count"),
            avg_spent=("total_spent", lambda s: float(s.astype(float).mean())),
            avg_recency_days=("recency_days", "mean"),
        )
        return by.round(1).to_string()
    if name == "referral_graph":
        top = df.sort_values("pagerank", ascending=False).head(5)
        return f"  communities: {df['community_id'].nunique()}\n" + top.to_string(index=False)
    if name == "feature_correlation":
        pivot = df.pivot(index="feature_a", columns="feature_b", values="pearson")
        return pivot.round(2).to_string()
    if name == "sales_rolling_30d":
        return df.sort_values("rolling_30d_sum", ascending=False).to_string(index=False)
    if name == "stock_daily":
        cols = ["ticker", "open_price", "close_price", "return_1d", "sma_20", "volatility_20d"]
        return df[cols].sort_values("ticker").round(4).to_string(index=False)
    if name == "clickstream_checkouts":
        return (
            f"  windows: {len(df)}, users: {df['user_id'].nunique()}, "
            f"checkouts: {int(df['checkout_count'].sum())}"
        )
    return df.head(5).to_string(index=False)


def summarize(lake: str, ds: str, out=sys.stdout) -> dict[str, int | None]:
    """Print the run's tables; return rows per curated output (None when the date was not written)."""
    lake = lake if "://" in lake else Path(lake).resolve().as_uri()
    print(f"\n== lake {lake} for dt={ds}", file=out)
    print(f"{'dataset':<14}{'processed':>12}{'quarantined':>13}", file=out)
    for name in DATASETS:
        processed = read_partition(lake, "processed", name, ds)
        quarantined = read_partition(lake, "quarantine", name, ds)
        p = "-" if processed is None else len(processed)
        q = "-" if quarantined is None else len(quarantined)
        print(f"{name:<14}{p:>12}{q:>13}", file=out)
    rows: dict[str, int | None] = {}
    for name in CURATED:
        df = read_partition(lake, "curated", name, ds)
        rows[name] = None if df is None else len(df)
        status = "MISSING" if df is None else f"{len(df)} rows"
        print(f"\n-- curated.{name}, dt={ds}: {status}", file=out)
        if df is not None:
            print(_highlight(name, df), file=out)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.summarize_lake", description=__doc__)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--ds", required=True)
    args = parser.parse_args(argv)
    rows = summarize(args.lake, args.ds)
    missing = [name for name, n in rows.items() if n is None]
    if missing:
        print(f"\nmissing outputs: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
