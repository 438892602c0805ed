"""Register a lake output in the Glue Data Catalog: its table (created or brought up to date) and partitions.

Idempotent, so a rerun or a backfill of a date converges to the same catalog: the table is
created when missing and updated when its columns, partition keys or location changed; each
partition is created, or updated to the given location when it already exists.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from botocore.exceptions import ClientError

_TABLE_KEYS = ("Name", "Description", "TableType", "Parameters", "PartitionKeys", "StorageDescriptor")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class GlueRegisterPartitionsOperator(AwsBaseOperator[GlueCatalogHook]):
    """Make `database.table` describe `table_input` and hold the given partitions.

    :param database_name: Glue database (must exist; see GlueCatalogCreateDatabaseOperator)
    :param table_input: Glue TableInput with StorageDescriptor.Location, or a callable
        returning it (so building it, e.g. from Spark schemas, waits until the task runs)
    :param partitions: partition value lists, in PartitionKeys order (templated; XComArg works),
        e.g. [["2024-06-30"]] or [["2024-06-30", "0"], ["2024-06-30", "1"]]
    :return: the partition locations registered
    """

    aws_hook_class = GlueCatalogHook
    template_fields: Sequence[str] = aws_template_fields("database_name", "partitions")
    template_fields_renderers = {"partitions": "json"}
    ui_color = "#c9e4f6"

    def __init__(
        self,
        *,
        database_name: str,
        table_input: dict[str, Any] | Callable[[], dict[str, Any]],
        partitions: Sequence[Sequence[str]] | Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.database_name = database_name
        self.table_input = table_input
        self.partitions = partitions

    def execute(self, context: Any) -> list[str]:
        table = self.table_input() if callable(self.table_input) else copy.deepcopy(self.table_input)
        glue = self.hook.conn
        self._ensure_table(glue, table)
        keys = [k["Name"] for k in table["PartitionKeys"]]
        locations = []
        for values in self.partitions:
            values = [str(v) for v in values]
            if len(values) != len(keys):
                raise ValueError(f"partition {values} does not match partition keys {keys}")
            location = table["StorageDescriptor"]["Location"].rstrip("/") + "".join(
                f"/{k}={v}" for k, v in zip(keys, values, strict=True)
            )
            self._upsert_partition(glue, table, values, location)
            locations.append(location)
        self.log.info("%s.%s: %d partition(s) registered", self.database_name, table["Name"], len(locations))
        return locations

    def _ensure_table(self, glue: Any, table: dict[str, Any]) -> None:
        wanted = {k: table[k] for k in _TABLE_KEYS if k in table}
        try:
            current = glue.get_table(DatabaseName=self.database_name, Name=table["Name"])["Table"]
        except ClientError as exc:
            if _error_code(exc) != "EntityNotFoundException":
                raise
            glue.create_table(DatabaseName=self.database_name, TableInput=wanted)
            self.log.info("Created table %s.%s", self.database_name, table["Name"])
            return
        sd, cur_sd = wanted["StorageDescriptor"], current.get("StorageDescriptor", {})
        if (
            cur_sd.get("Columns") != sd["Columns"]
            or cur_sd.get("Location") != sd["Location"]
            or current.get("PartitionKeys") != wanted["PartitionKeys"]
        ):
            glue.update_table(DatabaseName=self.database_name, TableInput=wanted)
            self.log.info("Updated table %s.%s to the contract's schema", self.database_name, table["Name"])

    def _upsert_partition(self, glue: Any, table: dict[str, Any], values: list[str], location: str) -> None:
        sd = copy.deepcopy(table["StorageDescriptor"])
        sd["Location"] = location
        partition = {"Values": values, "StorageDescriptor": sd}
        try:
            glue.create_partition(
                DatabaseName=self.database_name, TableName=table["Name"], PartitionInput=partition
            )
        except ClientError as exc:
            if _error_code(exc) != "AlreadyExistsException":
                raise
            glue.update_partition(
                DatabaseName=self.database_name,
                TableName=table["Name"],
                PartitionValueList=values,
                PartitionInput=partition,
            )
        self.log.info("Partition %s -> %s", values, location)
