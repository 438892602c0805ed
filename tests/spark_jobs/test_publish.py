"""The publish job: main becomes the run's audited branch in one step per table, or stays as it was.

Written through the jobs' own table code (to the branch when the session has one); read back
through pyiceberg, which reads main as every reader of the lake does.
"""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from spark_jobs import publish, tables
from spark_jobs.common import JobInputError
from tests.harness.lake_tables import load, read_table, seed_rows

BRANCH = "audit_manual__2024-06-04"
OTHER = "audit_scheduled__2024-06-04"
D1, D2 = dt.date(2024, 6, 1), dt.date(2024, 6, 2)


@pytest.fixture
def session(lake_spark):
    yield lake_spark
    lake_spark.conf.unset(tables.WAP_BRANCH)


def _graph(session, lake, ds, *ids, branch=None):
    if branch:
        session.conf.set(tables.WAP_BRANCH, branch)
    else:
        session.conf.unset(tables.WAP_BRANCH)
    written = seed_rows(session, lake, "curated", "referral_graph", [(i, 0.5, "c", ds) for i in ids])
    session.conf.unset(tables.WAP_BRANCH)
    return written


def _publish(session, lake, branch=BRANCH):
    session.conf.set(tables.WAP_BRANCH, branch)
    return publish.run(session, argparse.Namespace(lake=lake, ds=D2))


def _ids(lake, ds):
    return sorted(read_table(lake, "curated", "referral_graph", ds)["customer_id"])


def _refs(lake):
    return set(load(lake, "curated", "referral_graph").metadata.refs)


def test_publish_fast_forwards_main_to_the_branch_and_drops_the_branch(session, lake):
    _graph(session, lake, D1, "a", "b")
    written = _graph(session, lake, D2, "c", "d", branch=BRANCH)
    assert _ids(lake, D2) == []  # written, audited, not yet seen
    assert _refs(lake) == {"main", BRANCH}

    metrics = _publish(session, lake)

    assert metrics["published"] == {"curated.referral_graph": written.snapshot_id}
    table = load(lake, "curated", "referral_graph")
    assert table.current_snapshot().snapshot_id == written.snapshot_id
    assert (_ids(lake, D1), _ids(lake, D2)) == (["a", "b"], ["c", "d"])
    assert _refs(lake) == {"main"}


def test_a_table_the_run_created_gets_its_main_at_publish(session, lake):
    written = _graph(session, lake, D2, "c", branch=BRANCH)
    assert load(lake, "curated", "referral_graph").current_snapshot() is None  # no reader sees it

    _publish(session, lake)

    assert load(lake, "curated", "referral_graph").current_snapshot().snapshot_id == written.snapshot_id
    assert _ids(lake, D2) == ["c"]


def test_publish_refuses_when_main_moved_since_the_branch_was_made_and_keeps_both(session, lake):
    _graph(session, lake, D1, "a")
    _graph(session, lake, D2, "mine", branch=BRANCH)
    theirs = _graph(session, lake, D2, "theirs", branch=OTHER)
    _publish(session, lake, OTHER)  # another run published first

    with pytest.raises(JobInputError, match=r"main moved since branch .* curated\.referral_graph"):
        _publish(session, lake)

    assert load(lake, "curated", "referral_graph").current_snapshot().snapshot_id == theirs.snapshot_id
    assert _ids(lake, D2) == ["theirs"]
    assert _refs(lake) == {"main", BRANCH}  # kept for a person to look at


def test_publishing_again_is_a_no_op(session, lake):
    _graph(session, lake, D1, "a")
    written = _graph(session, lake, D2, "b", branch=BRANCH)
    _publish(session, lake)

    again = _publish(session, lake)

    assert again["published"] == {}
    assert load(lake, "curated", "referral_graph").current_snapshot().snapshot_id == written.snapshot_id


def test_publish_needs_a_branch(session, lake):
    session.conf.unset(tables.WAP_BRANCH)
    with pytest.raises(JobInputError, match="publish needs --branch"):
        publish.run(session, argparse.Namespace(lake=lake, ds=D2))
