"""Building a subset of the outputs runs exactly the steps they need, for every subset, on both targets.

Airflow decides which tasks run: each of the 127 non-empty subsets of the seven outputs is
planned, and for each distinct set of steps those plans leave to run (31) a real DagRun of the
nightly DAG is driven by the scheduler's own dependency evaluation (tests/harness/scheduling.py).
The plan comes from the plan task's own function; a step task's outcome is what its operator
does with the plan entry it reads (an empty entry skips it: tests/plugins and
tests/reliability check the operators do exactly that). The steps that run are compared, for
every subset, with the dependency closure networkx computes from the spec.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import networkx as nx
import pytest

from include import pipeline as P
from tests.harness.scheduling import ScheduledDag
from tests.harness.settings import EMR_ENV

SUBSETS = [list(c) for r in range(1, len(P.OUTPUTS) + 1) for c in itertools.combinations(P.OUTPUTS, r)]
FIRST_DAY = dt.datetime(2024, 1, 1, 2, tzinfo=dt.UTC)
CODE = {
    "version": "0.1.0-test",
    "py_files": "s3://lake-bucket/code/x.zip",
    "entrypoint": "s3://lake-bucket/e.py",
}
TARGET_ENV = {
    "local": {"PIPELINE_TARGET": "local", "PIPELINE_LAKE": "file:///tmp/subset-test-lake"},
    "emr": EMR_ENV,
}


def needed_steps(outputs: list[str]) -> set[str]:
    """The oracle: each output's producer and everything it transitively depends on."""
    graph = nx.DiGraph([(dep, s.name) for s in P.PIPELINE for dep in s.depends_on])
    graph.add_nodes_from(s.name for s in P.PIPELINE)
    producers = {s.name for s in P.PIPELINE if set(s.produces) & set(outputs)}
    return producers.union(*(nx.ancestors(graph, p) for p in producers))


@pytest.fixture(scope="module", params=["local", "emr"])
def target(request, airflow_db) -> tuple[str, ScheduledDag, Any]:
    from include.run_local import DAG_FILES, load_dag
    from include.settings import load_settings

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in __import__("os").environ if k.startswith("PIPELINE_")]:
            mp.delenv(key)
        for key, value in TARGET_ENV[request.param].items():
            mp.setenv(key, value)
        dag = load_dag(DAG_FILES["nightly"])
        scheduled = ScheduledDag(dag)
        settings = load_settings()
    return request.param, scheduled, settings


def _planned_step(task: Any) -> str | None:
    """The step of the plan a step task renders (include/targets), or None for any other task."""
    return getattr(task, "plan_step", None)


def test_every_subset_runs_exactly_the_steps_it_needs(target):
    """Every subset is planned; Airflow resolves one run per distinct set of steps the plans
    leave to run. What the scheduler decides depends on nothing else: the step tasks' outcomes
    (an empty plan entry skips) are its only input from the run, so subsets whose plans skip the
    same steps (127 subsets, 31 such sets) get the same run; each subset is checked against it."""
    from include.planning import plan_nightly

    name, scheduled, settings = target
    steps = {_planned_step(task) for task in scheduled.dag.tasks} - {None}
    planned: dict[frozenset[str], list[list[str]]] = {}
    for i, outputs in enumerate(SUBSETS):
        plan = plan_nightly(
            settings,
            dag_id=scheduled.dag.dag_id,
            run_id=f"subset-{i}",
            ds=(FIRST_DAY + dt.timedelta(days=i)).date().isoformat(),
            params={"cluster_profile": "dev", "outputs": outputs, "ingest_start_ds": None},
            code=CODE if settings.is_emr else None,
        )
        to_run = frozenset(step for step in steps if plan.commands(step) != [])
        planned.setdefault(to_run, []).append(outputs)

    wrong = []
    for i, (to_run, subsets) in enumerate(planned.items()):
        day = FIRST_DAY + dt.timedelta(days=i)
        ran: set[str] = set()

        def decide(task: Any, ti: Any, to_run: frozenset = to_run, ran: set = ran) -> str:
            step = _planned_step(task)
            if step is None:
                return "success"
            if step not in to_run:  # what the task renders: nothing, so it skips
                return "skipped"
            ran.add(step)
            return "success"

        states = scheduled.resolve_run(logical_date=day, conf={"outputs": subsets[0]}, decide=decide)
        skipped = {t for t, s in states.items() if s == "skipped"}
        for outputs in subsets:
            # the steps the outputs need, then the audit of what they wrote and its publish
            expected = needed_steps(outputs) | {"audit", "publish"}
            others_ok = states["run_report"] == "success" and (
                name == "local" or states["terminate_cluster"] == "success"
            )
            if settings.is_emr:
                # a step that did not run registers nothing
                registers = {
                    f"register_{o}" for s in P.PIPELINE if s.name not in expected for o in s.produces
                }
                others_ok = others_ok and registers <= skipped
            if ran != expected or not others_ok:
                wrong.append(
                    (outputs, sorted(ran ^ expected), {t: s for t, s in states.items() if s != "success"})
                )
    assert wrong == [], f"{len(wrong)} of {len(SUBSETS)} subsets on {name}: {wrong[:3]}"


def test_the_reported_bug_customer_features_and_sales_rolling_skips_segments():
    """The issue's own example, against the oracle: segments is needed by neither output."""
    assert needed_steps(["customer_features", "sales_rolling_30d"]) == {
        "ingest_customers",
        "ingest_sales",
        "ingest_referrals",
        "graph",
        "features",
        "sales_rolling",
    }
    assert "features" not in needed_steps(["sales_rolling_30d", "referral_graph"])
