"""The pipeline DAGs' forms (Params) and defaults: what a person can ask of a run, checked by
Airflow's form first and again by the planners (`include.planning`) before anything runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param

from include import pipeline as P
from include.cluster_profiles import PROFILES
from include.run_dates import DS_DESCRIPTION
from include.settings import Settings

START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
DS_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def default_args(settings: Settings) -> dict[str, Any]:
    return {
        "owner": "data-platform",
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    }


def _profile_param(settings: Settings) -> Param:
    return Param(
        settings.default_profile,
        type="string",
        enum=sorted(PROFILES),
        title="Cluster profile",
        description="EMR cluster size: dev (3 x m5.xlarge) or prod (Graviton fleets, spot task nodes). "
        "Ignored by the local target.",
    )


def _date_param(title: str, description: str, *, nullable: bool = False) -> Param:
    """A YYYY-MM-DD date; nullable ones default to null, the others must be filled in."""
    schema = {
        "type": ["null", "string"] if nullable else "string",
        "format": "date",
        "pattern": DS_PATTERN,
        "title": title,
        "description": description,
    }
    return Param(None, **schema) if nullable else Param(**schema)


def _publish_param() -> Param:
    return Param(
        True,
        type="boolean",
        title="Publish despite warnings",
        description="On: a run whose audit found only warnings publishes (warnings are reported). "
        "Off: any failed check keeps the run's output on its branch, unpublished, for a person to look at.",
    )


def nightly_params(settings: Settings) -> dict[str, Param]:
    return {
        # first in the form: which date the run builds (include/run_dates.py has the rule)
        "ds": _date_param("Date to build", DS_DESCRIPTION, nullable=True),
        "cluster_profile": _profile_param(settings),
        "outputs": Param(
            list(P.OUTPUTS),
            type="array",
            items={"type": "string", "enum": list(P.OUTPUTS)},
            minItems=1,
            uniqueItems=True,
            title="Outputs to build",
            description="Only the steps these outputs need run; the others are skipped.",
        ),
        "ingest_start_ds": _date_param(
            "Load landing history from",
            "Empty: ingest the run's date only. A date: ingest every day from it to the run's date "
            f"(at most {P.MAX_INGEST_HISTORY_DAYS} days) in one step per dataset.",
            nullable=True,
        ),
        "publish_despite_warnings": _publish_param(),
    }


def backfill_params(settings: Settings) -> dict[str, Param]:
    return {
        "start_ds": _date_param("First date", "First date of the range (inclusive)."),
        "end_ds": _date_param("Last date", f"Last date (inclusive); at most {P.MAX_BACKFILL_DAYS} days."),
        "cluster_profile": _profile_param(settings),
        "publish_despite_warnings": _publish_param(),
    }


def checked_profile(params: dict[str, Any]) -> str:
    profile = params.get("cluster_profile")
    if not isinstance(profile, str) or profile not in PROFILES:
        raise P.RunParamError(f"cluster_profile must be one of {sorted(PROFILES)}, got {profile!r}")
    return profile
