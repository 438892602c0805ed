"""What each EMR release ships that the pipeline depends on, from AWS's EMR Release Guide.

Two lines of releases can run the pipeline:

- **emr-spark-8.x**, "AWS runtime for Apache Spark": Spark 4 on Scala 2.13, JDK 17, ANSI SQL on
  by default. **emr-spark-8.1.0** is the default: a Long Term Support release (standard support
  until 2029-09-07) with Spark 4.1.1-amzn-0 and Iceberg 1.11.0-amzn-0.
- **emr-7.x**: Spark 3.5 on Scala 2.12, still selectable (`PIPELINE_EMR_RELEASE=emr-7.13.0`);
  `make test-ops` runs the demo pipeline on its Spark and Iceberg in a second environment.

The default release is the one whose Spark and Iceberg the local runs use too: pyspark in
requirements.txt and Iceberg's Spark runtime in jars/pom.xml are pinned to DEFAULT_RELEASE's
versions (a test keeps the three in step), so `make test` runs the code EMR runs. The `-amzn`
builds are EMR's own patches of those open-source versions.

Everything a cluster gets that depends on the release follows from its line here: the
applications it is asked for, the Python PySpark runs on, the OpenLineage listener built for its
Scala (include/cluster_profiles.py, include/packaging.py).

Sources: the Release Guide pages "Amazon runtime for Apache Spark (emr-spark-8.1.0)" and
"(emr-spark-8.0.0)", "Amazon EMR release 7.3.0" to "7.14.0" (their supported lifecycles),
"Spark release history", "Iceberg release history" (read 2026-12-05).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """What every release of one line shares."""

    name: str
    scala: str  # the Scala binary version Spark is built for: the listener jar's suffix
    # The interpreter PySpark runs on, one of the line's Pythons (`/usr/bin/python<python>` on the
    # nodes, named in the cluster's spark-env and spark-defaults); spark_jobs/ is held to it.
    python: str
    applications: tuple[str, ...]  # what RunJobFlow asks the release to install


LINE_7 = Line(
    "emr-7.x",
    scala="2.12",
    # The system Python of every 7.x node (Amazon Linux 2023's); 3.11 sits beside it since 7.1.
    # Kept while 7.x is selectable, so spark_jobs/ stays runnable on 3.9 (vermin checks it).
    python="3.9",
    # Iceberg is switched on by the `iceberg-defaults` classification, not as an application.
    applications=("Spark",),
)
LINE_8 = Line(
    "emr-spark-8.x",
    scala="2.13",
    # 8.1.0 ships Python 3.11 and 3.13 (8.0.0 also 3.12) and no 3.9. 3.11, not 3.13: it is the
    # Python the project itself runs (Airflow, `make test`, the local Spark workers), so every
    # test runs the jobs on the interpreter the nodes run them on, and it is the Python the
    # emr-7.x nodes also carry. pyspark 4.1 and numpy 2 support both; the jobs' code keeps to
    # 3.9 syntax anyway while 7.x stays selectable. 3.11 is supported until 2027-10.
    python="3.11",
    # The release offers AmazonCloudWatchAgent, Delta, Hudi, Iceberg, JupyterEnterpriseGateway,
    # Livy and Spark; the pipeline needs Spark, with Iceberg switched on by `iceberg-defaults`
    # as on 7.x.
    applications=("Spark",),
)


@dataclass(frozen=True)
class Release:
    label: str
    spark: str  # EMR's build, e.g. 4.1.1-amzn-0
    iceberg: str  # EMR's build, e.g. 1.11.0-amzn-0
    pythons: tuple[str, ...]  # on the nodes
    initial_release: str | None = None
    standard_support_until: str | None = None

    @property
    def spark_version(self) -> str:
        """The open-source Spark version EMR's build is based on."""
        return self.spark.split("-amzn")[0]

    @property
    def iceberg_version(self) -> str:
        """The open-source Iceberg version EMR's build is based on."""
        return self.iceberg.split("-amzn")[0]

    @property
    def spark_line(self) -> str:
        """`4.1`, `3.5`: the Spark line Iceberg's runtime artifact is named after."""
        return ".".join(self.spark_version.split(".")[:2])

    @property
    def line(self) -> Line:
        return line_of(self.label)


RELEASES: dict[str, Release] = {
    r.label: r
    for r in (
        Release("emr-7.10.0", "3.5.5-amzn-1", "1.8.1-amzn-0", ("3.9", "3.11"), "2025-08-15", "2027-08-15"),
        Release("emr-7.11.0", "3.5.6-amzn-0", "1.9.1-amzn-0", ("3.9", "3.11")),
        Release("emr-7.12.0", "3.5.6-amzn-1", "1.10.0-amzn-0", ("3.9", "3.11")),
        Release("emr-7.13.0", "3.5.6-amzn-2", "1.10.0-amzn-1", ("3.9", "3.11"), "2026-04-21", "2028-04-21"),
        Release(
            "emr-spark-8.0.0",
            "4.0.2-amzn-0",
            "1.10.1-amzn-0",
            ("3.11", "3.12", "3.13"),
            "2026-05-21",
            "2027-05-20",
        ),
        Release(
            "emr-spark-8.1.0", "4.1.1-amzn-0", "1.11.0-amzn-0", ("3.11", "3.13"), "2026-09-08", "2029-09-07"
        ),
    )
}

# Graviton (arm64) instance families every EMR 7.x and 8.x release runs on (EMR Management
# Guide, "Supported instance types"); the prod profile's fleets choose among these.
GRAVITON_FAMILIES = frozenset({"m6g", "c6g", "r6g", "m7g", "c7g", "r7g"})

# The LTS release of the Spark 4 line: its Spark (4.1) and Iceberg (1.11) are the local runs'.
DEFAULT_RELEASE = "emr-spark-8.1.0"
# The newest 7.x release whose Spark and Iceberg are known here, for those who stay on 7.x
# (emr-7.14.0 ships Iceberg 1.10.1-amzn-1; its Spark build could not be confirmed).
LATEST_7X_RELEASE = "emr-7.13.0"

# Standard support, as the Release Guide stated it on 2026-12-05: the newest 7.x releases whose
# support had ended, and the oldest still in it. A release older than OLDEST_SUPPORTED is refused
# when the DAGs are parsed (include/settings.py), with the date its support ended.
SUPPORT_ENDED = {"emr-7.3.0": "2026-10-15", "emr-7.4.0": "2026-11-12", "emr-7.5.0": "2026-11-20"}
OLDEST_SUPPORTED = "emr-7.6.0"

# No EMR release bundles an OpenLineage Spark listener: the pipeline ships one (jars/pom.xml,
# uploaded beside the code zip) built for the release's Scala. 1.53.0 runs Spark 3.5 (2.12) and
# Spark 4.x (2.13).
OPENLINEAGE_SPARK_VERSION = "1.53.0"

_LABEL = re.compile(r"^emr-(?:(?P<spark>spark)-)?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")


class ReleaseError(ValueError):
    """A release label the pipeline does not run on."""


def version_of(label: str) -> tuple[int, int, int]:
    """`emr-7.13.0` -> (7, 13, 0); `emr-spark-8.1.0` -> (8, 1, 0); ReleaseError otherwise."""
    match = _LABEL.match(label)
    if not match:
        raise ReleaseError(f"{label!r} is not an EMR release label (emr-7.x.y or emr-spark-8.x.y)")
    major = int(match["major"])
    # the Spark 4 line is named emr-spark-8.x; 7.x and older are emr-N.x
    if (major >= 8) != bool(match["spark"]):
        raise ReleaseError(f"{label!r} is not an EMR release label (emr-7.x.y or emr-spark-8.x.y)")
    return major, int(match["minor"]), int(match["patch"])


def line_of(label: str) -> Line:
    """The line of a release label (ReleaseError for one outside 7.x and 8.x)."""
    major = version_of(label)[0]
    if major == 7:
        return LINE_7
    if major == 8:
        return LINE_8
    raise ReleaseError(f"{label!r}: the pipeline runs on emr-spark-8.x (Spark 4) or emr-7.x (Spark 3.5)")


def check_release(label: str) -> str:
    """`label` if the pipeline can run on it, else ReleaseError saying why (parse time).

    Refused: what is not an EMR release label, a line other than 7.x and 8.x, and a release
    older than OLDEST_SUPPORTED, with the date its standard support ended.
    """
    version = version_of(label)
    oldest = version_of(OLDEST_SUPPORTED)
    if version < oldest:
        ended = SUPPORT_ENDED.get(label)
        newest_ended = max(SUPPORT_ENDED, key=version_of)
        when = (
            f"its standard support ended {ended}"
            if ended
            else f"its standard support ended by {SUPPORT_ENDED[newest_ended]} (when {newest_ended}'s did)"
        )
        default = RELEASES[DEFAULT_RELEASE]
        raise ReleaseError(
            f"{label!r}: {when}; the oldest release in standard support is {OLDEST_SUPPORTED}. Use "
            f"{DEFAULT_RELEASE} (the default, supported until {default.standard_support_until}) or "
            f"{LATEST_7X_RELEASE} (Spark 3.5, until {RELEASES[LATEST_7X_RELEASE].standard_support_until})"
        )
    line_of(label)
    return label


def cluster_python(label: str) -> str:
    """The interpreter PySpark runs on in a release: its line's Python on the nodes."""
    return f"/usr/bin/python{line_of(label).python}"


def openlineage_jar(label: str) -> str:
    """The OpenLineage listener jar a release's Spark runs (built for its Scala)."""
    return f"openlineage-spark_{line_of(label).scala}-{OPENLINEAGE_SPARK_VERSION}.jar"


# The listener of the default release: the one local runs load too (spark_jobs/session.py).
OPENLINEAGE_SPARK_JAR = openlineage_jar(DEFAULT_RELEASE)
