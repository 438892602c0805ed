"""Seeded demo data: the landing partitions of all five datasets for every day of a date range.

`generate` writes them (`python -m scripts.generate_demo_data` is its command line);
`generate_if_empty` only into a lake that holds nothing yet (the Compose stack's lake volume).
Scale 1.0 is 1,000,000 sales rows over the range. Rows are built with numpy, one day at a time
(include/demo_rows.py), so scale 10 runs in bounded memory; the same arguments always give the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np

from include.demo_rows import (
    CLICKS_PER_SCALE,
    GAP_TICKER,
    SALES_PER_SCALE,
    DayFiles,
    StockMarket,
    build_population,
    clickstream_day,
    customers_day,
    daily_volumes,
    referrals_day,
    sales_day,
)
from spark_jobs.schemas import DATASETS


def lake_root(lake: str) -> Path:
    if lake.startswith("file://"):
        return Path(lake.removeprefix("file://"))
    if "://" in lake:
        raise ValueError(f"demo data is written to a local lake (path or file:// URI), not {lake}")
    return Path(lake).resolve()


def _replace_partition(root: Path, name: str, day: dt.date, out: DayFiles | None) -> None:
    """Replace landing/<name>/dt=<day>/ with the day's files (or remove it: no data that day)."""
    target = root / "landing" / name / f"dt={day}"
    if target.exists():
        shutil.rmtree(target)
    if out is None:
        return
    target.mkdir(parents=True)
    for file_name, lines in out.files.items():
        (target / file_name).write_text("\n".join(lines) + "\n" if len(lines) else "")


def generate(lake: str, start: dt.date | str, end: dt.date | str, scale: float, seed: int = 7) -> dict:
    """Write landing partitions of every dataset for every date in [start, end]; return a manifest:
    per dataset the rows written, partitions, duplicates and bad rows by expected reject reason,
    with the same per day under manifest["days"][ds][dataset]."""
    start = dt.date.fromisoformat(str(start))
    end = dt.date.fromisoformat(str(end))
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    root = lake_root(lake)
    dates = [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]
    pop = build_population(dates, scale, seed)
    sales_n = np.maximum(10, daily_volumes(dates, round(SALES_PER_SCALE * scale), seed, "sales"))
    clicks_n = np.maximum(10, daily_volumes(dates, round(CLICKS_PER_SCALE * scale), seed, "clickstream"))
    referrals_n = np.maximum(3, daily_volumes(dates, round(1.5 * len(pop.ids)), seed, "referrals"))
    market = StockMarket(dates, scale, seed)

    totals = {name: {"rows": 0, "partitions": 0, "duplicates": 0, "bad": {}} for name in DATASETS}
    days: dict[str, dict] = {}
    for i, day in enumerate(dates):
        outputs = {
            "customers": customers_day(pop, i, day, seed),
            "sales": sales_day(pop, i, day, int(sales_n[i]), seed),
            "referrals": referrals_day(pop, i, day, int(referrals_n[i]), seed),
            "stock_ticks": market.day(day),
            "clickstream": clickstream_day(pop, i, day, int(clicks_n[i]), seed),
        }
        days[str(day)] = {}
        for name, out in outputs.items():
            _replace_partition(root, name, day, out)
            if out is None:
                continue
            days[str(day)][name] = {"rows": out.rows, "duplicates": out.duplicates, "bad": out.bad}
            total = totals[name]
            total["rows"] += out.rows
            total["partitions"] += 1
            total["duplicates"] += out.duplicates
            for kind, k in out.bad.items():
                total["bad"][kind] = total["bad"].get(kind, 0) + k
    return {
        "lake": str(root),
        "start": str(start),
        "end": str(end),
        "scale": scale,
        "seed": seed,
        "customers": len(pop.ids),
        "stock_gap": {"ticker": GAP_TICKER, "days": sorted(str(d) for d in market.gap)},
        "datasets": totals,
        "days": days,
    }


STAGING = ".demo-staging"  # an unfinished `--if-empty` generation; the next one starts over


def generate_if_empty(
    lake: str, start: dt.date | str, end: dt.date | str, scale: float, seed: int = 7
) -> dict | None:
    """`generate` into a lake that holds nothing yet, else nothing (None): a lake with any file is
    someone's, however it got there. The data goes to a staging folder inside the lake, then into
    place with one rename, so an interrupted first start leaves no half lake behind."""
    root = lake_root(lake)
    staging = root / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    if root.exists() and any(root.iterdir()):
        return None
    manifest = generate(staging.as_uri(), start, end, scale, seed)
    (staging / "landing").rename(root / "landing")
    staging.rmdir()
    return {**manifest, "lake": str(root)}
