"""GlueRegisterPartitionsOperator on moto's Glue: table created or brought up to date, partitions upserted."""

from __future__ import annotations

import pytest

import tests.conftest_airflow  # noqa: F401  (Airflow's home before Airflow is imported)

DB = "analytics"
LOCATION = "s3://lake/curated/demo"


def _table(columns=(("id", "string"), ("amount", "decimal(12,2)")), location=LOCATION):
    return {
        "Name": "demo",
        "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "dt", "Type": "string"}, {"Name": "segment", "Type": "int"}],
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in columns],
            "Location": location,
        },
    }


@pytest.fixture
def glue(monkeypatch):
    import boto3
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": DB})
        yield client


def _register(table, partitions):
    from plugins.glue_partitions import GlueRegisterPartitionsOperator

    op = GlueRegisterPartitionsOperator(
        task_id="register",
        database_name=DB,
        table_input=table,
        partitions=partitions,
        aws_conn_id=None,
        region_name="us-east-1",
    )
    return op.execute({})


def _partitions(glue) -> dict[tuple[str, ...], str]:
    found = glue.get_partitions(DatabaseName=DB, TableName="demo")["Partitions"]
    return {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for p in found}


def test_creates_the_table_and_one_partition_per_value_list(glue):
    locations = _register(_table(), [["2024-06-30", "0"], ["2024-06-30", "1"]])
    assert locations == [f"{LOCATION}/dt=2024-06-30/segment=0", f"{LOCATION}/dt=2024-06-30/segment=1"]
    table = glue.get_table(DatabaseName=DB, Name="demo")["Table"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["id", "amount"]
    assert _partitions(glue) == {
        ("2024-06-30", "0"): f"{LOCATION}/dt=2024-06-30/segment=0",
        ("2024-06-30", "1"): f"{LOCATION}/dt=2024-06-30/segment=1",
    }


def test_a_rerun_converges_and_a_changed_schema_or_location_updates_table_and_partitions(glue):
    _register(_table(), [["2024-06-30", "0"]])
    _register(_table(), [["2024-06-30", "0"], ["2024-07-01", "0"]])  # rerun + a new date
    assert set(_partitions(glue)) == {("2024-06-30", "0"), ("2024-07-01", "0")}

    moved = "s3://lake-v2/curated/demo"
    _register(_table(columns=(("id", "string"), ("amount", "double")), location=moved), [["2024-06-30", "0"]])
    table = glue.get_table(DatabaseName=DB, Name="demo")["Table"]
    assert table["StorageDescriptor"]["Location"] == moved
    assert table["StorageDescriptor"]["Columns"][1] == {"Name": "amount", "Type": "double"}
    assert _partitions(glue)[("2024-06-30", "0")] == f"{moved}/dt=2024-06-30/segment=0"
    assert _partitions(glue)[("2024-07-01", "0")] == f"{LOCATION}/dt=2024-07-01/segment=0"


def test_a_callable_table_input_is_built_when_the_task_runs(glue):
    built = []

    def table_input():
        built.append(True)
        return _table()

    _register(table_input, [["2024-06-30", "2"]])
    assert built == [True]
    assert set(_partitions(glue)) == {("2024-06-30", "2")}


def test_values_that_do_not_match_the_partition_keys_are_refused(glue):
    with pytest.raises(ValueError, match="does not match partition keys"):
        _register(_table(), [["2024-06-30"]])
