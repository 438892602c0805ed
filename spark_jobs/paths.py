"""Where the jobs leave files about their runs in the lake (metrics, audit results): one source
for the jobs that write them and for Airflow's tasks that read them. Pure Python, no Spark."""

from __future__ import annotations

import re

METRICS_DIR = "_runs/metrics"
AUDITS_DIR = "_runs/audits"
LINEAGE_DIR = "_lineage/spark"


def file_safe(value: str) -> str:
    """A name usable as one path segment in the lake (a run id, a branch): other characters -> _."""
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", value)


def metrics_uri(lake: str, job: str, ds: object, dataset: str | None = None) -> str:
    """Where a job run's metrics land: LAKE/_runs/metrics/dt=<ds>/<job>[-<dataset>].json.

    One file per job (and dataset) and date, replaced by a rerun, so it always describes the
    last successful run of that step for that date. A ranged job files under its last date.
    """
    name = f"{job}-{dataset}" if dataset else job
    return f"{lake}/{METRICS_DIR}/dt={ds}/{name}.json"


def audit_uri(lake: str, ds: object, branch: str, what: str = "results") -> str:
    """A run's audit files, LAKE/_runs/audits/dt=<ds>/<branch>.<what>.json (file-safe name):
    `checks` is what the plan declared for the run (its checks with their settings), `results` what
    the audit found."""
    return f"{lake}/{AUDITS_DIR}/dt={ds}/{file_safe(branch)}.{what}.json"


def lineage_uri(lake: str, ds: object, run_id: str | None, name: str, lineage_run: str) -> str:
    """A job run's OpenLineage events (JSON lines), LAKE/_lineage/spark/dt=<ds>/<run>/<name>.<id>.jsonl:
    one file per job run (a retry adds one), under the pipeline run that ran it (`manual` without one)."""
    return f"{lake}/{LINEAGE_DIR}/dt={ds}/{file_safe(run_id or 'manual')}/{name}.{lineage_run}.jsonl"
