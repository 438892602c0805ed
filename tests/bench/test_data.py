"""bench/data.py writes its tables with pyiceberg; the jobs must find them exactly as if Spark had
created them with `spark_jobs.tables.ensure_table` (the oracle here: the table Spark creates)."""

from __future__ import annotations

import datetime as dt

import pytest

from bench import data
from spark_jobs.catalog import TABLE_PROPERTIES
from spark_jobs.schemas import CURATED, PROCESSED

TABLES = [
    ("processed", "sales", PROCESSED["sales"]),
    ("processed", "customers", PROCESSED["customers"]),
    ("curated", "referral_graph", CURATED["referral_graph"]),
    ("curated", "customer_features", CURATED["customer_features"]),  # a list column
]


@pytest.mark.parametrize(("zone", "name", "schema"), TABLES, ids=[f"{z}.{n}" for z, n, _ in TABLES])
def test_a_bench_table_is_the_table_ensure_table_creates(spark, tmp_path, zone, name, schema):
    from spark_jobs import tables

    by_spark, by_bench = tmp_path / "spark" / "lake", tmp_path / "bench" / "lake"
    by_spark.mkdir(parents=True)
    tables.ensure_table(tables.bind(spark, data.lake_uri(by_spark)), zone, name, schema)
    data.create_table(by_bench, zone, name, schema)

    want = data.catalog(by_spark).load_table(f"{zone}.{name}")
    got = data.catalog(by_bench).load_table(f"{zone}.{name}")
    assert got.schema() == want.schema()  # names, types, ids, optional fields
    assert got.spec() == want.spec()
    assert got.sort_order() == want.sort_order()
    assert got.format_version == want.format_version == 2
    assert got.location().replace(str(by_bench), "LAKE") == want.location().replace(str(by_spark), "LAKE")
    # Spark records who created the table; format-version is the metadata's, not a property
    assert {k: v for k, v in want.properties.items() if k != "owner"} == got.properties
    assert {
        k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version"
    }.items() <= got.properties.items()


def test_the_jobs_accept_the_generated_tables_as_they_are(spark, tmp_path):
    from spark_jobs import table_reads, tables

    lake = tmp_path / "lake"
    ds = dt.date(2024, 6, 30)
    data.sales_lake(lake, 500, ds, seed=1)
    before = {f"{z}.{n}": data.catalog(lake).load_table(f"{z}.{n}").metadata for z, n, _ in TABLES[:3]}
    session = tables.bind(spark, data.lake_uri(lake))
    for zone, name, schema in TABLES[:3]:
        tables.ensure_table(session, zone, name, schema)  # raises if the columns drifted
        assert data.catalog(lake).load_table(f"{zone}.{name}").metadata == before[f"{zone}.{name}"]
    assert table_reads.dates_with_rows(session, "processed", "customers") == [ds]
    sales_dates = table_reads.written_dates(session, "processed", "sales")
    assert min(sales_dates) == ds - dt.timedelta(days=data.DAYS - 1)
    assert max(sales_dates) == ds
    assert len(sales_dates) == data.DAYS
