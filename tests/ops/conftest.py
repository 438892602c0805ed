"""Ops tests: the `ops` marker selects the slow ones (a real Airflow, a browser).

They run only under `make test-ops` (OPS_TESTS=1); `make test` deselects them, and says so,
instead of skipping them. The fast compose checks run everywhere.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ops: slow end-to-end test of a real Airflow; runs with `make test-ops`"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("OPS_TESTS") == "1":
        return
    ops = [item for item in items if item.get_closest_marker("ops")]
    if ops:
        config.hook.pytest_deselected(items=ops)
        items[:] = [item for item in items if not item.get_closest_marker("ops")]
