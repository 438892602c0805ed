"""The clickstream from a Kinesis data stream: the nightly's `land_clickstream` task lands the
stream's new records as JSON lines files in `landing/clickstream/dt=<event date>/`, where the
`ingest_clickstream` and `clickstream` steps read them as they read any upstream's files.

Why a task that reads the shards with boto3 (and not Firehose or the Spark Kinesis connector):
- the contract stays the files' contract (docs/DATA_CONTRACT.md): day D's output is a function
  of `landing/clickstream/dt=D` alone, so landing by *event* date keeps D's output a function of
  D's events, and everything downstream (quarantine, dedup by event_id, the stream's own
  checkpoint and watermark, rerun and repair) is the code that is already tested;
- exactly once by construction: a landed file is named after its shard and the sequence range
  it holds, and a per-shard checkpoint in the lake moves only after the files are written, with
  the range written first (write-ahead), so a retried landing rewrites the same files with the
  same bytes and never lands a record under two names. Firehose's dynamic partitioning names its
  objects itself and delivers at least once; the Spark connector needs the cluster up before
  the records can be landed, and moto cannot play it;
- the same task runs on both targets (the lake by URI) and in tests against moto's Kinesis.
One landing at a time: the nightly runs one run at a time (max_active_runs=1) and is the only
DAG with the task.

Where a record goes: a JSON object whose `event_ts` has a time zone to the folder of its UTC date;
anything else (not JSON, no or zone-less `event_ts`) to the folder of the run's date, where
ingest quarantines it with its reason. No wall clock: a run reads each shard up to its tip
(`MillisBehindLatest` 0) or its end (a closed shard), and the run's date only places the
records that carry none.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DATASET = "clickstream"
CLICKSTREAM_INGEST = f"ingest_{DATASET}"  # the step the landing runs before (include/pipeline.py)
CHECKPOINTS = "_checkpoints/clickstream_kinesis"
STREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # Kinesis' rule for a stream name
GET_RECORDS_LIMIT = 10_000  # Kinesis' most per GetRecords call

Read = Callable[[str], "str | None"]
Write = Callable[[str, str], None]


class LandingError(RuntimeError):
    """The stream cannot be landed exactly once (a checkpointed range is gone from the stream)."""


@dataclass(frozen=True)
class ShardState:
    """A shard's checkpoint: the last sequence number landed, whether the shard is done (closed and
    read to its end) and the range being landed (written before its files, cleared after)."""

    landed_through: str | None = None
    closed: bool = False
    pending: str | None = None  # the last sequence number of the range being landed

    @classmethod
    def parse(cls, text: str | None) -> ShardState:
        if text is None:
            return cls()
        doc = json.loads(text)
        return cls(doc.get("landed_through"), bool(doc.get("closed")), doc.get("pending"))

    def text(self) -> str:
        return json.dumps(
            {"landed_through": self.landed_through, "closed": self.closed, "pending": self.pending},
            sort_keys=True,
        )


def checkpoint_uri(lake: str, stream: str, shard_id: str) -> str:
    return f"{lake}/{CHECKPOINTS}/{stream}/{shard_id}.json"


def landed_uri(lake: str, day: str, shard_id: str, first: str, last: str) -> str:
    """One file per shard, date and landed range: the same records always get the same name."""
    return f"{lake}/landing/{DATASET}/dt={day}/kinesis-{shard_id}-{first}-{last}.json"


# ---- one record ----------------------------------------------------------------------------
def event_date(data: bytes) -> tuple[str | None, str]:
    """(the UTC date of the event, the record as one line), or (None, the line) when the record
    carries no date ingest would accept: not a JSON object, no `event_ts`, or one without a zone."""
    text = data.decode("utf-8", errors="replace")
    one_line = text.replace("\r", " ").replace("\n", " ")
    try:
        doc = json.loads(text)
    except ValueError:
        return None, one_line
    if not isinstance(doc, dict):
        return None, one_line
    line = one_line if one_line == text else json.dumps(doc, separators=(",", ":"))
    value = doc.get("event_ts")
    if not isinstance(value, str):
        return None, line
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        return None, line
    if ts.tzinfo is None:
        return None, line
    return ts.astimezone(dt.UTC).date().isoformat(), line


# ---- one shard -----------------------------------------------------------------------------
def _read_shard(
    kinesis: Any, arn: str, shard_id: str, after: str | None, through: str | None
) -> tuple[list[dict], bool]:
    """The shard's records after `after` (from its start without), up to `through` when given,
    else up to its tip; and whether the shard is closed and was read to its end."""
    start: dict[str, str] = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        if after
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    iterator = kinesis.get_shard_iterator(StreamARN=arn, ShardId=shard_id, **start)["ShardIterator"]
    records: list[dict] = []
    while iterator:
        got = kinesis.get_records(StreamARN=arn, ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        batch = got["Records"]
        if through is not None:
            batch = [r for r in batch if int(r["SequenceNumber"]) <= int(through)]
        records += batch
        iterator = got.get("NextShardIterator")
        if through is not None:
            if records and int(records[-1]["SequenceNumber"]) >= int(through):
                return records, False
            if (not got["Records"] and got.get("MillisBehindLatest", 0) == 0) or not iterator:
                raise LandingError(
                    f"shard {shard_id}: the records up to {through} that a landing began are no longer "
                    "in the stream (its retention passed): delete the shard's checkpoint "
                    f"({CHECKPOINTS}/.../{shard_id}.json) to land what the stream still holds"
                )
            continue
        if got.get("MillisBehindLatest", 0) == 0 and iterator:
            break  # at the tip: what arrives later is the next run's
    return records, iterator is None


def land_shard(
    kinesis: Any, read: Read, write: Write, *, arn: str, stream: str, shard_id: str, lake: str, ds: str
) -> dict[str, int]:
    """Land a shard's new records; {date: records landed there} (the run's date for undated ones)."""
    uri = checkpoint_uri(lake, stream, shard_id)
    state = ShardState.parse(read(uri))
    if state.closed:
        return {}
    # a landing that stopped between its files and its checkpoint is done again, the same range
    records, closed = _read_shard(kinesis, arn, shard_id, state.landed_through, state.pending)
    if not records:
        if closed:
            write(uri, ShardState(state.landed_through, closed=True).text())
        return {}
    first, last = records[0]["SequenceNumber"], records[-1]["SequenceNumber"]
    if state.pending is None:
        write(uri, ShardState(state.landed_through, pending=last).text())  # the range, before its files
    lines: dict[str, list[str]] = {}
    for record in records:
        day, line = event_date(record["Data"])
        lines.setdefault(day or ds, []).append(line)
    for day, day_lines in sorted(lines.items()):
        write(landed_uri(lake, day, shard_id, first, last), "\n".join(day_lines) + "\n")
    write(uri, ShardState(last, closed=closed).text())  # the files are written: move on
    return {day: len(day_lines) for day, day_lines in lines.items()}


def _shards(kinesis: Any, arn: str) -> list[str]:
    shards: list[str] = []
    got = kinesis.list_shards(StreamARN=arn)
    while True:
        shards += [s["ShardId"] for s in got["Shards"]]
        if not got.get("NextToken"):
            return sorted(shards)
        got = kinesis.list_shards(NextToken=got["NextToken"])


def land_stream(kinesis: Any, read: Read, write: Write, *, stream: str, lake: str, ds: str) -> dict[str, Any]:
    """Land every shard's new records; what was landed, by date, for the task's log and XCom.

    Parents before children (shard ids grow with resharding), each from its own checkpoint."""
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    by_date: dict[str, int] = {}
    shards = _shards(kinesis, arn)
    for shard_id in shards:
        landed = land_shard(kinesis, read, write, arn=arn, stream=stream, shard_id=shard_id, lake=lake, ds=ds)
        for day, n in landed.items():
            by_date[day] = by_date.get(day, 0) + n
        if landed:
            log.info("%s %s: landed %s", stream, shard_id, dict(sorted(landed.items())))
    return {"stream": stream, "shards": len(shards), "records": sum(by_date.values()), "by_date": by_date}


# ---- the task ------------------------------------------------------------------------------
def land_clickstream_task(settings: Any, run_plan: Any):
    """`land_clickstream`: the stream's new records into the lake's landing zone, before the
    clickstream's ingest (include/wiring.py wires it when
    PIPELINE_CLICKSTREAM_KINESIS_STREAM is set). Retries are safe: the range being landed is
    in the shard's checkpoint before its files are written."""
    from airflow.sdk import task

    @task(task_id="land_clickstream")
    def land_clickstream(run_plan: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from include.lake_files import lake_io
        from include.run_plan import RunPlan
        from plugins.emr_client import AWS_RETRY_CONFIG

        run_ds = RunPlan.from_xcom(run_plan).ds  # the run's date (the plan's)

        hook = AwsBaseHook(
            aws_conn_id=settings.aws_conn_id,
            client_type="kinesis",
            region_name=settings.region,
            config=_config(AWS_RETRY_CONFIG),
        )
        read, write = lake_io(settings.aws_conn_id, settings.region)
        landed = land_stream(
            hook.get_conn(), read, write, stream=settings.clickstream_stream, lake=settings.lake, ds=run_ds
        )
        log.info(
            "landed %d records of %s (%d shards) by event date: %s",
            landed["records"],
            landed["stream"],
            landed["shards"],
            dict(sorted(landed["by_date"].items())) or "nothing new",
        )
        return landed

    return land_clickstream(run_plan)


def _config(retry: Mapping[str, Any]) -> Any:
    from botocore.config import Config

    return Config(**retry)


def stream_problem(name: str) -> str | None:
    """Why `name` cannot be a Kinesis stream name, or None."""
    if not STREAM_NAME.match(name):
        return "letters, digits and _ . - only, at most 128 (a stream name, not its ARN)"
    return None
