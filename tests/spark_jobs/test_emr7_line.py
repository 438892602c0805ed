"""The jobs on the emr-7.x line: the demo pipeline on pyspark 3.5.6 with Iceberg 1.10 (make test-ops).

The project's environment runs Spark 4.1 (emr-spark-8.1.0's line). emr-7.x stays selectable, so
the jobs keep to the API both lines share: `make venv-emr7 jars-emr7` builds a second
environment with emr-7.13.0's Spark 3.5.6, Iceberg 1.10.0 (Scala 2.12) and the numpy and pandas
of that line, and the demo's nightly run there must end green. pyiceberg in this environment (no
Spark) then reads every curated output and the quarantined bad rows, and the jobs' OpenLineage
events say which Spark ran them. The same landing data run on Spark 4.1 (this environment) gives
the same outputs and the same quarantine rows: values equal (floats to 1e-9 relative), KMeans
segments and graph communities equal up to relabelling.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from include.lake import read_date
from include.pipeline import DATASETS, OUTPUTS
from include.settings import PROJECT_ROOT

pytestmark = pytest.mark.ops

VENV = PROJECT_ROOT / ".venv-emr7"
JARS = PROJECT_ROOT / ".cache" / "jars-emr7"
DS, START = "2024-06-28", "2024-06-10"
# each output's key, and the columns that are labels (a cluster, a community): compared as the
# grouping of the keys they make, not by value
KEYS = {
    "referral_graph": ["customer_id"],
    "customer_features": ["customer_id"],
    "feature_correlation": ["feature_a", "feature_b"],
    "sales_rolling_30d": ["region", "date"],
    "customer_segments": ["customer_id"],
    "stock_daily": ["ticker", "date"],
    "clickstream_checkouts": ["user_id", "window_start"],
}
LABELS = {
    "customer_segments": "segment",
    "referral_graph": "community_id",
    "customer_features": "community_id",
}


def _grouping(rows: pd.DataFrame, key: list[str], label: str) -> set[frozenset]:
    return {frozenset(map(tuple, g[key].to_numpy())) for _, g in rows.groupby(label, dropna=False)}


def _assert_same_output(name: str, spark35: pd.DataFrame, spark41: pd.DataFrame) -> None:
    key = KEYS[name]
    a = spark35.sort_values(key).reset_index(drop=True)
    b = spark41.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b), name
    label = LABELS.get(name)
    if label:
        assert _grouping(a, key, label) == _grouping(b, key, label), name
        a, b = a.drop(columns=label), b.drop(columns=label)
    if "features" in a:
        assert np.allclose(np.vstack(a.pop("features")), np.vstack(b.pop("features")), rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12, obj=name)


def _run(python: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_the_demo_pipeline_runs_green_on_spark_3_5_with_the_outputs_of_spark_4_1(tmp_path):
    python = VENV / "bin" / "python"
    assert python.is_file(), f"{python} is missing: run `make venv-emr7 jars-emr7`"
    assert sorted(p.name for p in JARS.glob("*.jar")) == [
        "iceberg-spark-runtime-3.5_2.12-1.10.0.jar",
        "openlineage-spark_2.12-1.53.0.jar",
        "sqlite-jdbc-3.50.3.0.jar",
    ]
    env = {
        **os.environ,
        "PYSPARK_PYTHON": str(python),
        "SPARK_JOBS_JARS_DIR": str(JARS),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    versions = _run(
        str(python),
        "-c",
        "import numpy, pandas, pyspark; print(pyspark.__version__, numpy.__version__[0])",
        env=env,
    )
    assert versions.stdout.split() == ["3.5.6", "1"], versions.stderr

    lake = tmp_path / "lake"
    landing_copy = tmp_path / "spark41" / "lake"
    made = _run(
        str(python),
        *("-m", "scripts.generate_demo_data", "--lake", str(lake), "--start", START, "--end", DS),
        *("--scale", "0.01"),
        env=env,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    shutil.copytree(lake, landing_copy)  # the same landing files for the Spark 4.1 run below
    run = _run(
        str(python),
        *("-m", "scripts.run_dag_locally", "--lake", str(lake), "--ds", DS, "--history-start", START),
        *("--airflow-home", str(tmp_path / "airflow")),
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.rstrip().endswith("success"), run.stdout[-2000:]

    # what Spark 3.5 wrote, read by pyiceberg here: every curated output of the date has rows
    for output in OUTPUTS:
        rows = read_date(lake, "curated", output, DS)
        assert rows is not None, output
        assert len(rows) > 0, output
    # the demo's bad rows became quarantine rows with a reason (ANSI on: never a failed job)
    quarantined = [read_date(lake, "quarantine", name, DS) for name in DATASETS]
    reasons = [r for q in quarantined if q is not None for r in q["reject_reason"]]
    assert reasons, "no quarantined row"
    assert all(isinstance(r, str) and r for r in reasons)

    # and the jobs ran on Spark 3.5.6: the listener's events name the engine (Airflow's tasks'
    # events, in the same folder, name Airflow)
    engines = set()
    for path in (lake / "_lineage").rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            facet = json.loads(line)["run"].get("facets", {}).get("processing_engine")
            if facet:
                engines.add((facet["name"], facet["version"]))
    assert {version for name, version in engines if name.lower() == "spark"} == {"3.5.6"}

    # the same landing data on Spark 4.1 (this environment): the same outputs and quarantine
    env41 = {k: v for k, v in os.environ.items() if k != "SPARK_JOBS_JARS_DIR"}
    env41.update(PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    run41 = _run(
        sys.executable,
        *("-m", "scripts.run_dag_locally", "--lake", str(landing_copy), "--ds", DS, "--history-start", START),
        *("--airflow-home", str(tmp_path / "airflow41")),
        env=env41,
    )
    assert run41.returncode == 0, run41.stdout[-3000:] + run41.stderr[-3000:]
    for output in OUTPUTS:
        _assert_same_output(
            output, read_date(lake, "curated", output, DS), read_date(landing_copy, "curated", output, DS)
        )
    for name in DATASETS:
        spark35, spark41 = (
            read_date(lake, "quarantine", name, DS),
            read_date(landing_copy, "quarantine", name, DS),
        )
        assert (spark35 is None) == (spark41 is None), name
        if spark35 is not None:
            columns = list(spark35.columns)
            pd.testing.assert_frame_equal(
                spark35.sort_values(columns).reset_index(drop=True),
                spark41.sort_values(columns).reset_index(drop=True),
                obj=f"quarantine.{name}",
            )
