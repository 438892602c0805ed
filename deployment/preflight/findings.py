"""What preflight finds: one missing or wrong piece a line, and the reads every check shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

# include.settings.Settings, read by attribute (nothing of include is imported here)
Settings = Any

DEPLOY = "deploy the stack (make aws-deploy) and paste its settings into .env"
_NOT_FOUND = ("NoSuchEntity", "NotFoundException", "EntityNotFoundException", "404", "NoSuchBucket")


@dataclass(frozen=True)
class Finding:
    """One missing or wrong piece; `blocking=False` for what preflight could not judge."""

    piece: str
    problem: str
    fix: str
    blocking: bool = True

    def line(self) -> str:
        return f"{self.piece}: {self.problem}; {self.fix}"


Clients = Mapping[str, Any]
Check = Callable[[Settings, Clients], list[Finding]]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    return error_code(exc) in _NOT_FOUND or "does not exist" in str(exc) or "not found" in str(exc).lower()


def unreadable(piece: str, exc: ClientError) -> Finding:
    return Finding(
        piece,
        f"could not be read ({error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')})",
        "grant the caller deployment/iam/airflow-role-policy.json (the stack's Airflow role has it)",
    )


def missing_or_unreadable(piece: str, thing: str, exc: ClientError, fix: str = DEPLOY) -> Finding:
    """The finding of a read of `thing` that failed: it does not exist (`fix` makes it), or the
    caller may not read it."""
    return Finding(piece, f"{thing} does not exist", fix) if is_missing(exc) else unreadable(piece, exc)


def role_name(role_or_arn: str) -> str:
    """A role's (or instance profile's) name, from its name or ARN."""
    return role_or_arn.rsplit("/", 1)[-1]


def bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def bucket_exists(aws: Clients, bucket: str, piece: str, account: str | None) -> Finding | None:
    kwargs = {"ExpectedBucketOwner": account} if account else {}
    try:
        aws["s3"].head_bucket(Bucket=bucket, **kwargs)
    except ClientError as exc:
        if is_missing(exc):
            return Finding(piece, f"bucket {bucket} does not exist", DEPLOY)
        if error_code(exc) in ("403", "AccessDenied"):
            return Finding(
                piece,
                f"bucket {bucket} is not this account's or may not be listed by the caller",
                "use the stack's bucket (its PIPELINE_LAKE)",
            )
        return unreadable(piece, exc)
    return None
