"""clickstream: the streamed counts of ds equal a pandas recomputation over the distinct checkout
events of that day's landing files alone, however many files and runs (and crashes) they came in."""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from spark_jobs import table_reads, table_writes, tables
from spark_jobs.clickstream import OUTPUT, run
from tests.harness.lake_files import lake_dir, write_landing_jsonl
from tests.harness.lake_tables import load, read_table, snapshot_ids

D0, D1, D2, D3 = dt.date(2024, 5, 31), dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)
FMT = "%Y-%m-%d %H:%M:%S"
PAGES = ["checkout", "checkout", "checkout", "home", "cart"]
INVALID = [
    "{not json",
    '{"event_id": null, "user_id": "u1", "page": "checkout", "event_ts": "2024-06-01T23:00:00Z"}',
    '{"event_id": "bad-ts", "user_id": "u1", "page": "checkout", "event_ts": "yesterday"}',
]
PLUS_2H = dt.timezone(dt.timedelta(hours=2))


def _at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), dt.UTC)


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


def _land(lake: str, day: dt.date, name: str, events: list[dict], extra_lines=()) -> None:
    """A file of landing/clickstream/dt=day, whatever the dates of its events."""
    write_landing_jsonl(lake, "clickstream", str(day), [*events, *extra_lines], name=name)


def _oracle(events: list[dict], ds: dt.date) -> set[tuple]:
    """Batch recomputation in pandas: distinct checkout events whose UTC date is ds, per user and minute."""
    df = pd.DataFrame(events)
    df["ts"] = pd.to_datetime(df["event_ts"], utc=True, format="ISO8601")
    df = df[(df["page"] == "checkout") & (df["ts"].dt.date == ds)].drop_duplicates("event_id")
    counts = df.groupby(["user_id", df["ts"].dt.floor("min").rename("start")]).size()
    return {
        (user, start.strftime(FMT), (start + pd.Timedelta(minutes=1)).strftime(FMT), int(n))
        for (user, start), n in counts.items()
    }


def _output(lake: str, ds: dt.date) -> set[tuple]:
    """The rows of ds, read through pyiceberg: one per (user_id, window_start)."""
    df = read_table(lake, "curated", OUTPUT, ds)
    rows = {
        (r.user_id, r.window_start.strftime(FMT), r.window_end.strftime(FMT), int(r.checkout_count))
        for r in df.itertuples()
    }
    assert len(rows) == len(df) == len({(r[0], r[1]) for r in rows}), "one row per (user_id, window_start)"
    return rows


def _run(spark, lake: str, ds: dt.date, checkpoint: str | None = None) -> dict:
    """One run of the job, as a task would start it: a session of its own bound to the lake."""
    return run(tables.bind(spark, lake), argparse.Namespace(ds=ds, lake=lake, checkpoint=checkpoint))


def _current_snapshot(lake: str) -> int:
    return load(lake, "curated", OUTPUT).current_snapshot().snapshot_id


# ---- several days: each one counted from its own files --------------------------------------
def _day_files(rng) -> dict[dt.date, dict]:
    """What lands for D1 and D2: events by file, malformed lines (in the first file) and, among
    the events, those dated another day than their dt (which must not count for either day)."""
    d1 = _random_events(rng, "a", 40, _at(D1, 0), _at(D1, 23, 59, 59))
    d1.append(_event("offset", "u1", "checkout", _at(D1, 23, 30), zone=PLUS_2H))  # 2024-06-02T01:30+02:00
    d1 += [d1[i] for i in (0, 3, 7)]  # duplicates in the same file
    d1_more = [*_random_events(rng, "b", 15, _at(D1, 12), _at(D1, 13)), d1[1], d1[5]]  # and across files
    d1_other_days = [
        _event("next-day", "u1", "checkout", _at(D2, 0, 0, 5)),
        _event("next-day-home", "u2", "home", _at(D2, 9)),
        _event("local-d1", "u2", "checkout", _at(D0, 23), zone=PLUS_2H),  # 2024-06-01T01:00+02:00: D0 in UTC
    ]
    d2 = _random_events(rng, "c", 30, _at(D2, 0), _at(D2, 23, 59, 59))
    d2_other_days = [_event("late-d1", "u1", "checkout", _at(D1, 23, 59, 30))]  # a D1 event delivered with D2
    return {
        D1: {
            "files": {"part-0000.json": d1 + d1_other_days, "part-0001.json": d1_more},
            "invalid": INVALID,
            "other_days": d1_other_days,
        },
        D2: {"files": {"part-0000.json": d2 + d2_other_days}, "invalid": [], "other_days": d2_other_days},
    }


def _events_of(day: dict) -> list[dict]:
    return [e for events in day["files"].values() for e in events]


@pytest.fixture(scope="module")
def days_lake(spark, tmp_path_factory):
    """D1 and D2 land before any run; then D1, D2, D1 again from a new checkpoint, and D3
    (nothing landed) run, in that order. What each run returned and left is kept."""
    base = tmp_path_factory.mktemp("clickstream_days")
    lake = (base / "lake").as_uri()
    landed = _day_files(np.random.default_rng(5))
    for day, what in landed.items():
        for i, (name, events) in enumerate(what["files"].items()):
            _land(lake, day, name, events, extra_lines=what["invalid"] if i == 0 else ())
    seen = {}
    seen["d1"] = (_run(spark, lake, D1), _output(lake, D1), _current_snapshot(lake))
    seen["d2"] = (_run(spark, lake, D2), _output(lake, D2), _output(lake, D1))
    seen["d1-recount"] = (
        _run(spark, lake, D1, checkpoint=(base / "new-checkpoint").as_uri()),
        _output(lake, D1),
    )
    seen["d3"] = (_run(spark, lake, D3), _current_snapshot(lake))
    return lake, landed, seen


def test_counts_equal_a_batch_recomputation_of_that_days_files(days_lake):
    _, files, seen = days_lake
    metrics, output, snapshot = seen["d1"]

    assert output == _oracle(_events_of(files[D1]), D1)
    assert any(
        user == "u1" and start == "2024-06-01 23:30:00" for user, start, _, _ in output
    )  # the +02:00 one
    assert metrics["rows_in"]["clickstream"] == len(_events_of(files[D1])) + len(INVALID)
    assert metrics["rows_out"][OUTPUT] == len(output)  # one micro-batch: each window updated once
    assert metrics["tables"] == {f"curated.{OUTPUT}": {"snapshot_id": snapshot, "rows": len(output)}}


def test_events_dated_another_day_in_a_file_of_ds_are_dropped_and_counted(days_lake):
    lake, files, seen = days_lake
    metrics, output, _ = seen["d1"]

    assert metrics["rows_dropped_invalid"] == len(INVALID) + len(files[D1]["other_days"])
    assert {start[:10] for _, start, _, _ in output} == {str(D1)}
    # nor do they count on their own day: D2's rows come from D2's files only ("next-day", a
    # checkout at 2024-06-02T00:00:05 landed with D1, is not among them)
    assert _output(lake, D2) == _oracle(_events_of(files[D2]), D2)


def test_a_later_days_files_do_not_change_the_output_of_ds(days_lake):
    lake, files, seen = days_lake
    _, d1_output, _ = seen["d1"]
    d2_metrics, d2_output, d1_after_d2 = seen["d2"]
    recount_metrics, d1_recounted = seen["d1-recount"]

    # D2 had landed before D1 ran: D1's output is D1's files alone, before and after D2's run
    assert d1_output == _oracle(_events_of(files[D1]), D1)
    assert d1_after_d2 == d1_output
    assert d2_output == _oracle(_events_of(files[D2]), D2)
    assert d2_metrics["rows_dropped_invalid"] == len(files[D2]["other_days"])  # the D1 event landed with D2
    # recounting D1 from scratch (a new checkpoint) with D2 landed gives the same rows again
    assert recount_metrics["rows_in"]["clickstream"] > 0
    assert d1_recounted == d1_output
    assert _output(lake, D1) == d1_output


def test_a_day_without_traffic_is_written_with_no_rows(spark, days_lake):
    lake, files, seen = days_lake
    metrics, snapshot = seen["d3"]

    assert _output(lake, D3) == set()
    assert table_reads.written_dates(tables.bind(spark, lake), "curated", OUTPUT) == {D1, D2, D3}
    assert load(lake, "curated", OUTPUT).snapshot_by_id(snapshot).summary["pipeline.dates"] == str(D3)
    assert (metrics["rows_in"]["clickstream"], metrics["rows_out"][OUTPUT]) == (0, 0)
    assert metrics["tables"][f"curated.{OUTPUT}"]["snapshot_id"] == snapshot
    # the other days are untouched
    assert _output(lake, D1) == _oracle(_events_of(files[D1]), D1)
    assert _output(lake, D2) == _oracle(_events_of(files[D2]), D2)


# ---- one day, files arriving between runs ----------------------------------------------------
NOON = _at(D1, 12)


@pytest.fixture(scope="module")
def late_lake(spark, tmp_path_factory):
    """D1 runs on its first file (latest checkout at noon: the watermark becomes 11:00), again once
    a second file of D1 has landed, and a third time with nothing new."""
    lake = (tmp_path_factory.mktemp("clickstream_late") / "lake").as_uri()
    rng = np.random.default_rng(7)
    first = [
        *_random_events(rng, "a", 30, _at(D1, 10), _at(D1, 11, 59, 59)),
        _event("e1", "u9", "checkout", NOON),
    ]
    copies = [e for e in first if e["page"] == "checkout" and e["event_ts"] >= "2024-06-01T11:05"]
    too_old = _event("e3", "u9", "checkout", NOON - dt.timedelta(hours=2))  # beyond the hour: dropped
    second = [
        *_random_events(rng, "b", 20, _at(D1, 11, 1), _at(D1, 12, 30)),  # late, but within the hour
        *copies,  # already counted by the first run
        _event("e2", "u9", "checkout", NOON - dt.timedelta(minutes=30)),  # within the hour: counted
        _event(
            "e1-again", "u9", "checkout", NOON + dt.timedelta(seconds=20)
        ),  # a window the first run counted
        too_old,
    ]
    _land(lake, D1, "part-0000.json", first)
    runs = [(_run(spark, lake, D1), _output(lake, D1), snapshot_ids(lake, "curated", OUTPUT))]
    _land(lake, D1, "part-0001.json", second)
    for _ in range(2):
        runs.append((_run(spark, lake, D1), _output(lake, D1), snapshot_ids(lake, "curated", OUTPUT)))
    return first, second, copies, too_old, runs


def test_late_files_of_the_same_day_are_counted_exactly_once(late_lake):
    first, second, copies, too_old, runs = late_lake
    (m1, out1, _), (m2, out2, snapshots2), (m3, out3, snapshots3) = runs

    assert copies  # events of the first file delivered again in the second
    assert out1 == _oracle(first, D1)
    assert m1["rows_in"]["clickstream"] == len(first)
    # The second run reads only the new file (the day's checkpoint has seen the first), and the
    # counts are those of both files' distinct events, whatever window they fell in.
    assert m2["rows_in"]["clickstream"] == len(second)
    assert out2 == _oracle([*first, *(e for e in second if e is not too_old)], D1)
    assert out2 != out1
    # Nothing new: nothing read, nothing committed.
    assert m3["rows_in"]["clickstream"] == 0
    assert (out3, snapshots3) == (out2, snapshots2)


def test_events_older_than_the_watermark_are_dropped_and_counted(late_lake):
    *_, runs = late_lake
    (m1, _, _), (m2, out2, _), _ = runs

    assert (m1["rows_dropped_late"], m2["rows_dropped_late"]) == (0, 1)
    assert {row for row in out2 if row[0] == "u9"} == {
        ("u9", "2024-06-01 11:30:00", "2024-06-01 11:31:00", 1),
        ("u9", "2024-06-01 12:00:00", "2024-06-01 12:01:00", 2),  # e1, then e1-again
    }


# ---- crashes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("crash", ["inside-the-write", "after-the-commit"])
def test_a_crash_in_the_middle_of_a_batch_then_a_rerun_does_not_double_count(spark, lake, monkeypatch, crash):
    events = [
        _event("e1", "u1", "checkout", _at(D1, 23, 59, 10)),
        _event("e2", "u1", "checkout", _at(D1, 23, 59, 50)),
        _event("e3", "u2", "checkout", _at(D1, 0, 0, 5)),
        _event("e4", "u2", "home", _at(D1, 0, 0, 6)),
    ]
    _land(lake, D1, "part-0000.json", [*events, events[0]])
    real = table_writes.replace_date

    def crashing(df, *args, **kwargs):
        if crash == "inside-the-write":  # the batch's write dies in its Spark tasks, before the commit
            failing = F.when(F.spark_partition_id() >= 0, F.raise_error(F.lit("injected: the write died")))
            return real(df.withColumn("user_id", failing.otherwise(F.col("user_id"))), *args, **kwargs)
        real(df, *args, **kwargs)  # the batch's commit lands, then the driver dies before Spark records it
        raise RuntimeError("injected: the driver died after the commit")

    monkeypatch.setattr(table_writes, "replace_date", crashing)
    with pytest.raises(Exception, match="injected"):
        _run(spark, lake, D1)
    monkeypatch.setattr(table_writes, "replace_date", real)
    expected = {
        ("u1", "2024-06-01 23:59:00", "2024-06-02 00:00:00", 2),
        ("u2", "2024-06-01 00:00:00", "2024-06-01 00:01:00", 1),
    }
    assert expected == _oracle(events, D1)
    assert _output(lake, D1) == (set() if crash == "inside-the-write" else expected)
    # Spark never recorded the batch as done: the next run processes it again.
    checkpoint = lake_dir(lake) / "_checkpoints" / OUTPUT / f"dt={D1}"
    assert (checkpoint / "offsets" / "0").exists()
    assert not (checkpoint / "commits" / "0").exists()
    before = snapshot_ids(lake, "curated", OUTPUT)

    metrics = _run(spark, lake, D1)

    assert _output(lake, D1) == expected
    assert len(snapshot_ids(lake, "curated", OUTPUT)) == len(before) + 1  # the batch, committed (again)
    assert metrics["rows_out"][OUTPUT] == len(expected)
    assert (checkpoint / "commits" / "0").exists()
