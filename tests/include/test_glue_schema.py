"""Glue tables of the curated outputs: Hive types from the contract schemas, partition keys and values."""

from __future__ import annotations

import pytest
from pyspark.sql import types as T

from include.glue_schema import hive_type, partition_keys, partition_values, table_columns, table_input
from spark_jobs.schemas import CURATED


@pytest.mark.parametrize(
    ("spark", "hive"),
    [
        (T.StringType(), "string"),
        (T.IntegerType(), "int"),
        (T.LongType(), "bigint"),
        (T.DoubleType(), "double"),
        (T.DateType(), "date"),
        (T.TimestampType(), "timestamp"),
        (T.BooleanType(), "boolean"),
        (T.DecimalType(22, 2), "decimal(22,2)"),
        (T.ArrayType(T.DoubleType(), containsNull=False), "array<double>"),
        (T.MapType(T.StringType(), T.LongType()), "map<string,bigint>"),
        (
            T.StructType([T.StructField("a", T.IntegerType()), T.StructField("b", T.StringType())]),
            "struct<a:int,b:string>",
        ),
    ],
)
def test_hive_type_of_spark_types(spark, hive):
    assert hive_type(spark) == hive


def test_types_the_catalog_cannot_hold_are_refused():
    with pytest.raises(TypeError, match="no Hive type"):
        hive_type(T.TimestampNTZType())


def test_columns_are_the_contract_schema_in_order():
    assert table_columns("sales_rolling_30d") == [
        {"Name": "region", "Type": "string"},
        {"Name": "date", "Type": "date"},
        {"Name": "daily_amount", "Type": "decimal(22,2)"},
        {"Name": "daily_count", "Type": "bigint"},
        {"Name": "rolling_30d_sum", "Type": "decimal(22,2)"},
        {"Name": "rolling_30d_count", "Type": "bigint"},
        {"Name": "rolling_30d_avg", "Type": "double"},
    ]
    for output, schema in CURATED.items():
        names = [c["Name"] for c in table_columns(output)]
        assert names == [
            f.name for f in schema.fields if f.name != "segment" or output != "customer_segments"
        ]


def test_segments_are_a_partition_key_not_a_column():
    assert partition_keys("customer_segments") == [
        {"Name": "dt", "Type": "string"},
        {"Name": "segment", "Type": "int"},
    ]
    assert "segment" not in [c["Name"] for c in table_columns("customer_segments")]
    assert partition_keys("referral_graph") == [{"Name": "dt", "Type": "string"}]


def test_partition_values_of_a_run_date():
    assert partition_values("stock_daily", "2024-06-30") == [["2024-06-30"]]
    assert partition_values("customer_segments", "2024-06-30") == [
        ["2024-06-30", "0"],
        ["2024-06-30", "1"],
        ["2024-06-30", "2"],
    ]


def test_table_input_is_an_external_parquet_table_at_the_outputs_location():
    table = table_input("stock_daily", "s3://b/lake/curated/stock_daily")
    assert table["Name"] == "stock_daily"
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["Parameters"]["classification"] == "parquet"
    sd = table["StorageDescriptor"]
    assert sd["Location"] == "s3://b/lake/curated/stock_daily"
    assert (
        sd["SerdeInfo"]["SerializationLibrary"]
        == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert sd["InputFormat"].endswith("MapredParquetInputFormat")
