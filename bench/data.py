"""Benchmark inputs written straight as processed/curated Parquet (the jobs' input), seeded.

The landing CSV -> ingest path is not what figures 2 and 3 measure, and 10M rows of CSV plus
their ingest would cost more than the measurement; so the processed zone is written here with
pyarrow in the exact schema of spark_jobs.schemas.PROCESSED. Spend is heavy-tailed, customers
follow the demo generator's size rule (30k * sqrt(rows / 1M)), and 0.5 % of the sales are
re-delivered on a later day so the jobs' cross-day deduplication has work to do.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REGIONS = np.array(["NA", "EU", "APAC", "LATAM"])
DAYS = 90  # history before ds; sales_rolling reads the last 30 of them, features all
REPLAY_SHARE = 0.005
GRAPH_SHARE = 0.3  # customers with a referral_graph row


def n_customers(rows: int) -> int:
    return max(200, round(30_000 * math.sqrt(rows / 1_000_000)))


def _ids(prefix: str, idx: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded number, in Arrow's C++ kernels (numpy's string ops are ~50x slower)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(idx, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def customer_ids(idx: np.ndarray) -> pa.Array:
    return _ids("C", idx, 7)


def _money(cents: np.ndarray) -> pa.Array:
    """DECIMAL(12,2) from integer cents, exactly: same 128-bit storage as DECIMAL(19,0)."""
    whole = pa.array(cents.astype(np.int64)).cast(pa.decimal128(19, 0))
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(whole), whole.buffers())


def _write(table: pa.Table, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "part-00000.parquet", compression="snappy")


def sales_lake(root: Path, rows: int, ds: dt.date, seed: int = 11) -> dict:
    """processed/sales (DAYS daily partitions ending on ds), processed/customers/dt=ds and
    curated/referral_graph/dt=ds under root; returns what was written."""
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    customers = n_customers(rows)
    first = ds - dt.timedelta(days=DAYS - 1)
    per_day = np.full(DAYS, rows // DAYS)
    per_day[: rows - per_day.sum()] += 1
    # Customer activity is skewed: a few heavy buyers, a long tail.
    weights = rng.pareto(1.5, customers) + 1
    weights /= weights.sum()
    next_id = 0
    replay: list[pa.Table] = []
    for i in range(DAYS):
        day = first + dt.timedelta(days=i)
        n = int(per_day[i])
        idx = np.arange(next_id, next_id + n)
        next_id += n
        who = rng.choice(customers, size=n, p=weights)
        cents = np.minimum((rng.lognormal(3.4, 1.0, n) * 100).astype(np.int64), 9_999_999_999)
        seconds = rng.integers(0, 86_400, n)
        start = np.datetime64(day.isoformat(), "us")
        table = pa.table(
            {
                "transaction_id": _ids("T", idx, 10),
                "customer_id": customer_ids(who),
                "product_id": _ids("P", rng.integers(0, 250, n), 3),
                "quantity": pa.array(rng.geometric(0.45, n).astype(np.int32)),
                "total_amount": _money(cents),
                "transaction_ts": pa.array(start + seconds * 1_000_000, pa.timestamp("us", tz="UTC")),
            }
        )
        # Re-deliveries of earlier sales land in today's partition (same id, same content).
        if replay and i < DAYS:
            table = pa.concat_tables([table, replay.pop()])
        if i + 1 < DAYS:
            take = rng.random(n) < REPLAY_SHARE
            replay.append(table.slice(0, n).filter(pa.array(take)))
        _write(table, root / "processed" / "sales" / f"dt={day}")
    cid = np.arange(customers)
    _write(
        pa.table(
            {
                "customer_id": customer_ids(cid),
                "region": pa.array(rng.choice(REGIONS, customers, p=[0.46, 0.29, 0.17, 0.08])),
                "signup_date": pa.array(
                    np.datetime64("2020-01-01") + rng.integers(0, 1500, customers).astype("timedelta64[D]")
                ),
            }
        ),
        root / "processed" / "customers" / f"dt={ds}",
    )
    in_graph = np.sort(rng.choice(customers, size=max(1, int(customers * GRAPH_SHARE)), replace=False))
    ranks = rng.pareto(2.0, len(in_graph)) + 1
    _write(
        pa.table(
            {
                "customer_id": customer_ids(in_graph),
                "pagerank": pa.array(ranks / ranks.sum()),
                "community_id": customer_ids(in_graph - in_graph % 50),
            }
        ),
        root / "curated" / "referral_graph" / f"dt={ds}",
    )
    return {"sales_rows": int(next_id), "customers": customers, "days": DAYS, "first_dt": str(first)}


def edge_list(path: Path, edges: int, seed: int = 5) -> dict:
    """`edges` distinct directed edges src -> dst without self-loops, ids like customer ids.

    Nodes = edges / 5; out-degrees are roughly Poisson (some nodes dangle), in-degrees are
    skewed (dst drawn with density ~ 1/sqrt(x)), as referrals to popular referrers are.
    """
    rng = np.random.default_rng(seed)
    nodes = max(10, edges // 5)
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < edges:
        want = int((edges - len(keys)) * 1.3) + 10
        src = rng.integers(0, nodes, want)
        dst = (nodes * rng.random(want) ** 2).astype(np.int64)
        ok = src != dst
        keys = np.unique(np.concatenate([keys, src[ok] * nodes + dst[ok]]))
    keys = rng.permutation(keys)[:edges]
    src, dst = keys // nodes, keys % nodes
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"src": customer_ids(src), "dst": customer_ids(dst)}), path, compression="snappy")
    return {"edges": int(edges), "node_ids": len(np.union1d(src, dst))}
