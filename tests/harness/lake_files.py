"""Files of a test lake: its directory, and landing files written exactly as upstream systems would."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path


def lake_dir(lake_uri: str) -> Path:
    """The directory of a file:// lake (the `lake` fixture's)."""
    return Path(lake_uri.removeprefix("file://"))


def _partition_dir(lake_uri: str, dataset: str, ds: str) -> Path:
    path = lake_dir(lake_uri) / "landing" / dataset / f"dt={ds}"
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
