"""What the project's AWS operators hand on: their connection to the triggers they defer on and to
the S3 hooks that read logs, and the base of the triggers that poll AWS with it."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.triggers.base import BaseTrigger


def aws_connection(operator: Any) -> dict[str, Any]:
    """An AwsBaseOperator's AWS connection, as the keyword arguments of a trigger's."""
    return {
        "aws_conn_id": operator.aws_conn_id,
        "region_name": operator.region_name,
        "verify": operator.verify,
        "botocore_config": operator.botocore_config,
    }


def s3_hook(operator: Any) -> S3Hook:
    """An S3 hook on an AwsBaseOperator's connection (its retries included)."""
    return S3Hook(
        aws_conn_id=operator.aws_conn_id, region_name=operator.region_name, config=operator.botocore_config
    )


class AwsPollTrigger(BaseTrigger):
    """A trigger that polls AWS every `waiter_delay` seconds, at most `waiter_max_attempts` times,
    on its operator's connection (`aws_connection`).

    A subclass names its hook (`hook_class`) and the arguments of its own that say what it polls
    (`ids`: set by its constructor, serialized before the poll's and the connection's)."""

    hook_class: ClassVar[type[AwsGenericHook]]
    ids: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 720,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.waiter_delay, self.waiter_max_attempts = waiter_delay, waiter_max_attempts
        self.aws_conn_id, self.region_name = aws_conn_id, region_name
        self.verify, self.botocore_config = verify, botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **{name: getattr(self, name) for name in self.ids},
                "waiter_delay": self.waiter_delay,
                "waiter_max_attempts": self.waiter_max_attempts,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    def hook(self) -> Any:
        return self.hook_class(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )
