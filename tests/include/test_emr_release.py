"""Local Spark and Iceberg are the ones the configured EMR release runs; EMR gets Iceberg by configuration."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pyspark
import pytest

from include.cluster_profiles import job_flow_overrides
from include.emr_release import (
    DEFAULT_RELEASE,
    LATEST_7X_RELEASE,
    LINE_7,
    LINE_8,
    OPENLINEAGE_SPARK_JAR,
    OPENLINEAGE_SPARK_VERSION,
    RELEASES,
    ReleaseError,
    check_release,
    openlineage_jar,
)
from include.packaging import ENTRYPOINT_NAME, ENTRYPOINT_SOURCE
from include.settings import PROJECT_ROOT, Settings, load_settings

POM = PROJECT_ROOT / "jars" / "pom.xml"
NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_EMR_ENV = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://bucket/lake",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
    "PIPELINE_GLUE_DATABASE_PREFIX": "acme",
}
EMR = load_settings(_EMR_ENV)


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
    # the same Spark line as EMR's build, at its newest patch on PyPI: EMR runs 4.1.1-amzn-0,
    # local runs 4.1.x with x >= 1 (patches of a line fix bugs, they change no API)
    release = RELEASES[DEFAULT_RELEASE]
    pinned = tuple(map(int, _pinned("pyspark").split(".")))
    emr = tuple(map(int, release.spark_version.split(".")))
    assert pinned[:2] == emr[:2]
    assert pinned[2] >= emr[2]
    assert pyspark.__version__ == _pinned("pyspark")  # and the venv runs what is pinned


def _artifacts() -> set[str]:
    root = ET.parse(POM).getroot()  # noqa: S314 (the repository's own pom)
    return {d.find("m:artifactId", NS).text for d in root.iter(f"{{{NS['m']}}}dependency")}


def test_the_local_iceberg_runtime_is_the_iceberg_of_the_default_release():
    release = RELEASES[DEFAULT_RELEASE]
    assert _pom_property("iceberg.version") == release.iceberg_version == "1.11.0"
    # the runtime built for the release's Spark line and Scala: 4.1 on 2.13 (emr-spark-8.1.0)
    assert f"iceberg-spark-runtime-{release.spark_line}_{release.line.scala}" in _artifacts()
    assert "iceberg-spark-runtime-4.1_2.13" in _artifacts()


def test_hadoop_aws_is_the_hadoop_pyspark_bundles():
    # s3a must be the Hadoop version of pyspark's own hadoop-client jars
    bundled = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    assert len(bundled) == 1
    assert bundled[0].name == f"hadoop-client-api-{_pom_property('hadoop.version')}.jar"


def test_the_openlineage_listener_is_one_version_built_for_each_lines_scala():
    # the pom's version is the one EMR steps name (include.emr_release); emr-spark-8.x runs the
    # Scala 2.13 build (the local one too), emr-7.x the 2.12 build
    assert _pom_property("openlineage.version") == OPENLINEAGE_SPARK_VERSION
    assert {"openlineage-spark_2.13", "openlineage-spark_2.12"} <= _artifacts()
    assert f"openlineage-spark_2.13-{OPENLINEAGE_SPARK_VERSION}.jar" == OPENLINEAGE_SPARK_JAR
    assert openlineage_jar("emr-spark-8.1.0") == "openlineage-spark_2.13-1.53.0.jar"
    assert openlineage_jar("emr-7.13.0") == "openlineage-spark_2.12-1.53.0.jar"


def test_each_line_names_its_scala_and_python():
    assert RELEASES["emr-spark-8.1.0"].line is LINE_8
    assert (LINE_8.scala, LINE_8.python) == ("2.13", "3.11")
    assert RELEASES[LATEST_7X_RELEASE].line is LINE_7
    assert (LINE_7.scala, LINE_7.python) == ("2.12", "3.9")
    # the Python chosen for a line is on every release of it listed here
    for release in RELEASES.values():
        assert release.line.python in release.pythons, release.label


@pytest.mark.parametrize(
    "label", ["emr-spark-8.1.0", "emr-spark-8.0.0", "emr-7.13.0", "emr-7.14.0", "emr-7.6.0"]
)
def test_releases_in_standard_support_are_accepted(label):
    assert check_release(label) == label


@pytest.mark.parametrize(
    ("label", "says"),
    [
        ("emr-7.5.0", "its standard support ended 2026-11-20"),
        ("emr-7.3.0", "its standard support ended 2026-10-15"),
        ("emr-7.1.0", "its standard support ended by 2026-11-20 (when emr-7.5.0's did)"),
        ("emr-6.15.0", "its standard support ended by 2026-11-20"),
    ],
)
def test_a_release_older_than_the_oldest_in_standard_support_is_refused_with_its_date(label, says):
    with pytest.raises(ReleaseError) as refused:
        check_release(label)
    message = str(refused.value)
    assert says in message
    assert "the oldest release in standard support is emr-7.6.0" in message
    assert "emr-spark-8.1.0 (the default, supported until 2029-09-07)" in message


@pytest.mark.parametrize(
    "label", ["emr-8.1.0", "emr-spark-7.13.0", "emr-spark-9.0.0", "spark-8.1.0", "emr-7.13"]
)
def test_what_is_not_a_release_of_either_line_is_refused(label):
    with pytest.raises(ReleaseError):
        check_release(label)


def test_an_unsupported_release_fails_the_settings_not_a_cluster():
    said = re.escape("PIPELINE_EMR_RELEASE: 'emr-7.5.0': its standard support ended 2026-11-20")
    with pytest.raises(ValueError, match=said):
        load_settings(
            {
                "PIPELINE_TARGET": "emr",
                "PIPELINE_LAKE": "s3://bucket/lake",
                "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
                "PIPELINE_EMR_RELEASE": "emr-7.5.0",
            }
        )


def _configurations(settings: Settings) -> tuple[dict, dict]:
    request = job_flow_overrides("dev", settings, name="n", tags={})
    return request, {c["Classification"]: c for c in request["Configurations"]}


def test_the_release_decides_the_clusters_python_applications_and_ansi_mode():
    seven = load_settings({**_EMR_ENV, "PIPELINE_EMR_RELEASE": "emr-7.13.0"})
    for settings, python in ((EMR, "/usr/bin/python3.11"), (seven, "/usr/bin/python3.9")):
        request, by_class = _configurations(settings)
        assert request["ReleaseLabel"] == settings.release_label
        assert request["Applications"] == [{"Name": "Spark"}]
        assert by_class["spark-env"]["Configurations"][0]["Properties"] == {"PYSPARK_PYTHON": python}
        spark = by_class["spark-defaults"]["Properties"]
        assert spark["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == python
        assert spark["spark.executorEnv.PYSPARK_PYTHON"] == python
        # ANSI SQL on both lines (8.x's default, 7.x's by configuration), as local runs
        assert spark["spark.sql.ansi.enabled"] == "true"


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
    """vermin's verdict: does the code run on the oldest Python PySpark runs on in a release we list?"""
    oldest = min((r.line.python for r in RELEASES.values()), key=lambda v: tuple(map(int, v.split("."))))
    assert oldest == "3.9"  # emr-7.x's, while 7.x stays selectable
    vermin = Path(sys.executable).with_name("vermin")
    return subprocess.run(
        [str(vermin), f"-t={oldest}-", "--violations", "--no-tips", "--no-parse-comments", *paths],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_spark_jobs_and_their_entrypoint_run_on_the_releases_system_python(tmp_path):
    # PySpark on emr-7.x nodes runs /usr/bin/python3.9 (cluster_profiles names it): neither the jobs
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
