"""What each EMR 7.x release ships that the pipeline depends on, from AWS's EMR Release Guide.

The default release is the newest one whose Spark and Iceberg the local runs use too: pyspark in
requirements.txt and Iceberg's Spark runtime in jars/pom.xml are pinned to DEFAULT_RELEASE's
versions (a test keeps the three in step), so `make test` runs the code EMR runs. The `-amzn`
builds are EMR's own patches of those open-source versions.

Sources: the Release Guide pages "Spark release history", "Iceberg release history" and
"Amazon EMR release 7.13.0" (read 2026-11-30).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    label: str
    spark: str  # EMR's build, e.g. 3.5.6-amzn-2
    iceberg: str  # EMR's build, e.g. 1.10.0-amzn-1
    pythons: tuple[str, ...]  # on the nodes; the first is the system default
    standard_support_until: str | None = None

    @property
    def spark_version(self) -> str:
        """The open-source Spark version EMR's build is based on."""
        return self.spark.split("-amzn")[0]

    @property
    def iceberg_version(self) -> str:
        """The open-source Iceberg version EMR's build is based on."""
        return self.iceberg.split("-amzn")[0]


RELEASES: dict[str, Release] = {
    r.label: r
    for r in (
        Release("emr-7.10.0", "3.5.5-amzn-1", "1.8.1-amzn-0", ("3.9", "3.11")),
        Release("emr-7.11.0", "3.5.6-amzn-0", "1.9.1-amzn-0", ("3.9", "3.11")),
        Release("emr-7.12.0", "3.5.6-amzn-1", "1.10.0-amzn-0", ("3.9", "3.11")),
        Release("emr-7.13.0", "3.5.6-amzn-2", "1.10.0-amzn-1", ("3.9", "3.11"), "2028-04-21"),
    )
}

# Graviton (arm64) instance families every EMR 7.x release runs on (EMR Management Guide,
# "Supported instance types"); the prod profile's fleets choose among these.
GRAVITON_FAMILIES = frozenset({"m6g", "c6g", "r6g", "m7g", "c7g", "r7g"})

# emr-7.14.0 (2026-09-08) ships Iceberg 1.10.1-amzn-1; its Spark build could not be confirmed
# from the release guide when this was written, so 7.13.0 stays the default until it is.
DEFAULT_RELEASE = "emr-7.13.0"

# No EMR 7 release bundles an OpenLineage Spark listener: the pipeline ships this one (jars/pom.xml,
# uploaded beside the code zip) to every release. 1.53.0 is built for Spark 3.x on Scala 2.12,
# the Spark of every EMR 7 release.
OPENLINEAGE_SPARK_VERSION = "1.53.0"
OPENLINEAGE_SPARK_JAR = f"openlineage-spark_2.12-{OPENLINEAGE_SPARK_VERSION}.jar"
