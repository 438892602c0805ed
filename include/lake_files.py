"""The lake's small files by URI (file:// here, s3:// through the Amazon provider): read and write
text, and where the run reports lie. The run report writes them; `include.lake` adds a record to
one (a branch published by hand); both import this, and this imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

REPORTS_DIR = "_runs/reports"


def lake_io(
    aws_conn_id: str | None, region: str | None
) -> tuple[Callable[[str], str | None], Callable[[str, str], None]]:
    """(read, write) of small text objects by URI; read gives None for a missing object."""

    def read(uri: str) -> str | None:
        if uri.startswith("file://"):
            path = Path(uri.removeprefix("file://"))
            return path.read_text() if path.is_file() else None
        hook = _s3(aws_conn_id, region)
        bucket, key = hook.parse_s3_url(uri)
        return hook.read_key(key, bucket) if hook.check_for_key(key, bucket) else None

    def write(uri: str, text: str) -> None:
        if uri.startswith("file://"):
            path = Path(uri.removeprefix("file://"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        hook = _s3(aws_conn_id, region)
        bucket, key = hook.parse_s3_url(uri)
        hook.load_string(text, key, bucket, replace=True)

    return read, write


def _s3(aws_conn_id: str | None, region: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id, region_name=region)


def report_uri(lake: str, dag_id: str, ds: str, name: str = "report.json") -> str:
    """One report per DAG and date; a rerun replaces it, as it replaces the date's data."""
    return f"{lake}/{REPORTS_DIR}/dag_id={dag_id}/dt={ds}/{name}"


def report_dates(lake: str, dag_id: str, aws_conn_id: str | None, region: str | None) -> list[str]:
    """The dates that have a report of `dag_id` in the lake (the dt= folders), sorted."""
    base = report_uri(lake, dag_id, "X").rsplit("/dt=X/", 1)[0] + "/"
    if base.startswith("file://"):
        folder = Path(base.removeprefix("file://"))
        found = [p.name for p in folder.glob("dt=*") if (p / "report.json").is_file()]
    else:
        hook = _s3(aws_conn_id, region)
        bucket, key = hook.parse_s3_url(base)
        found = [p.rstrip("/").rsplit("/", 1)[-1] for p in hook.list_prefixes(bucket, key, "/")]
    return sorted(name.removeprefix("dt=") for name in found if name.startswith("dt="))
