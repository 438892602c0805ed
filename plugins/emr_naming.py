"""How the project names and tags what it starts on EMR, so anyone can find a run's clusters and
steps again: by their tags (project, dag_id, run_id) and by their step names
(`<dag_id>|<ds>|<step>|<run_id>`).

One source for the DAGs that name them (include/) and for the operators and the janitor that
look them up (plugins/). Pure Python: imported at parse time for free.
"""

from __future__ import annotations

import hashlib
import re

PROJECT = "customer-market-analytics"

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+=@-]")


def safe_name(value: str) -> str:
    """A value usable in EMR step names and tags (letters, digits and _ . : + = @ -)."""
    return _NAME_UNSAFE.sub("_", value)


def emr_step_name(dag_id: str, run_id: str, ds: str, step: str) -> str:
    """`<dag_id>|<ds>|<step>|<run_id>`: lets anyone find the steps of a run by name (ListSteps)."""
    return "|".join((safe_name(dag_id), ds, safe_name(step), safe_name(run_id)))[:256]


def parse_emr_step_name(name: str) -> dict[str, str] | None:
    parts = name.split("|")
    if len(parts) != 4:
        return None
    return dict(zip(("dag_id", "ds", "step", "run_id"), parts, strict=True))


def run_of(step_name: str) -> tuple[str, str] | None:
    """(dag_id, run_id) of a step named by `emr_step_name`, else None."""
    parsed = parse_emr_step_name(step_name)
    return (parsed["dag_id"], parsed["run_id"]) if parsed else None


def run_tags(dag_id: str, run_id: str) -> dict[str, str]:
    """The tags that identify a run's cluster (`cluster_profiles.cluster_tags` puts them on it)."""
    return {"project": PROJECT, "dag_id": safe_name(dag_id), "run_id": safe_name(run_id)}


def serverless_application_name(dag_id: str, run_id: str) -> str:
    """The name of a run's EMR Serverless application: unique to the run (a digest of dag and run)
    and within Serverless's rule (1-64 of letters, digits and . _ / # -); its tags name the run."""
    digest = hashlib.sha256(f"{dag_id}|{run_id}".encode()).hexdigest()[:16]
    return f"{re.sub(r'[^A-Za-z0-9._#-]', '-', dag_id)[:40]}-{digest}"
