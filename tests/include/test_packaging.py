"""The code bundle: reproducible, versioned by content, and runnable the way an EMR step runs it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from include.packaging import ENTRYPOINT_NAME, PACKAGE_DIR, build_bundle
from spark_jobs.catalog import EXTENSIONS, catalog_conf
from spark_jobs.session import local_jars
from tests.harness.lake_files import write_landing_csv
from tests.harness.lake_tables import read_table

VENV_BIN = Path(sys.executable).parent


def test_bundle_is_byte_for_byte_reproducible_and_named_by_content():
    first, second = build_bundle(), build_bundle()
    assert first.zip_bytes == second.zip_bytes
    assert first.version == second.version
    assert first.zip_name == f"spark_jobs-{first.version}.zip"


def test_bundle_holds_every_module_of_spark_jobs_and_nothing_else():
    names = set(zipfile.ZipFile(io.BytesIO(build_bundle().zip_bytes)).namelist())
    expected = {
        f"spark_jobs/{p.relative_to(PACKAGE_DIR).as_posix()}"
        for p in PACKAGE_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert names == expected
    assert "spark_jobs/cli.py" in names


@pytest.mark.ops  # a real spark-submit of the shipped zip: make test-ops
def test_spark_submit_runs_a_job_from_the_zip_in_an_empty_directory(tmp_path):
    """Exactly the EMR step's command line, with nothing of the project importable."""
    bundle = build_bundle()
    code_dir, workdir, lake_root = tmp_path / "code", tmp_path / "empty", tmp_path / "lake"
    workdir.mkdir()
    zip_path, entrypoint = bundle.write(code_dir)
    lake = lake_root.as_uri()
    write_landing_csv(
        lake,
        "customers",
        "2024-06-30",
        ["customer_id", "region", "signup_date"],
        [("c1", "EU", "2024-01-02"), ("c2", "NA", "2024-03-04"), ("c2", "NA", "2024-03-04")],
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYSPARK_PYTHON", "SPARK_HOME"}}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYTHONNOUSERSITE="1")
    # What an EMR cluster's configuration gives every spark-submit: Iceberg on the classpath and
    # the catalog `lake` (here the local lake's, from the same function the cluster's comes from).
    conf = {"spark.jars": ",".join(local_jars()), "spark.sql.extensions": EXTENSIONS, **catalog_conf(lake)}
    (lake_root / "_catalog").mkdir(parents=True)

    proc = subprocess.run(
        [
            str(VENV_BIN / "spark-submit"),
            "--master",
            "local[1]",
            "--conf",
            "spark.ui.enabled=false",
            *[a for key, value in conf.items() for a in ("--conf", f"{key}={value}")],
            "--py-files",
            str(zip_path),
            str(entrypoint),
            "ingest",
            "--dataset",
            "customers",
            "--ds",
            "2024-06-30",
            "--lake",
            lake,
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert entrypoint.name == ENTRYPOINT_NAME
    out = read_table(lake, "processed", "customers", "2024-06-30")
    assert sorted(out["customer_id"]) == ["c1", "c2"]
    assert "SPARK_JOBS_METRICS" in proc.stdout
