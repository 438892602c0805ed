"""Fixtures of the bad-input tests: Airflow's DB and moto are tests/harness/fixtures.py's."""

from __future__ import annotations

import tests.harness.airflow_home  # noqa: F401  (first: sets up Airflow's home before Airflow is imported)
