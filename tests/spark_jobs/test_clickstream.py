"""clickstream: the streamed counts equal a pandas recomputation over all distinct landed events,
however many files and runs (and crashes) they arrived in."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from spark_jobs import clickstream
from spark_jobs.clickstream import OUTPUT, run
from spark_jobs.common import dataset_path, partition_path
from spark_jobs.schemas import CURATED
from tests.conftest import lake_dir
from tests.helpers import write_landing_jsonl

D1, D2, D3 = dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)
START = dt.datetime(2024, 6, 1, 22, 0, tzinfo=dt.UTC)
# The latest event of the first run: the watermark is then one hour earlier, 2024-06-01T23:40Z.
LATEST = dt.datetime(2024, 6, 2, 0, 40, tzinfo=dt.UTC)
WATERMARK = LATEST - dt.timedelta(hours=1)
PAGES = ["checkout", "checkout", "checkout", "home", "cart"]
INVALID = [
    "{not json",
    '{"event_id": null, "user_id": "u1", "page": "checkout", "event_ts": "2024-06-01T23:00:00Z"}',
    '{"event_id": "bad-ts", "user_id": "u1", "page": "checkout", "event_ts": "yesterday"}',
]


def _event(event_id: str, user: str, page: str, ts: dt.datetime, zone: dt.tzinfo | None = None) -> dict:
    """An event as upstream writes it: ISO-8601 with "Z", or with the offset of `zone`."""
    stamp = ts.astimezone(zone).isoformat() if zone else ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"event_id": event_id, "user_id": user, "page": page, "event_ts": stamp}


def _random_events(rng, prefix: str, n: int, first: dt.datetime, last: dt.datetime) -> list[dict]:
    span = int((last - first).total_seconds())
    return [
        _event(
            f"{prefix}{i}",
            f"u{int(rng.integers(1, 4))}",
            PAGES[int(rng.integers(len(PAGES)))],
            first + dt.timedelta(seconds=int(rng.integers(span + 1))),
        )
        for i in range(n)
    ]


def _land(lake: str, events: list[dict], name: str, extra_lines=()) -> None:
    """Each event goes to landing dt = UTC date of its event_ts (the contract)."""
    by_day: dict[str, list] = {}
    for e in events:
        day = dt.datetime.fromisoformat(e["event_ts"]).astimezone(dt.UTC).date()
        by_day.setdefault(day.isoformat(), []).append(e)
    if extra_lines:
        by_day.setdefault(D1.isoformat(), []).extend(extra_lines)
    for day, records in by_day.items():
        write_landing_jsonl(lake, "clickstream", day, records, name=name)


def _oracle(events: list[dict]) -> set[tuple]:
    """Batch recomputation in pandas over every distinct landed checkout event."""
    df = pd.DataFrame(events)
    df["ts"] = pd.to_datetime(df["event_ts"], utc=True, format="ISO8601")
    df = df[df["page"] == "checkout"].drop_duplicates("event_id")
    df["window_start"] = df["ts"].dt.floor("min")
    counts = df.groupby(["user_id", "window_start"]).size()
    fmt = "%Y-%m-%d %H:%M:%S"
    return {
        (user, start.strftime(fmt), (start + pd.Timedelta(minutes=1)).strftime(fmt), int(n), start.date())
        for (user, start), n in counts.items()
    }


def _output(spark, lake: str) -> set[tuple]:
    fmt = "yyyy-MM-dd HH:mm:ss"
    df = spark.read.parquet(dataset_path(lake, "curated", OUTPUT))
    rows = df.select(
        "user_id",
        F.date_format("window_start", fmt),
        F.date_format("window_end", fmt),
        "checkout_count",
        "dt",
    ).collect()
    assert len(rows) == len({(r[0], r[1]) for r in rows}), "one row per (user_id, window_start)"
    return {tuple(r) for r in rows}


def _files(lake: str) -> list[str]:
    root = lake_dir(lake) / "curated" / OUTPUT
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def _run(spark, lake: str, ds: dt.date, checkpoint: str | None = None) -> dict:
    return run(spark, argparse.Namespace(ds=ds, lake=lake, checkpoint=checkpoint))


def test_counts_equal_a_batch_recomputation_across_runs_late_files_and_reruns(spark, lake, tmp_path: Path):
    rng = np.random.default_rng(5)
    checkpoint = (tmp_path / "ckpt").as_uri()
    first = _random_events(rng, "a", 40, START, LATEST - dt.timedelta(minutes=1))
    first.append(_event("latest", "u1", "checkout", LATEST, zone=dt.timezone(dt.timedelta(hours=2))))
    first += [first[i] for i in (0, 3, 7)]  # duplicates in the same run
    _land(lake, first, "part-0000.json", extra_lines=INVALID)

    m1 = _run(spark, lake, D1, checkpoint)

    assert _output(spark, lake) == _oracle(first)
    assert (m1["rows_in"]["clickstream"], m1["rows_dropped_invalid"]) == (len(first) + len(INVALID), 3)

    # A second delivery: events late but within the watermark (some in D1's windows, so D1's
    # partition is updated), and copies of events the first run already counted.
    late = _random_events(rng, "b", 20, WATERMARK + dt.timedelta(minutes=1), LATEST)
    late += [first[i] for i in range(0, 40, 4)] + [late[0]]
    _land(lake, late, "part-0001.json")

    m2 = _run(spark, lake, D2, checkpoint)

    assert _output(spark, lake) == _oracle(first + late)
    assert m2["rows_in"]["clickstream"] == len(late)
    assert {str(D1), str(D2)} <= set(m2["partitions_written"])

    # Rerunning the same ds with nothing new: the partitions are not even rewritten.
    files = _files(lake)
    m3 = _run(spark, lake, D2, checkpoint)
    assert _files(lake) == files
    assert _output(spark, lake) == _oracle(first + late)
    assert m3["rows_in"]["clickstream"] == 0

    # A day without traffic: an empty partition for it, the others untouched.
    m4 = _run(spark, lake, D3, checkpoint)
    day3 = spark.read.parquet(partition_path(lake, "curated", OUTPUT, D3))
    assert day3.count() == 0
    assert day3.schema == CURATED[OUTPUT]
    assert m4["partitions_written"] == [str(D3)]
    assert [f for f in _files(lake) if not f.startswith(f"dt={D3}")] == files


def test_a_crash_in_the_middle_of_a_batch_then_a_rerun_does_not_double_count(spark, lake, monkeypatch):
    events = [
        _event("e1", "u1", "checkout", dt.datetime(2024, 6, 1, 23, 59, 10, tzinfo=dt.UTC)),
        _event("e2", "u1", "checkout", dt.datetime(2024, 6, 1, 23, 59, 50, tzinfo=dt.UTC)),
        _event("e3", "u2", "checkout", dt.datetime(2024, 6, 2, 0, 0, 5, tzinfo=dt.UTC)),
        _event("e4", "u2", "home", dt.datetime(2024, 6, 2, 0, 0, 6, tzinfo=dt.UTC)),
    ]
    _land(lake, [*events, events[0]], "part-0000.json")
    real_write = clickstream.write_partition
    calls = []

    def crash_on_second_partition(df, *args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:
            raise RuntimeError("injected crash between two partitions")
        return real_write(df, *args, **kwargs)

    monkeypatch.setattr(clickstream, "write_partition", crash_on_second_partition)
    with pytest.raises(Exception, match="injected crash"):
        _run(spark, lake, D2)
    monkeypatch.setattr(clickstream, "write_partition", real_write)
    # The first partition was written before the crash, the batch was never committed.
    assert _output(spark, lake) == {("u1", "2024-06-01 23:59:00", "2024-06-02 00:00:00", 2, D1)}

    _run(spark, lake, D2)

    assert _output(spark, lake) == _oracle(events)
    assert _output(spark, lake) == {
        ("u1", "2024-06-01 23:59:00", "2024-06-02 00:00:00", 2, D1),
        ("u2", "2024-06-02 00:00:00", "2024-06-02 00:01:00", 1, D2),
    }


def test_events_older_than_the_watermark_are_dropped_and_counted(spark, lake):
    noon = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    _land(lake, [_event("e1", "u1", "checkout", noon)], "part-0000.json")
    _run(spark, lake, D1)
    late = [
        _event("e2", "u1", "checkout", noon - dt.timedelta(minutes=30)),  # within the hour: counted
        _event("e3", "u1", "checkout", noon - dt.timedelta(hours=2)),  # beyond it: dropped
    ]
    _land(lake, late, "part-0001.json")

    metrics = _run(spark, lake, D1)

    assert metrics["rows_dropped_late"] == 1
    assert _output(spark, lake) == {
        ("u1", "2024-06-01 11:30:00", "2024-06-01 11:31:00", 1, D1),
        ("u1", "2024-06-01 12:00:00", "2024-06-01 12:01:00", 1, D1),
    }
