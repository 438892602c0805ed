"""The nightly run both targets' tests share: its date, its history and its seeded landing files.

The local target's run (the `local_nightly` fixture of tests/dags/) is read by the tests that
only check what it did; the emr target's run of the same commands on S3
(tests/dags/test_emr_spark.py, `make test-ops`) compares its tables with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.dag_runs import DagRunRecord

NIGHTLY_DS = "2024-06-28"  # a Friday: the market was open, so stock_daily has rows
NIGHTLY_HISTORY_START = "2024-06-25"  # three published dates before NIGHTLY_DS: the audit has history
NIGHTLY_SEED = 5
NIGHTLY_SCALE = 0.002
# The local runs' Spark application (spark_jobs.server) sized for this data, as the tests' own
# session is: 8 partitions per shuffle (the local default) are 8 tasks for a few hundred rows.
LOCAL_RUN_SHUFFLE_PARTITIONS = "2"


@dataclass
class LocalNightly:
    lake: Path
    run: DagRunRecord
    dag: Any  # the DAG object dag.test() ran, as its file defines it (Deadline Alert included)


def demo_landing(root: Path) -> Path:
    """The landing files both targets' nightly runs read (same seed, same days)."""
    from include.demo_data import generate

    generate(str(root), NIGHTLY_HISTORY_START, NIGHTLY_DS, scale=NIGHTLY_SCALE, seed=NIGHTLY_SEED)
    return root
