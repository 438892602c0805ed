"""Landing the clickstream from Kinesis (include/clickstream_kinesis.py) under moto's Kinesis:
each record lands once, in the folder of its event's UTC date (the run's date for what carries
none), across reruns, a landing stopped between its files and its checkpoint, and a reshard."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from include.clickstream_kinesis import (
    LandingError,
    ShardState,
    checkpoint_uri,
    event_date,
    land_stream,
)
from include.lake_files import lake_io

STREAM = "user-clickstream"
DS = "2024-06-28"


def _event(event_id: str, ts: str, page: str = "checkout", user: str = "u1") -> bytes:
    return json.dumps({"event_id": event_id, "user_id": user, "page": page, "event_ts": ts}).encode()


@pytest.fixture
def kinesis():
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName=STREAM, ShardCount=2)
        yield client


def _put(kinesis, records: list[bytes]) -> None:
    # partition keys spread the records over both shards
    for i, data in enumerate(records):
        kinesis.put_record(StreamName=STREAM, Data=data, PartitionKey=f"user-{i}")


def _landed(lake: Path) -> dict[str, Counter]:
    """{date folder: Counter of lines} of everything landed, whatever the file names."""
    out: dict[str, Counter] = {}
    for path in sorted((lake / "landing" / "clickstream").glob("dt=*/*.json")):
        out.setdefault(path.parent.name.removeprefix("dt="), Counter()).update(path.read_text().splitlines())
    return out


def _land(kinesis, lake: Path, ds: str = DS, write=None) -> dict:
    read, lake_write = lake_io(None, None)
    return land_stream(kinesis, read, write or lake_write, stream=STREAM, lake=lake.as_uri(), ds=ds)


DAYS = [
    _event("E1", "2024-06-27T23:59:30.000Z"),  # the day before
    _event("E2", "2024-06-28T10:00:00.000Z"),
    _event("E3", "2024-06-28T01:30:00.000+02:00"),  # 23:30 UTC the day before
    _event("E4", "2024-06-29T00:00:10.000Z", page="home"),  # the next day, already arrived
    _event("E2", "2024-06-28T10:00:00.000Z"),  # a producer's retry: the same event again
    b'{"event_id":"E5","user_id":"u1","page":"ho',  # cut short: not JSON
    _event("E6", "2024-06-28T12:00:00.000"),  # no zone: ingest rejects it
    _event("E7", "2024-06-28T09:00:00.000Z"),  # late: hours behind E2 in the stream
]


def test_each_record_lands_in_its_events_utc_date_and_undated_ones_in_the_runs_date(kinesis, tmp_path):
    _put(kinesis, DAYS)
    got = _land(kinesis, tmp_path)
    lines = [d.decode() for d in DAYS]
    assert _landed(tmp_path) == {
        "2024-06-27": Counter([lines[0], lines[2]]),
        "2024-06-28": Counter([lines[1], lines[4], lines[5], lines[6], lines[7]]),  # the copy is ingest's
        "2024-06-29": Counter([lines[3]]),
    }
    assert got["records"] == len(DAYS)
    assert got["by_date"] == {"2024-06-27": 2, "2024-06-28": 5, "2024-06-29": 1}
    assert got["shards"] == 2


def test_a_rerun_lands_nothing_again_and_a_later_run_only_what_arrived_since(kinesis, tmp_path):
    _put(kinesis, DAYS)
    _land(kinesis, tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.rglob("landing/**/*.json")}
    assert _land(kinesis, tmp_path)["records"] == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("landing/**/*.json")} == files
    later = [_event("E8", "2024-06-28T23:59:00.000Z"), _event("E9", "2024-06-29T08:00:00.000Z")]
    _put(kinesis, later)
    assert _land(kinesis, tmp_path, ds="2024-06-29")["by_date"] == {"2024-06-28": 1, "2024-06-29": 1}
    everything = sum(_landed(tmp_path).values(), Counter())
    assert everything == Counter(d.decode() for d in [*DAYS, *later])  # each record once


def test_a_landing_stopped_before_its_checkpoint_is_redone_under_the_same_names(kinesis, tmp_path):
    _put(kinesis, DAYS)
    read, write = lake_io(None, None)
    stop_at = checkpoint_uri(tmp_path.as_uri(), STREAM, "shardId-000000000001")
    commits = Counter()

    def crashing(uri: str, text: str) -> None:
        commits[uri] += 1
        if uri == stop_at and commits[uri] == 2:  # the range, its files, then this commit: lost
            raise OSError("worker lost")
        write(uri, text)

    with pytest.raises(OSError, match="worker lost"):
        _land(kinesis, tmp_path, write=crashing)
    assert ShardState.parse(read(stop_at)).pending is not None
    first_try = {p.name: p.read_bytes() for p in tmp_path.rglob("landing/**/*.json")}
    later = [_event("E8", "2024-06-28T23:59:00.000Z")]
    _put(kinesis, later)  # arrives before the retry: not part of the interrupted range
    _land(kinesis, tmp_path)
    retried = {p.name: p.read_bytes() for p in tmp_path.rglob("landing/**/*.json")}
    assert {name: retried[name] for name in first_try} == first_try  # same names, same bytes
    assert ShardState.parse(read(stop_at)).pending is None
    _land(kinesis, tmp_path)  # the next run takes what arrived after the range
    assert sum(_landed(tmp_path).values(), Counter()) == Counter(d.decode() for d in [*DAYS, *later])


def test_a_checkpointed_range_gone_from_the_stream_is_a_clear_error(kinesis, tmp_path):
    _put(kinesis, DAYS[:2])
    _, write = lake_io(None, None)
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=STREAM)["Shards"]]
    for shard in shards:  # a range beyond anything the stream holds, begun and never committed
        write(checkpoint_uri(tmp_path.as_uri(), STREAM, shard), ShardState(pending="9" * 56).text())
    with pytest.raises(LandingError, match="no longer in the stream"):
        _land(kinesis, tmp_path)


def test_after_a_reshard_the_closed_parents_are_finished_and_the_children_read(kinesis, tmp_path):
    _put(kinesis, DAYS[:4])
    _land(kinesis, tmp_path)
    kinesis.update_shard_count(StreamName=STREAM, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    later = [_event(f"E1{i}", "2024-06-28T20:00:00.000Z", user=f"u{i}") for i in range(6)]
    _put(kinesis, later)
    _land(kinesis, tmp_path)
    assert _land(kinesis, tmp_path)["records"] == 0
    assert sum(_landed(tmp_path).values(), Counter()) == Counter(d.decode() for d in [*DAYS[:4], *later])


@pytest.mark.parametrize(
    ("data", "day"),
    [
        (_event("a", "2024-06-28T00:00:00Z"), "2024-06-28"),
        (_event("a", "2024-06-28T23:59:59.999-00:30"), "2024-06-29"),
        (_event("a", "2024-06-28T12:00:00"), None),  # no zone
        (_event("a", "yesterday"), None),
        (b'{"event_id":"a"}', None),
        (b"[1, 2]", None),
        (b"\xff\xfe not utf-8", None),
    ],
)
def test_event_date_is_the_utc_date_ingest_would_give_or_none(data, day):
    assert event_date(data)[0] == day


def test_a_record_always_lands_as_one_line():
    pretty = json.dumps({"event_id": "a", "event_ts": "2024-06-28T00:00:00Z"}, indent=2).encode()
    day, line = event_date(pretty)
    assert (day, json.loads(line)) == ("2024-06-28", json.loads(pretty))
    assert "\n" not in line
    assert event_date(b"not\njson") == (None, "not json")
