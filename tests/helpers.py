"""Helpers for tests: write landing files exactly as upstream systems would."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path


def _partition_dir(lake_uri: str, dataset: str, ds: str) -> Path:
    path = Path(lake_uri.removeprefix("file://")) / "landing" / dataset / f"dt={ds}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_landing_csv(
    lake_uri: str,
    dataset: str,
    ds: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    name: str = "part-0000.csv",
) -> Path:
    path = _partition_dir(lake_uri, dataset, ds) / name
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


def write_landing_jsonl(
    lake_uri: str, dataset: str, ds: str, records: Iterable[dict | str], name: str = "part-0000.json"
) -> Path:
    """Records as JSON lines; a str is written verbatim (to inject malformed lines)."""
    path = _partition_dir(lake_uri, dataset, ds) / name
    with path.open("w") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    return path


def fail_parquet_writes_to(monkeypatch, zone_part: str) -> None:
    """Make every Spark Parquet write whose path contains `zone_part` (e.g. "/quarantine/") raise
    OSError("injected: ...") before writing anything; other writes go through."""
    from pyspark.sql.readwriter import DataFrameWriter

    real = DataFrameWriter.parquet

    def fail_there(self, path, *args, **kwargs):
        if zone_part in path:
            raise OSError(f"injected: write to {path} failed")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(DataFrameWriter, "parquet", fail_there)
