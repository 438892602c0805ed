"""Nightly run plans for the report's tests, made by the plan's own pure builder (`include.run_plan`)
from job calls as the plan task makes them, for any choice of steps."""

from __future__ import annotations

from collections.abc import Sequence

from include import pipeline as P
from include.run_plan import JobCall, RunPlan, nightly_plan

LAKE = "file:///lake"


def _call(step: P.Step, ds: str, run_id: str) -> JobCall:
    extra = ("--checks-uri", f"{LAKE}/checks.json") if step is P.AUDIT else ()
    return JobCall(step, ds=ds, lake=LAKE, run_id=run_id, extra=extra)


def nightly_run_plan(
    ds: str, selected: Sequence[str], *, emr: bool, dag_id: str = "nightly", run_id: str = "manual__1"
) -> RunPlan:
    """A nightly run of the `selected` steps (the others skip), then its audit and publish."""
    steps = [s for s in P.PIPELINE if s.name in selected] + [P.AUDIT, P.PUBLISH]
    calls = {s.name: _call(s, ds, run_id) for s in steps}
    return nightly_plan(dag_id=dag_id, run_id=run_id, ds=ds, branch="b", calls=calls, emr=emr)


def step_metrics(rows_in: int, rows_out: int, quarantined: int = 0, seconds: float = 10.0) -> dict:
    """A step's metrics record as a job leaves it (spark_jobs/cli.py), of the counts given."""
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_quarantined": quarantined,
        "duration_seconds": seconds,
    }
