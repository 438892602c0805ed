"""The clickstream from a Kinesis stream on the emr target, end to end under moto (Kinesis, S3,
Glue, EMR played by the EmrStepPlayer running each step's job for real):

- a nightly whose clickstream comes from the stream builds `clickstream_checkouts` equal to a
  nightly fed the same events as files, and to a pandas count of the day's distinct checkouts;
- a rerun of the date lands nothing again and changes nothing; a repair of that run (its
  `land_clickstream` task cleared with the dialog's defaults; dag.test() replaced the first run
  of the date by the rerun) after a late event and a re-sent copy arrived counts the late one
  once and the copy not at all;
- every AWS call the landing makes is one the Airflow role allows, and each Kinesis grant is used;
- the local target lands the same stream into a file:// lake and counts the day the same.
"""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from deployment import iam
from deployment.iam.evaluate import Request, is_allowed
from include.run_local import DAG_FILES, load_dag
from include.settings import load_settings
from infra import documents
from tests.harness.airflow_runs import clear_tasks_as_the_ui_does, resume_run
from tests.harness.aws_fakes import REGION, EmrStepPlayer, FakeAws, StepRunner
from tests.harness.dag_runs import DagRunRecord, record_run, run_pipeline_dag
from tests.harness.emr_runs import run_emr
from tests.harness.iam_questions import ACCOUNT, KINESIS_LANDING, authorization_questions
from tests.harness.settings import EMR_ENV

# Whole nightlies (EMR: from files, from the stream, a rerun and a repair; local: one more): the
# slowest end-to-end checks, run by `make test-ops`; `make test` keeps the landing's own rules
# (tests/include/test_clickstream_kinesis.py, moto's Kinesis, no Spark).
pytestmark = [pytest.mark.slow, pytest.mark.ops]

DS = "2024-07-10"
STREAM = "user-clickstream"
LAKE = EMR_ENV["PIPELINE_LAKE"]
PREFIX = EMR_ENV["PIPELINE_GLUE_DATABASE_PREFIX"]
OUTPUTS = {"outputs": ["clickstream_checkouts"]}
USERS = [f"C{n:06d}" for n in range(5)]


def _line(event_id: str, user: str, page: str, ts: str) -> str:
    return json.dumps({"event_id": event_id, "user_id": user, "page": page, "event_ts": ts})


def _events() -> list[str]:
    """Three days of events in the order producers put them: the day before, the day, the day
    after (already arrived); a re-sent copy, one arriving late (behind later events of its day),
    one cut short (quarantined), one with a time zone other than UTC."""
    lines = [_line(f"P{i}", USERS[i % 5], "checkout", f"2024-07-09T23:{50 + i}:00.000Z") for i in range(5)]
    pages = ["checkout", "home", "checkout", "product", "checkout", "cart"]
    for i in range(60):  # every 23 minutes, several users, several checkouts a minute for some
        minute = (i * 23) % (24 * 60 - 15)
        ts = f"{DS}T{minute // 60:02d}:{minute % 60:02d}:{(i * 7) % 60:02d}.{i:03d}Z"
        lines.append(_line(f"E{i:03d}", USERS[i % 3], pages[i % 6], ts))
        if i % 10 == 0:  # a second checkout of the same user in the same minute
            same_minute = f"{DS}T{minute // 60:02d}:{minute % 60:02d}:59.500Z"
            lines.append(_line(f"E{i:03d}b", USERS[i % 3], "checkout", same_minute))
    lines.append(lines[12])  # a producer's retry of an event
    lines.append(_line("L1", USERS[4], "checkout", f"{DS}T06:01:30.000Z"))  # late: after later events
    lines.append(_line("Z1", USERS[4], "checkout", f"{DS}T23:30:00.000-00:20"))  # 23:50 UTC
    lines.append('{"event_id":"X1","user_id":"C000001","page":"che')  # cut short
    lines += [_line(f"N{i}", USERS[i % 5], "checkout", f"2024-07-11T00:0{i}:00.000Z") for i in range(4)]
    return lines


EVENTS = _events()
# after the first nightly: a checkout of the day within the hour behind its latest event, and a
# re-sent copy of one the nightly counted (23:50 UTC)
AFTER = [_line("L2", USERS[1], "checkout", f"{DS}T23:58:00.000Z"), EVENTS[-6]]


def checkouts_oracle(lines: list[str]) -> pd.DataFrame:
    """The contract's count by pandas: the day's valid checkout events, each event_id once, per
    user and UTC minute."""
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    events = pd.DataFrame(rows)
    events["ts"] = pd.to_datetime(events["event_ts"], utc=True, format="ISO8601")
    day = events[(events["ts"].dt.date.astype(str) == DS) & (events["page"] == "checkout")]
    day = day.drop_duplicates("event_id")
    counts = day.groupby(["user_id", day["ts"].dt.floor("min").rename("window_start")]).size()
    out = counts.rename("checkout_count").reset_index()
    out["window_end"] = out["window_start"] + pd.Timedelta(minutes=1)
    return _normalised(out)


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["user_id", "window_start", "window_end", "checkout_count"]].copy()
    for col in ("window_start", "window_end"):
        ts = pd.to_datetime(frame[col])
        frame[col] = (ts.dt.tz_convert("UTC") if ts.dt.tz is not None else ts.dt.tz_localize("UTC")).astype(
            "datetime64[us, UTC]"
        )
    frame["checkout_count"] = frame["checkout_count"].astype("int64")
    return frame.sort_values(["user_id", "window_start"]).reset_index(drop=True)


def _catalog(aws: FakeAws):
    from include.lake import open_catalog

    keys = {"access-key-id": "testing", "secret-access-key": "testing", "region": REGION}
    properties = {f"{svc}.{k}": v for svc in ("glue", "s3") for k, v in keys.items()}
    return open_catalog(LAKE, properties={**properties, "glue.endpoint": aws.url, "s3.endpoint": aws.url})


def _table(aws: FakeAws, zone: str, name: str) -> pd.DataFrame:
    return _catalog(aws).load_table(f"{PREFIX}_{zone}.{name}").scan(row_filter=f"dt = '{DS}'").to_pandas()


def _checkouts(aws: FakeAws) -> pd.DataFrame:
    return _normalised(_table(aws, "curated", "clickstream_checkouts"))


def _landed_lines(aws: FakeAws) -> Counter:
    s3, lines = aws.s3, Counter()
    listed = s3.list_objects_v2(Bucket="lake-bucket", Prefix="lake/landing/clickstream/").get("Contents", [])
    for obj in listed:
        body = s3.get_object(Bucket="lake-bucket", Key=obj["Key"])["Body"].read().decode()
        lines.update(body.splitlines())
    return lines


def _put(aws: FakeAws, lines: list[str]) -> None:
    kinesis = aws.client("kinesis")
    for i, line in enumerate(lines):
        kinesis.put_record(StreamName=STREAM, Data=line.encode(), PartitionKey=f"k{i}")


def _failed(task_states: dict, runner: StepRunner) -> str:
    """The run's task states and the last lines of each step job's output: why it did not succeed."""
    tails = "\n".join(f"--- {job}\n" + "\n".join(lines[-25:]) for job, lines in runner.output.items())
    return f"{task_states}\n{tails}"


@pytest.fixture(scope="module")
def from_files(fake_aws, tmp_path_factory) -> pd.DataFrame:
    """The same events as upstream's files: each in its event day's folder, the cut one in D's.
    (A warm Spark application of its own: the stream's runs start from a fresh account.)"""
    steps_run = StepRunner(fake_aws, tmp_path_factory.mktemp("files-steps"))
    fake_aws.reset()
    fake_aws.s3.create_bucket(Bucket="lake-bucket")
    by_day: dict[str, list[str]] = {}
    for line in EVENTS:
        try:
            day = pd.Timestamp(json.loads(line)["event_ts"]).tz_convert("UTC").date().isoformat()
        except ValueError:
            day = DS
        by_day.setdefault(day, []).append(line)
    for day, lines in by_day.items():
        key = f"lake/landing/clickstream/dt={day}/events.json"
        fake_aws.s3.put_object(Bucket="lake-bucket", Key=key, Body=("\n".join(lines) + "\n").encode())
    try:
        run = run_emr(fake_aws, "nightly", DS, OUTPUTS, reset=False, run=steps_run)
    finally:
        steps_run.stop()
    assert run.run.state == "success", _failed(run.run.task_states, steps_run)
    return _checkouts(fake_aws)


@pytest.fixture(scope="module")
def kinesis_runs(fake_aws, tmp_path_factory):
    """Against a fresh account: the nightly from the stream, a rerun of its date, then that run
    repaired after more events arrived. What each left, for the tests to compare."""
    steps_run = StepRunner(fake_aws, tmp_path_factory.mktemp("kinesis-steps"))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PIPELINE_CLICKSTREAM_KINESIS_STREAM", STREAM)
            return _kinesis_runs(fake_aws, steps_run)
    finally:
        steps_run.stop()


def _nightly(fake_aws: FakeAws, steps_run: StepRunner) -> DagRunRecord:
    """The nightly of DS for the clickstream's output, the cluster played by running its steps
    (run_emr without its snapshot: every request recorded meanwhile is the run's own)."""
    with EmrStepPlayer(fake_aws, run=steps_run):
        return run_pipeline_dag("nightly", DS, OUTPUTS, xcom_tasks=("land_clickstream",))


def _kinesis_runs(fake_aws: FakeAws, steps_run: StepRunner) -> dict:
    fake_aws.reset()
    fake_aws.s3.create_bucket(Bucket="lake-bucket")
    fake_aws.client("kinesis").create_stream(StreamName=STREAM, ShardCount=2)
    _put(fake_aws, EVENTS)
    requests = []  # the runs' own, not the test's (setting up, putting events, reading back)
    fake_aws.forget_requests()
    first = _nightly(fake_aws, steps_run)
    requests += fake_aws.requests()
    assert first.state == "success", _failed(first.task_states, steps_run)
    got: dict = {"first": first, "after_first": _checkouts(fake_aws), "landed_first": _landed_lines(fake_aws)}
    got["processed"] = _table(fake_aws, "processed", "clickstream")
    got["quarantine"] = _table(fake_aws, "quarantine", "clickstream")
    fake_aws.forget_requests()
    rerun = _nightly(fake_aws, steps_run)
    requests += fake_aws.requests()
    assert rerun.state == "success", _failed(rerun.task_states, steps_run)
    got |= {"rerun": rerun, "after_rerun": _checkouts(fake_aws), "landed_rerun": _landed_lines(fake_aws)}
    _put(fake_aws, AFTER)
    dag = load_dag(DAG_FILES["nightly"])
    dag.deadline = None  # as run_dag_test: dag.test() cannot end a run that has one
    fake_aws.forget_requests()
    with EmrStepPlayer(fake_aws, run=steps_run):
        cleared = clear_tasks_as_the_ui_does(dag.dag_id, rerun.run_id, ["land_clickstream"])
        state = resume_run(dag, rerun.run_id)
    requests += fake_aws.requests()
    assert state == "success", _failed(record_run(dag, rerun.run_id).task_states, steps_run)
    got |= {
        "cleared": cleared,
        "after_repair": _checkouts(fake_aws),
        "landed_repair": _landed_lines(fake_aws),
        "requests": requests,
    }
    return got


def test_the_nightly_from_the_stream_equals_the_nightly_from_the_same_events_as_files(
    kinesis_runs, from_files
):
    oracle = checkouts_oracle(EVENTS)
    assert len(oracle) > 20  # the data has something to count
    assert oracle["checkout_count"].max() >= 2
    pd.testing.assert_frame_equal(from_files, oracle, check_exact=True)
    pd.testing.assert_frame_equal(kinesis_runs["after_first"], from_files, check_exact=True)
    assert kinesis_runs["first"].task_states["land_clickstream"] == "success"


def test_each_record_of_the_stream_was_landed_once(kinesis_runs):
    # what the task says it landed, by event date (the cut record in the run's date)
    assert kinesis_runs["first"].xcoms["land_clickstream"]["by_date"] == {
        "2024-07-09": 5,
        DS: len(EVENTS) - 9,
        "2024-07-11": 4,
    }
    assert kinesis_runs["rerun"].xcoms["land_clickstream"]["records"] == 0
    assert kinesis_runs["landed_first"] == Counter(EVENTS)
    assert kinesis_runs["landed_rerun"] == Counter(EVENTS)  # the rerun found nothing new
    assert kinesis_runs["landed_repair"] == Counter(EVENTS) + Counter(AFTER)


def test_the_day_was_ingested_deduplicated_and_the_cut_record_quarantined_with_its_reason(kinesis_runs):
    day = [json.loads(line) for line in EVENTS if '"X1"' not in line]
    on_day = {
        e["event_id"] for e in day if pd.Timestamp(e["event_ts"]).tz_convert("UTC").date().isoformat() == DS
    }
    assert sorted(kinesis_runs["processed"]["event_id"]) == sorted(on_day)
    quarantined = kinesis_runs["quarantine"]
    assert list(quarantined["reject_reason"]) == ["malformed JSON"]
    assert list(quarantined["raw_record"]) == [EVENTS[-5]]


def test_a_rerun_and_a_repair_of_the_date_count_no_event_twice(kinesis_runs):
    pd.testing.assert_frame_equal(kinesis_runs["after_rerun"], kinesis_runs["after_first"], check_exact=True)
    assert "land_clickstream" in kinesis_runs["cleared"]
    assert "run_clickstream" in kinesis_runs["cleared"]
    # the late checkout is counted once; the re-sent copy of a counted one is not counted again
    pd.testing.assert_frame_equal(
        kinesis_runs["after_repair"], checkouts_oracle(EVENTS + AFTER), check_exact=True
    )
    before = kinesis_runs["after_first"].set_index(["user_id", "window_start"])["checkout_count"]
    after = kinesis_runs["after_repair"].set_index(["user_id", "window_start"])["checkout_count"]
    assert after.sum() == before.sum() + 1


def test_every_call_of_the_landing_is_allowed_to_the_airflow_role_and_every_kinesis_grant_used(kinesis_runs):
    settings = load_settings(
        {**EMR_ENV, "PIPELINE_AWS_REGION": REGION, "PIPELINE_CLICKSTREAM_KINESIS_STREAM": STREAM}
    )
    policy = iam.render(
        iam.document("airflow-role-policy.json"), documents.values_from_settings(settings, ACCOUNT)
    )
    # Airflow's calls (boto3), not the stand-in cluster's (Spark's S3A reads the landing too)
    ours = [r for r in kinesis_runs["requests"] if "Boto3" in r.user_agent or "Botocore" in r.user_agent]
    questions = [q for r in ours for q in authorization_questions(r, {})]
    landing = [
        q
        for q in questions
        if q.action.startswith("kinesis:")
        or "/landing/clickstream/" in q.resource
        or "clickstream_kinesis" in q.resource
    ]
    assert {q.action for q in landing if q.action.startswith("kinesis:")} == KINESIS_LANDING
    assert {q.action for q in landing if "landing/clickstream" in q.resource} >= {"s3:PutObject"}
    assert {q.action for q in landing if "clickstream_kinesis" in q.resource} >= {
        "s3:GetObject",
        "s3:PutObject",
    }
    denied = sorted({(q.action, q.resource) for q in landing if not is_allowed([policy], q)})
    assert denied == [], "\n".join(map(str, denied))
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}"
    assert {q.resource for q in landing if q.action.startswith("kinesis:")} == {stream}
    assert not is_allowed(
        [policy], Request("kinesis:GetRecords", f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/other")
    )


def test_the_local_target_lands_the_stream_too_and_builds_the_same_counts(fake_aws, tmp_path):
    """The same task on the local target: the stream (moto's, through the Airflow connection)
    landed into a file:// lake, the day counted as the contract says."""
    from include.lake import read_date

    fake_aws.reset()
    fake_aws.client("kinesis").create_stream(StreamName=STREAM, ShardCount=2)
    _put(fake_aws, EVENTS)
    lake = tmp_path / "lake"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_TARGET", "local")
        mp.setenv("PIPELINE_LAKE", lake.as_uri())
        mp.setenv("PIPELINE_CLICKSTREAM_KINESIS_STREAM", STREAM)
        run = run_pipeline_dag("nightly", DS, OUTPUTS, xcom_tasks=("land_clickstream",))
    assert run.state == "success", run.task_states
    assert run.xcoms["land_clickstream"]["records"] == len(EVENTS)
    landed = Counter(
        line
        for path in (lake / "landing" / "clickstream").rglob("*.json")
        for line in path.read_text().splitlines()
    )
    assert landed == Counter(EVENTS)
    pd.testing.assert_frame_equal(
        _normalised(read_date(lake, "curated", "clickstream_checkouts", DS)),
        checkouts_oracle(EVENTS),
        check_exact=True,
    )
