"""Benchmark inputs written straight as the lake's Iceberg tables (the jobs' input), seeded.

The landing CSV -> ingest path is not what figures 2 and 6 measure, and 10M rows of CSV plus
their ingest would cost more than the measurement; so `processed.sales`, `processed.customers`
and `curated.referral_graph` are written here with pyiceberg (create the table, append Arrow
tables: no Spark) into the lake's local catalog, as the tables `spark_jobs.tables.ensure_table`
creates: the columns of spark_jobs.schemas plus `dt`, partitioned by `dt` (identity), at
`LAKE/warehouse/<zone>/<name>`, with the same table properties (tests/bench checks the schema,
spec and properties against a table Spark created). Spend is heavy-tailed, customers follow
the demo generator's size rule (30k * sqrt(rows / 1M)), and 0.5 % of the sales are re-delivered
on a later day so the jobs' cross-day deduplication has work to do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REGIONS = np.array(["NA", "EU", "APAC", "LATAM"])
DAYS = 90  # history before ds; sales_rolling reads the last 30 of them, features all
REPLAY_SHARE = 0.005
GRAPH_SHARE = 0.3  # customers with a referral_graph row
JOB = "bench.data"  # pipeline.job of the commits written here


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


# ---- the lake's tables, without Spark ---------------------------------------------------------
def lake_uri(root: Path) -> str:
    """The jobs' --lake for a lake directory."""
    return root.resolve().as_uri()


def catalog(root: Path):
    """pyiceberg's catalog of a local lake (the SQLite file the jobs' JDBC catalog uses)."""
    from include.lake import open_catalog

    return open_catalog(lake_uri(root))


def iceberg_type(dtype):
    """The Iceberg type Spark's Iceberg gives a Spark SQL type (TimestampType is timestamptz)."""
    from pyiceberg import types as it
    from pyspark.sql import types as st

    simple = {
        st.StringType: it.StringType,
        st.IntegerType: it.IntegerType,
        st.LongType: it.LongType,
        st.DoubleType: it.DoubleType,
        st.DateType: it.DateType,
        st.TimestampType: it.TimestamptzType,
        st.TimestampNTZType: it.TimestampType,
        st.BooleanType: it.BooleanType,
    }
    if type(dtype) in simple:
        return simple[type(dtype)]()
    if isinstance(dtype, st.DecimalType):
        return it.DecimalType(dtype.precision, dtype.scale)
    if isinstance(dtype, st.ArrayType):
        # ensure_table's DDL names `array<double>`, which drops containsNull: the element is optional.
        # The id is a placeholder: create_table assigns fresh ids, in Iceberg's order.
        return it.ListType(0, iceberg_type(dtype.elementType), element_required=False)
    raise TypeError(f"no Iceberg type for {dtype.simpleString()} in the bench tables")


def iceberg_schema(struct):
    """A contract schema (spark_jobs.schemas) plus `dt` as an Iceberg schema, every column optional
    (Spark creates nullable columns)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    from spark_jobs.tables import with_dt

    fields = [
        NestedField(i, f.name, iceberg_type(f.dataType), required=not f.nullable)
        for i, f in enumerate(with_dt(struct).fields, start=1)
    ]
    return Schema(*fields)


def create_table(root: Path, zone: str, name: str, struct):
    """A new table `<zone>.<name>` of the lake at root, as `ensure_table` would create it."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    from spark_jobs.catalog import TABLE_PROPERTIES, WAREHOUSE

    schema = iceberg_schema(struct)
    dt_id = schema.find_field("dt").field_id
    spec = PartitionSpec(
        PartitionField(source_id=dt_id, field_id=1000, transform=IdentityTransform(), name="dt")
    )
    cat = catalog(root)
    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace(zone)
    return cat.create_table(
        f"{zone}.{name}",
        schema=schema,
        # as Spark records ensure_table's location (Hadoop's form of the file URI)
        location=f"file:{root.resolve()}/{WAREHOUSE}/{zone}/{name}",
        partition_spec=spec,
        properties=dict(TABLE_PROPERTIES),
    )


def append_days(table, days: Iterable[tuple[dt.date, pa.Table]], batch_rows: int = 1_000_000) -> int:
    """Append each (date, rows) as that date, consecutive dates together in commits of about
    batch_rows rows (pyiceberg splits each by dt); the rows appended."""
    rows, batch = 0, []

    def commit() -> None:
        label = str(batch[0][0]) if len(batch) == 1 else f"{batch[0][0]}..{batch[-1][0]}"
        frames = [
            frame.append_column("dt", pa.repeat(pa.scalar(day, pa.date32()), frame.num_rows))
            for day, frame in batch
        ]
        table.append(
            pa.concat_tables(frames), snapshot_properties={"pipeline.job": JOB, "pipeline.dates": label}
        )
        batch.clear()

    for day, frame in days:
        batch.append((day, frame))
        rows += frame.num_rows
        if sum(f.num_rows for _, f in batch) >= batch_rows:
            commit()
    if batch:
        commit()
    return rows


def sales_day(rng: np.random.Generator, day: dt.date, first_id: int, n: int, weights: np.ndarray) -> pa.Table:
    """n processed sales of one day (transaction ids first_id.. on), customers drawn by weight."""
    idx = np.arange(first_id, first_id + n)
    who = rng.choice(len(weights), size=n, p=weights)
    cents = np.minimum((rng.lognormal(3.4, 1.0, n) * 100).astype(np.int64), 9_999_999_999)
    seconds = rng.integers(0, 86_400, n)
    start = np.datetime64(day.isoformat(), "us")
    return pa.table(
        {
            "transaction_id": _ids("T", idx, 10),
            "customer_id": customer_ids(who),
            "product_id": _ids("P", rng.integers(0, 250, n), 3),
            "quantity": pa.array(rng.geometric(0.45, n).astype(np.int32)),
            "total_amount": _money(cents),
            "transaction_ts": pa.array(start + seconds * 1_000_000, pa.timestamp("us", tz="UTC")),
        }
    )


def customer_weights(rng: np.random.Generator, customers: int) -> np.ndarray:
    """Customer activity is skewed: a few heavy buyers, a long tail."""
    weights = rng.pareto(1.5, customers) + 1
    return weights / weights.sum()


def sales_lake(root: Path, rows: int, ds: dt.date, seed: int = 11) -> dict:
    """Tables processed.sales (DAYS dates ending on ds), processed.customers (ds) and
    curated.referral_graph (ds) of a new lake at root; returns what was written."""
    from spark_jobs.schemas import CURATED, PROCESSED

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    customers = n_customers(rows)
    first = ds - dt.timedelta(days=DAYS - 1)
    per_day = np.full(DAYS, rows // DAYS)
    per_day[: rows - per_day.sum()] += 1
    weights = customer_weights(rng, customers)
    counter = {"next_id": 0}

    def days() -> Iterable[tuple[dt.date, pa.Table]]:
        replay: list[pa.Table] = []
        for i in range(DAYS):
            day = first + dt.timedelta(days=i)
            n = int(per_day[i])
            table = sales_day(rng, day, counter["next_id"], n, weights)
            counter["next_id"] += n
            # Re-deliveries of earlier sales land in today's date (same id, same content).
            if replay:
                table = pa.concat_tables([table, replay.pop()])
            if i + 1 < DAYS:
                take = rng.random(n) < REPLAY_SHARE
                replay.append(table.slice(0, n).filter(pa.array(take)))
            yield day, table

    appended = append_days(create_table(root, "processed", "sales", PROCESSED["sales"]), days())
    region = rng.choice(REGIONS, customers, p=[0.46, 0.29, 0.17, 0.08])
    signup = np.datetime64("2020-01-01") + rng.integers(0, 1500, customers).astype("timedelta64[D]")
    people = pa.table(
        {
            "customer_id": customer_ids(np.arange(customers)),
            "region": pa.array(region),
            "signup_date": pa.array(signup),
        }
    )
    append_days(create_table(root, "processed", "customers", PROCESSED["customers"]), [(ds, people)])
    in_graph = np.sort(rng.choice(customers, size=max(1, int(customers * GRAPH_SHARE)), replace=False))
    ranks = rng.pareto(2.0, len(in_graph)) + 1
    graph = pa.table(
        {
            "customer_id": customer_ids(in_graph),
            "pagerank": pa.array(ranks / ranks.sum()),
            "community_id": customer_ids(in_graph - in_graph % 50),
        }
    )
    append_days(create_table(root, "curated", "referral_graph", CURATED["referral_graph"]), [(ds, graph)])
    return {
        "sales_rows": int(counter["next_id"]),
        "sales_rows_with_replays": appended,
        "customers": customers,
        "days": DAYS,
        "first_dt": str(first),
    }


def one_day_of_sales(path: Path, rows: int, ds: dt.date, seed: int = 13) -> dict:
    """`rows` processed sales of date ds as one Parquet file (no `dt` column): figure 6's input."""
    rng = np.random.default_rng(seed)
    table = sales_day(rng, ds, 0, rows, customer_weights(rng, n_customers(rows)))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return {"rows": rows, "ds": str(ds)}


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
