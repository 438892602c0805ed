"""Local Spark and Iceberg are the ones the configured EMR release runs; EMR gets Iceberg by configuration."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from include.cluster_profiles import job_flow_overrides
from include.emr_release import DEFAULT_RELEASE, OPENLINEAGE_SPARK_JAR, OPENLINEAGE_SPARK_VERSION, RELEASES
from include.packaging import ENTRYPOINT_NAME, ENTRYPOINT_SOURCE
from include.settings import PROJECT_ROOT, Settings, load_settings

POM = PROJECT_ROOT / "jars" / "pom.xml"
NS = {"m": "http://maven.apache.org/POM/4.0.0"}
EMR = load_settings(
    {
        "PIPELINE_TARGET": "emr",
        "PIPELINE_LAKE": "s3://bucket/lake",
        "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
        "PIPELINE_GLUE_DATABASE_PREFIX": "acme",
    }
)


def _pom_property(name: str) -> str:
    root = ET.parse(POM).getroot()  # noqa: S314 (the repository's own pom)
    return root.find(f"m:properties/m:{name}", NS).text


def _pinned(package: str) -> str:
    text = (PROJECT_ROOT / "requirements.txt").read_text()
    return re.search(rf"^{package}==(\S+)$", text, re.MULTILINE).group(1)


def test_the_default_release_is_the_settings_default():
    assert Settings().release_label == DEFAULT_RELEASE
    assert EMR.release_label == DEFAULT_RELEASE


def test_pyspark_is_the_spark_of_the_default_release():
    assert _pinned("pyspark") == RELEASES[DEFAULT_RELEASE].spark_version


def test_the_local_iceberg_runtime_is_the_iceberg_of_the_default_release():
    release = RELEASES[DEFAULT_RELEASE]
    assert _pom_property("iceberg.version") == release.iceberg_version
    root = ET.parse(POM).getroot()  # noqa: S314 (the repository's own pom)
    artifacts = {d.find("m:artifactId", NS).text for d in root.iter(f"{{{NS['m']}}}dependency")}
    # the runtime built for the release's Spark line and Scala 2.12 (every EMR 7.x)
    spark_line = ".".join(release.spark_version.split(".")[:2])
    assert f"iceberg-spark-runtime-{spark_line}_2.12" in artifacts


def test_the_openlineage_listener_is_one_pin_for_both_targets():
    # the pom's version is the one EMR steps name (include.emr_release), built for Scala 2.12
    assert _pom_property("openlineage.version") == OPENLINEAGE_SPARK_VERSION
    root = ET.parse(POM).getroot()  # noqa: S314 (the repository's own pom)
    artifacts = {d.find("m:artifactId", NS).text for d in root.iter(f"{{{NS['m']}}}dependency")}
    assert "openlineage-spark_2.12" in artifacts
    assert f"openlineage-spark_2.12-{OPENLINEAGE_SPARK_VERSION}.jar" == OPENLINEAGE_SPARK_JAR


def test_emr_enables_its_own_iceberg_and_names_the_glue_catalog_as_local_runs_name_theirs():
    request = job_flow_overrides("dev", EMR, name="n", tags={})
    by_class = {c["Classification"]: c["Properties"] for c in request["Configurations"]}
    assert by_class["iceberg-defaults"] == {"iceberg.enabled": "true"}
    spark = by_class["spark-defaults"]
    assert spark["spark.sql.catalog.lake"] == "org.apache.iceberg.spark.SparkCatalog"
    assert spark["spark.sql.catalog.lake.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    assert spark["spark.sql.catalog.lake.warehouse"] == "s3://bucket/lake/warehouse"
    assert spark["spark.sql.extensions"].endswith("IcebergSparkSessionExtensions")
    assert {k: v for k, v in spark.items() if k.startswith("spark.pipeline.namespace.")} == {
        "spark.pipeline.namespace.processed": "acme_processed",
        "spark.pipeline.namespace.quarantine": "acme_quarantine",
        "spark.pipeline.namespace.curated": "acme_curated",
    }
    # nothing is shipped to the cluster for Iceberg: no jars, no packages
    assert not {"spark.jars", "spark.jars.packages"} & set(spark)


# ---- the cluster's Python ------------------------------------------------------------------
def _vermin(*paths: str) -> subprocess.CompletedProcess:
    """vermin's verdict: does the code run on the oldest system Python of the releases we list?"""
    oldest = min((r.pythons[0] for r in RELEASES.values()), key=lambda v: tuple(map(int, v.split("."))))
    vermin = Path(sys.executable).with_name("vermin")
    return subprocess.run(
        [str(vermin), f"-t={oldest}-", "--violations", "--no-tips", "--no-parse-comments", *paths],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_spark_jobs_and_their_entrypoint_run_on_the_releases_system_python(tmp_path):
    # PySpark on the nodes runs /usr/bin/python3.9 (cluster_profiles names it): neither the jobs
    # nor the step entrypoint may use what a later Python added
    entrypoint = tmp_path / ENTRYPOINT_NAME
    entrypoint.write_text(ENTRYPOINT_SOURCE)
    verdict = _vermin(str(PROJECT_ROOT / "spark_jobs"), str(entrypoint))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_vermin_would_catch_a_job_written_for_a_later_python(tmp_path):
    later = tmp_path / "later.py"
    later.write_text("def f(xs, ys):\n    return list(zip(xs, ys, strict=True))\n")  # 3.10
    verdict = _vermin(str(later))
    assert verdict.returncode != 0
    assert "zip(strict)" in verdict.stdout
