"""The pipeline, declared once: which job each step runs, what it needs first, what it produces.

Both targets (EMR steps, local subprocesses) and both DAGs (nightly, backfill) are built from
`PIPELINE`; adding a step is one entry here. Everything in this module is pure: no Airflow,
no Spark, no I/O, so DAG files can import it at parse time for free.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from plugins.emr_naming import safe_name

# The pipeline's DAGs (include/dag_factory.py); the stack's dashboard and alarms name them too.
NIGHTLY_DAG_ID = "customer_analytics_nightly"
BACKFILL_DAG_ID = "customer_analytics_backfill"
MAX_BACKFILL_DAYS = 93  # one cluster per quarter of backfill at most; longer ranges go in pieces
MAX_INGEST_HISTORY_DAYS = 366
# A sanity window, not a business rule: a date outside it is a typo (0024-06-30, 9024-06-30).
EARLIEST_DS, LATEST_DS = "2000-01-01", "2099-12-31"

_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Step:
    """One Spark job run: `python -m spark_jobs <job> <options> --ds D --lake L`."""

    name: str
    job: str
    options: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()  # curated outputs (tables curated.<output>, date ds)
    ranged: bool = False  # takes --start-ds/--end-ds to load a range in one application


def _ingest(dataset: str) -> Step:
    return Step(f"ingest_{dataset}", "ingest", ("--dataset", dataset), ranged=True)


PIPELINE: tuple[Step, ...] = (
    _ingest("customers"),
    _ingest("sales"),
    _ingest("referrals"),
    _ingest("stock_ticks"),
    _ingest("clickstream"),
    Step("graph", "graph", depends_on=("ingest_referrals",), produces=("referral_graph",)),
    Step(
        "features",
        "features",
        depends_on=("ingest_sales", "ingest_customers", "graph"),
        produces=("customer_features", "feature_correlation"),
    ),
    Step("segments", "segments", depends_on=("features",), produces=("customer_segments",)),
    Step(
        "sales_rolling",
        "sales_rolling",
        depends_on=("ingest_sales", "ingest_customers"),
        produces=("sales_rolling_30d",),
    ),
    Step("stock_daily", "stock_daily", depends_on=("ingest_stock_ticks",), produces=("stock_daily",)),
    # After its ingest, so a malformed clickstream day shows up in quarantine before the stream runs.
    Step(
        "clickstream", "clickstream", depends_on=("ingest_clickstream",), produces=("clickstream_checkouts",)
    ),
)

# After the pipeline's steps, on the same cluster: check what the run wrote on its branch, then
# make it what readers see (write-audit-publish). Not in PIPELINE: they run once per run.
AUDIT = Step("audit", "audit", ranged=True)
PUBLISH = Step("publish", "publish")
# The tables' weekly upkeep (include/upkeep.py): a run of its own, not a step of the pipeline's.
MAINTAIN = Step("maintain", "maintain")

STEPS = {step.name: step for step in PIPELINE}
OUTPUTS: tuple[str, ...] = tuple(out for step in PIPELINE for out in step.produces)
PRODUCER = {out: step.name for step in PIPELINE for out in step.produces}
DATASETS: tuple[str, ...] = tuple(step.options[1] for step in PIPELINE if step.job == "ingest")


def _check_spec(pipeline: Sequence[Step]) -> None:
    """Fail at import on a broken spec: duplicate names, unknown or later dependencies, two producers."""
    seen: set[str] = set()
    for step in pipeline:
        if step.name in seen:
            raise ValueError(f"pipeline step {step.name!r} is declared twice")
        late = [d for d in step.depends_on if d not in seen]
        if late:
            raise ValueError(f"step {step.name!r} depends on {late}, which are not declared before it")
        seen.add(step.name)
    if len(set(OUTPUTS)) != len(OUTPUTS):
        raise ValueError(f"an output is produced by two steps: {OUTPUTS}")


_check_spec(PIPELINE)


# ---- selection and order -------------------------------------------------------------------
def steps_for(outputs: Iterable[str]) -> tuple[Step, ...]:
    """The steps needed to build `outputs` (with all their dependencies), in spec order."""
    needed: set[str] = set()
    todo = [PRODUCER[out] for out in outputs]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(STEPS[name].depends_on)
    return tuple(step for step in PIPELINE if step.name in needed)


def waves(steps: Sequence[Step]) -> list[list[Step]]:
    """Group steps into waves: a step's dependencies are all in earlier waves; a wave runs side by side."""
    names = {s.name for s in steps}
    level: dict[str, int] = {}
    for step in steps:  # spec order is topological
        deps = [level[d] for d in step.depends_on if d in names]
        level[step.name] = 1 + max(deps, default=-1)
    out: list[list[Step]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for step in steps:
        out[level[step.name]].append(step)
    return out


# ---- command lines -------------------------------------------------------------------------
def job_args(
    step: Step,
    *,
    ds: str,
    lake: str,
    start_ds: str | None = None,
    run_id: str | None = None,
    branch: str | None = None,
) -> list[str]:
    """The job's command line after `python -m spark_jobs` (or after the EMR entrypoint).

    A ranged step given `start_ds` loads [start_ds, ds] in one application; other steps ignore it.
    `run_id` (the Airflow run) is recorded on every table commit the job makes and in its metrics;
    `branch` is where the job commits (write-audit-publish), not main.
    """
    if start_ds is not None and step.ranged and start_ds != ds:
        dates = ["--start-ds", start_ds, "--end-ds", ds]
    else:
        dates = ["--ds", ds]
    # A run id comes from whoever triggered the run: only its EMR-safe form reaches a command line.
    tail = ["--run-id", safe_name(run_id)] if run_id else []
    if branch:
        tail += ["--branch", branch]
    return [step.job, *step.options, *dates, "--lake", lake, *tail]


def audit_branch(run_id: str) -> str:
    """The Iceberg branch a run writes to until its audit passes: `audit_<run id>`, EMR-safe."""
    return f"audit_{safe_name(run_id)}"


def emr_step(
    name: str,
    args: Sequence[str],
    *,
    py_files: str,
    entrypoint: str,
    jars: str | None = None,
    conf: Mapping[str, str] | None = None,
) -> dict:
    """An EMR step running the job with spark-submit in cluster mode (boto3 `Steps` item).

    `jars`: extra jars for the driver and executors (the OpenLineage listener); `conf`: Spark
    properties (`--conf k=v`, e.g. the jobs' `spark.openlineage.*` settings)."""
    options = [*(["--jars", jars] if jars else [])]
    for key, value in sorted((conf or {}).items()):
        options += ["--conf", f"{key}={value}"]
    return {
        "Name": name,
        # The DAG decides what a failure means (the run fails, teardown terminates); EMR keeps
        # running independent steps instead of cancelling them or killing the cluster.
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "cluster",
                *options,
                "--py-files",
                py_files,
                entrypoint,
                *args,
            ],
        },
    }


# ---- run parameters ------------------------------------------------------------------------
class RunParamError(ValueError):
    """A run parameter that must not reach AWS or a command line."""


def check_ds(value: object, what: str) -> str:
    """`value` as a YYYY-MM-DD string of a real calendar date, or RunParamError."""
    if not isinstance(value, str) or not _DS_RE.match(value):
        raise RunParamError(f"{what} must be a date written YYYY-MM-DD, got {value!r}")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise RunParamError(f"{what} {value!r} is not a calendar date") from None
    if not EARLIEST_DS <= value <= LATEST_DS:
        raise RunParamError(
            f"{what} {value} is outside the dates this pipeline runs for ({EARLIEST_DS} .. {LATEST_DS})"
        )
    return value


def check_outputs(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise RunParamError(f"outputs must be a non-empty list of {list(OUTPUTS)}, got {value!r}")
    unknown = [v for v in value if v not in OUTPUTS]
    if unknown:
        raise RunParamError(f"unknown outputs {unknown}; choose from {list(OUTPUTS)}")
    if len(set(value)) != len(value):
        raise RunParamError(f"outputs lists a name twice: {value}")
    return [out for out in OUTPUTS if out in value]  # spec order: stable plans for equal requests


def days_between(start: str, end: str) -> int:
    """Number of dates in [start, end]."""
    return (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days + 1


def check_range(start: str, end: str, *, max_days: int, what: str) -> list[str]:
    """Every date of [start, end], in order; RunParamError when reversed or longer than max_days."""
    n = days_between(start, end)
    if n < 1:
        raise RunParamError(f"{what}: start {start} is after end {end}")
    if n > max_days:
        raise RunParamError(f"{what}: {n} days from {start} to {end}; at most {max_days} per run")
    first = dt.date.fromisoformat(start)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(n)]
