"""OpenLineage for one job run: the Spark listener per job, its events in the lake.

Every job run is one OpenLineage run of job `spark_jobs_<job>[_<dataset>]`, START then COMPLETE
(or FAIL), whose parent is the Airflow task that ran it (`spark.openlineage.parent*`, injected
by Airflow's OpenLineage provider: on EMR into the step's spark-submit, locally by the
operator). The OpenLineage Spark listener (`openlineage-spark_2.13`, pinned in jars/pom.xml)
adds one child run per Spark SQL execution, with the tables and files it read and wrote and
the column lineage of each output.

The listener is registered here, per job, not by `spark.extraListeners`: a local run's warm
Spark application (spark_jobs/server.py) runs every step of a pipeline run, and each step needs
its own run id and parent. The same code runs under spark-submit on EMR.

Settings come as Spark properties `spark.openlineage.*` (spark-submit `--conf`, or the
operator's per-job properties): with no `spark.openlineage.transport.type`, nothing happens.
Transport `file` writes the job's events to a local file first and copies it, when the job
ends, to `LAKE/_lineage/spark/dt=<ds>/<run>/<job>.<run id>.jsonl` (`spark_jobs.paths`), so
the file works on EMR's S3 too. Transport `http` (Marquez, DataHub) is probed first: an
endpoint that does not answer costs one warning, and the events go to the file instead.
Lineage never fails a job: every problem here is one warning and the job goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import secrets
import socket
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping

import pyspark
from pyspark.sql import SparkSession

from spark_jobs.catalog import CATALOG
from spark_jobs.paths import lineage_uri

log = logging.getLogger("spark_jobs.lineage")

PREFIX = "spark.openlineage."
LISTENER = "io.openlineage.spark.agent.OpenLineageSparkListener"
PRODUCER = "https://github.com/customer-market-analytics/spark_jobs"
_RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_ERROR_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)
_PARENT_SCHEMA = "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json#/$defs/ParentRunFacet"
PROBE_SECONDS = 3.0
_ACTIVE: list[str] = []  # the run id of the job whose lineage is being collected in this process


def job_name(job: str, dataset: str | None = None) -> str:
    """The OpenLineage job name of a job (already in the listener's normal form: no dots)."""
    return f"spark_jobs_{job}_{dataset}" if dataset else f"spark_jobs_{job}"


def uuid7() -> str:
    """A time-ordered run id (RFC 9562 UUIDv7), as OpenLineage recommends for run ids."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def properties(spark: SparkSession, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's `spark.openlineage.*` settings: the application's, overridden by `extra`."""
    found = {k: v for k, v in spark.sparkContext.getConf().getAll() if k.startswith(PREFIX)}
    found.update({k: str(v) for k, v in (extra or {}).items() if k.startswith(PREFIX)})
    return found


def endpoint_answers(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether something accepts TCP connections at the URL's host and port."""
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


class StepLineage:
    """The lineage of one job run; `start()` before the job's work, `end()` after it."""

    def __init__(
        self,
        spark: SparkSession,
        props: Mapping[str, str],
        *,
        name: str,
        lake: str,
        ds: object,
        run: str | None,
    ) -> None:
        self.spark = spark
        self.props = dict(props)
        self.name = name
        self.run_id = uuid7()
        # where a `file` transport's events end up
        self.lake_file = lineage_uri(lake, ds, run, name, self.run_id)
        self.local_file: str | None = None
        self.listener = None

    # -- the two calls a job makes -------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return (
            bool(self.props.get(PREFIX + "transport.type")) and self.props.get(PREFIX + "disabled") != "true"
        )

    def start(self) -> None:
        if not self.enabled:
            return
        try:
            self._start()
        except Exception as exc:  # lineage never fails a job
            log.warning("lineage: off for this job (%s: %s)", type(exc).__name__, exc)
            self._drop_listener()
            if self.local_file:  # nothing will be copied from it
                with contextlib.suppress(OSError):
                    os.unlink(self.local_file)
                self.local_file = None

    def end(self, error: str | None = None) -> None:
        if self.listener is None:
            return
        try:
            self._end(error)
        except Exception as exc:
            log.warning("lineage: the job's last events were not written (%s: %s)", type(exc).__name__, exc)
            self._drop_listener()
        self._copy_to_lake()

    # -- the work ------------------------------------------------------------------------------
    def _start(self) -> None:
        sc = self.spark.sparkContext
        jvm = sc._jvm
        listener_class = functools.reduce(getattr, LISTENER.split("."), jvm)
        if not hasattr(listener_class, "_fqn"):  # a JavaPackage: the jar is not on the classpath
            raise RuntimeError(f"{LISTENER} is not on the classpath (the openlineage-spark jar)")
        transport = self.props.get(PREFIX + "transport.type")
        url = self.props.get(PREFIX + "transport.url", "")
        if transport == "http" and not endpoint_answers(url):
            log.warning("lineage: %s does not answer; this job's events go to %s", url, self.lake_file)
            transport = "file"
            self.props = {k: v for k, v in self.props.items() if not k.startswith(PREFIX + "transport.")}
            self.props[PREFIX + "transport.type"] = "file"
        if transport == "file":
            handle, self.local_file = tempfile.mkstemp(prefix="openlineage-", suffix=".jsonl")
            os.close(handle)
            self.props[PREFIX + "transport.location"] = self.local_file
        conf = sc._jsc.sc().conf().clone()
        for key, value in self.props.items():
            conf.set(key, value)
        conf.set(PREFIX + "appName", self.name)
        conf.set(PREFIX + "applicationRunId", self.run_id)
        self.listener = listener_class(conf)
        sc._jsc.sc().addSparkListener(self.listener)
        option = jvm.scala.Option
        started = jvm.org.apache.spark.scheduler.SparkListenerApplicationStart(
            self.name,
            option.apply(sc.applicationId),
            int(time.time() * 1000),
            sc.sparkUser(),
            option.apply(None),
            option.apply(None),
            option.apply(None),
        )
        self.listener.onApplicationStart(started)  # the job's START, with its parent
        _ACTIVE[:] = [self.run_id]
        present_catalog_to_listener(self.spark)
        log.info("lineage: run %s of %s (%s)", self.run_id, self.name, transport)

    def _end(self, error: str | None) -> None:
        sc = self.spark.sparkContext
        with contextlib.suppress(Exception):  # the SQL executions' events first (the bus is async)
            sc._jsc.sc().listenerBus().waitUntilEmpty(30_000)
        if error is None:
            now = int(time.time() * 1000)
            application_end = sc._jvm.org.apache.spark.scheduler.SparkListenerApplicationEnd
            if pyspark.__version__.startswith("3."):
                ended = application_end(now)
            else:  # Spark 4 added the exit code (a Scala default argument, which py4j cannot use)
                ended = application_end(now, sc._jvm.scala.Option.apply(None))
            self.listener.onApplicationEnd(ended)  # the job's COMPLETE; closes its client
            self._drop_listener()
        else:
            # The listener only knows COMPLETE for an application: a failed job says FAIL itself.
            self._drop_listener()
            self._emit(self._fail_event(error))

    def _drop_listener(self) -> None:
        _ACTIVE.clear()
        if self.listener is not None:
            with contextlib.suppress(Exception):
                self.spark.sparkContext._jsc.sc().removeSparkListener(self.listener)
            with contextlib.suppress(Exception):
                self.listener.close()
        self.listener = None

    def _fail_event(self, error: str) -> dict:
        p = self.props
        facets: dict = {
            "errorMessage": {
                "_producer": PRODUCER,
                "_schemaURL": _ERROR_SCHEMA,
                "message": error[:4000],
                "programmingLanguage": "python",
            }
        }
        if p.get(PREFIX + "parentRunId"):
            facets["parent"] = {
                "_producer": PRODUCER,
                "_schemaURL": _PARENT_SCHEMA,
                "run": {"runId": p[PREFIX + "parentRunId"]},
                "job": {
                    "namespace": p.get(PREFIX + "parentJobNamespace", ""),
                    "name": p.get(PREFIX + "parentJobName", ""),
                },
                "root": {
                    "run": {"runId": p.get(PREFIX + "rootParentRunId", p[PREFIX + "parentRunId"])},
                    "job": {
                        "namespace": p.get(
                            PREFIX + "rootParentJobNamespace", p.get(PREFIX + "parentJobNamespace", "")
                        ),
                        "name": p.get(PREFIX + "rootParentJobName", p.get(PREFIX + "parentJobName", "")),
                    },
                },
            }
        return {
            "eventType": "FAIL",
            # when the job failed: the event's own time, as the listener stamps its events (a
            # record of the run, never a date of the data)
            "eventTime": dt.datetime.now(dt.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "producer": PRODUCER,
            "schemaURL": _RUN_EVENT_SCHEMA,
            "run": {"runId": self.run_id, "facets": facets},
            "job": {"namespace": p.get(PREFIX + "namespace", "default"), "name": self.name, "facets": {}},
            "inputs": [],
            "outputs": [],
        }

    def _emit(self, event: dict) -> None:
        line = json.dumps(event, separators=(",", ":"))
        if self.local_file:
            with open(self.local_file, "a", encoding="utf-8") as out:
                out.write(line + "\n")
            return
        url = self.props[PREFIX + "transport.url"].rstrip("/") + self.props.get(
            PREFIX + "transport.endpoint", "/api/v1/lineage"
        )
        request = urllib.request.Request(  # noqa: S310 (the deployment's own lineage endpoint)
            url, data=line.encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=PROBE_SECONDS):  # noqa: S310
            pass

    def _copy_to_lake(self) -> None:
        if not self.local_file:
            return
        from spark_jobs.common import write_text

        try:
            with open(self.local_file, encoding="utf-8") as events:
                text = events.read()
            if text:
                write_text(self.spark, self.lake_file, text)
        except Exception as exc:
            log.warning("lineage: could not copy the events to %s (%s)", self.lake_file, exc)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.local_file)
            self.local_file = None


# ---- the local catalog, as the listener sees it ----------------------------------------------
_TYPE_KEY = f"spark.sql.catalog.{CATALOG}.type"
_IMPL_KEY = f"spark.sql.catalog.{CATALOG}.catalog-impl"


def _is_jdbc(spark: SparkSession) -> bool:
    return spark.conf.get(_IMPL_KEY, "").endswith("JdbcCatalog")


def present_catalog_to_listener(spark: SparkSession) -> None:
    """Let the listener name the local catalog's tables.

    OpenLineage 1.53 names an Iceberg table by its catalog's `type` setting and knows no JDBC
    catalog: it takes it for Hive, fails on the `jdbc:sqlite:` URI and leaves the table out of
    the event. What it does for a REST catalog is right for ours: the table's location as the
    dataset (`file` + path, the naming spec's local files) and the catalog URI with the table
    name as its symlink (`jdbc:sqlite:.../iceberg.db`, `processed.sales`). Iceberg reads `type`
    only when it starts a catalog, and refuses `type` beside `catalog-impl`; so the session's
    catalog is started first, and a session cloned from this one (a streaming query's) must be
    started under `catalog_settings_for_clones`.
    """
    if _ACTIVE and _is_jdbc(spark) and spark.conf.get(_TYPE_KEY, None) is None:
        # start it (the catalog manager reads the settings of the thread's active session)
        sessions = spark._jvm.org.apache.spark.sql.SparkSession
        previous = sessions.getActiveSession()
        sessions.setActiveSession(spark._jsparkSession)
        try:
            spark._jsparkSession.sessionState().catalogManager().catalog(CATALOG)
        finally:
            if previous.isDefined():
                sessions.setActiveSession(previous.get())
            else:
                sessions.clearActiveSession()
        spark.conf.set(_TYPE_KEY, "rest")


@contextlib.contextmanager
def catalog_settings_for_clones(spark: SparkSession) -> Iterator[None]:
    """While a clone of the session is made (a streaming query starting), the catalog's own settings."""
    shown = _is_jdbc(spark) and spark.conf.get(_TYPE_KEY, None) == "rest"
    if shown:
        spark.conf.unset(_TYPE_KEY)
    try:
        yield
    finally:
        if shown:
            spark.conf.set(_TYPE_KEY, "rest")
