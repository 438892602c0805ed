"""Which date a nightly run builds (its `ds`), from the run alone: never from the wall clock.

The rule, in the order it is applied (the trigger form's `ds` field says the same in words):

1. The form's (or conf's) `ds` is set: exactly that date. It must be a complete UTC day when the
   run was triggered (before the UTC day of its `run_after`): a day whose data is still arriving,
   or a future one, is refused before anything reaches AWS or a command line.
2. A scheduled run, or a backfill run (`airflow backfill create`): its data interval's day,
   the UTC date of `data_interval_start` (the run of 02:00 UTC on D+1 builds D).
3. A manual run (the form, the REST API, `dag.test`):
   - without a logical date: the last complete UTC day, the day before its `run_after`;
   - with a logical date in a day that had ended when it was triggered: that day (scripts and
     `make demo` trigger with e.g. 2024-06-28T02:00Z or 2024-06-28T00:00Z and build 2024-06-28);
   - with a logical date in the day it was triggered (the form pre-fills "now"): that day is
     not complete, so the last complete UTC day, the day before;
   - with a logical date after the day it was triggered: refused (no data exists for it).

`run_after` is when the run was triggered (Airflow sets it from its clock when the run is
created, and keeps it for every retry and clear), so a run's date never changes once created.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum

from include import pipeline as P

# Airflow's DagRunType values; every other type (asset-triggered, ...) builds its data interval's day.
MANUAL = "manual"


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):  # the REST API's and the deadline callback's JSON form
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return pendulum.instance(value).in_timezone("UTC")


def last_complete_day(run_after: Any) -> str:
    """The last UTC day that had ended at `run_after`: the UTC day before it."""
    return (_utc(run_after).date() - dt.timedelta(days=1)).isoformat()


def run_ds(
    *,
    run_type: Any,
    logical_date: Any,
    data_interval_start: Any,
    run_after: Any,
    requested: Any = None,
) -> tuple[str, str]:
    """(ds, why): the date a nightly run builds and the reason, for its plan task's log."""
    if run_after is None:
        raise P.RunParamError("this run has no run_after (when it was triggered); cannot decide its date")
    kind = str(getattr(run_type, "value", run_type))
    triggered = _utc(run_after)
    last = last_complete_day(triggered)
    when = f"triggered {triggered.isoformat()}"
    if requested is not None:
        ds = P.check_ds(requested, "ds")
        if ds > last:
            raise P.RunParamError(
                f"ds {ds} is not a complete day: the run was {when}, so the last complete UTC day is "
                f"{last}; a day whose data is still arriving cannot be built"
            )
        return ds, "the run was given ds (the form's 'Date to build')"
    if kind != MANUAL:
        start = data_interval_start if data_interval_start is not None else logical_date
        if start is None:
            raise P.RunParamError(f"a {kind} run without a data interval or logical date; give it ds")
        ds = P.check_ds(_utc(start).date().isoformat(), "the logical date")
        return ds, f"it is the {kind} run of the data interval starting {_utc(start).isoformat()}"
    if logical_date is None:
        return last, f"a manual run without a date builds the last complete UTC day ({when})"
    logical = _utc(logical_date)
    day = logical.date().isoformat()
    if day > triggered.date().isoformat():
        raise P.RunParamError(
            f"the logical date {logical.isoformat()} is after the day the run was {when}: "
            f"no data exists for {day} yet; the last complete UTC day is {last}"
        )
    if day == triggered.date().isoformat():
        return last, (
            f"its logical date {logical.isoformat()} falls in the day it was {when}, which has not "
            "ended (the trigger form's 'now'), so it builds the last complete UTC day"
        )
    ds = P.check_ds(day, "the logical date")
    return ds, f"its logical date {logical.isoformat()} names that UTC day"


DS_DESCRIPTION = (
    "Empty (the default): the last complete day in UTC, the day before the UTC day you press "
    "Trigger in (pressed at 2024-07-01 09:30 UTC, it builds 2024-06-30). Only a logical date "
    "(Advanced Options) in an earlier UTC day changes that: then it builds that day. A date: "
    "exactly that date, at most the last complete UTC day. Scheduled runs and backfills build "
    "their data interval's day."
)
