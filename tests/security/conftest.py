"""Fixtures of the security tests: Airflow and moto as the DAG tests set them up (reused, not copied)."""

from __future__ import annotations

import tests.conftest_airflow  # noqa: F401  (first: sets up Airflow's home before Airflow is imported)
from tests.dags.conftest import airflow_db, fake_aws, moto_url

__all__ = ["airflow_db", "fake_aws", "moto_url"]
