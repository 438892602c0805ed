"""Glue Data Catalog table definitions for the curated outputs, derived from the contract's schemas.

Spark StructTypes (spark_jobs/schemas.py, declared once) become Hive column types that Athena
reads from the Parquet files. spark_jobs is imported inside the functions, so parsing a DAG
never loads pyspark; only the registration tasks do.
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = {"Name": "dt", "Type": "string"}  # ISO dates sort and compare as strings in Athena

_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


def hive_type(dtype: Any) -> str:
    """The Hive/Athena type of a Spark SQL type; TypeError for types the catalog cannot hold."""
    from pyspark.sql import types as T

    simple = {
        T.StringType: "string",
        T.BooleanType: "boolean",
        T.ByteType: "tinyint",
        T.ShortType: "smallint",
        T.IntegerType: "int",
        T.LongType: "bigint",
        T.FloatType: "float",
        T.DoubleType: "double",
        T.DateType: "date",
        T.TimestampType: "timestamp",
        T.BinaryType: "binary",
    }
    for cls, name in simple.items():
        if type(dtype) is cls:
            return name
    if isinstance(dtype, T.DecimalType):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, T.ArrayType):
        return f"array<{hive_type(dtype.elementType)}>"
    if isinstance(dtype, T.MapType):
        return f"map<{hive_type(dtype.keyType)},{hive_type(dtype.valueType)}>"
    if isinstance(dtype, T.StructType):
        return "struct<" + ",".join(f"{f.name}:{hive_type(f.dataType)}" for f in dtype.fields) + ">"
    raise TypeError(f"no Hive type for Spark type {dtype.simpleString()}")


def partition_keys(output: str) -> list[dict[str, str]]:
    """dt, then the output's sub-partition columns (customer_segments: segment)."""
    from spark_jobs.schemas import CURATED, CURATED_SUBPARTITIONS

    schema = CURATED[output]
    subs = CURATED_SUBPARTITIONS.get(output, ())
    return [PARTITION_KEY, *({"Name": c, "Type": hive_type(schema[c].dataType)} for c in subs)]


def table_columns(output: str) -> list[dict[str, str]]:
    """Columns stored in the Parquet files: the contract schema minus partition columns."""
    from spark_jobs.schemas import CURATED, CURATED_SUBPARTITIONS

    subs = set(CURATED_SUBPARTITIONS.get(output, ()))
    return [
        {"Name": f.name, "Type": hive_type(f.dataType)} for f in CURATED[output].fields if f.name not in subs
    ]


def table_input(output: str, location: str) -> dict[str, Any]:
    """Glue `TableInput` of an external Parquet table at `location` (LAKE/curated/<output>)."""
    return {
        "Name": output,
        "Description": f"{output}: curated output of the customer analytics pipeline (see DATA_CONTRACT.md)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "PartitionKeys": partition_keys(output),
        "StorageDescriptor": {"Columns": table_columns(output), "Location": location, **_PARQUET},
    }


def partition_values(output: str, ds: str) -> list[list[str]]:
    """Partition value lists for a run date: [ds], or [ds, k] for each sub-partition value.

    customer_segments has exactly SEGMENT_K segments (0..k-1) by contract; a segment with no
    customer is an empty partition to Athena, never a missing one.
    """
    from spark_jobs.schemas import CURATED_SUBPARTITIONS, SEGMENT_K

    subs = CURATED_SUBPARTITIONS.get(output, ())
    if not subs:
        return [[ds]]
    if tuple(subs) != ("segment",):
        raise ValueError(f"{output}: no rule for the values of sub-partitions {subs}")
    return [[ds, str(k)] for k in range(SEGMENT_K)]
