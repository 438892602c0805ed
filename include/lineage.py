"""OpenLineage: the settings both targets give the jobs, and the upstream graph of an output.

A pipeline run's lineage is three levels of OpenLineage runs, joined by parent facets:
the Airflow task (Airflow's OpenLineage provider), the Spark job it ran (spark_jobs/lineage.py:
START and COMPLETE or FAIL, parent = the task) and the job's Spark SQL executions (the
OpenLineage Spark listener: inputs, outputs and column lineage, parent = the job).
By default the jobs' events are JSON lines under `LAKE/_lineage/spark/`, the local Airflow's
under `LAKE/_lineage/airflow/`; with PIPELINE_LINEAGE_URL they go to that Marquez or DataHub.
`python -m scripts.show_lineage OUTPUT` prints the upstream graph of an output read from here.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.settings import Settings
from spark_jobs.catalog import WAREHOUSE, local_path
from spark_jobs.paths import LINEAGE_DIR, file_safe

PREFIX = "spark.openlineage."
AIRFLOW_DIR = "_lineage/airflow"
HTTP_ENDPOINT = "/api/v1/lineage"  # Marquez's; DataHub serves the same path (openapi/openlineage)


# ---- the settings ----------------------------------------------------------------------------
def spark_properties(settings: Settings) -> dict[str, str]:
    """The `spark.openlineage.*` properties of every job (the parent run is added per task)."""
    if not settings.lineage:
        return {}
    props = {
        PREFIX + "namespace": settings.lineage_namespace,
        # what chose a column's rows (joins, group and sort keys) per column, not only per table:
        # a KMeans segment is joined to its customers by a cluster computed from four features
        PREFIX + "columnLineage.datasetLineageEnabled": "false",
    }
    if settings.lineage_url:
        props.update(
            {
                PREFIX + "transport.type": "http",
                PREFIX + "transport.url": settings.lineage_url.rstrip("/"),
                PREFIX + "transport.endpoint": HTTP_ENDPOINT,
                PREFIX + "transport.timeoutInMillis": "5000",
            }
        )
    else:
        # the job writes a local file and copies it to LAKE/_lineage/spark/ when it ends
        props[PREFIX + "transport.type"] = "file"
    return props


# The provider emits a task's events from a fork of the task's process by default: a copy of a
# process holding Airflow, boto3 and pandas, once per task start and end. Its opt-in thread does
# the same emission (bounded by the same execution_timeout) without the copy, and cannot leave a
# second task runner on the supervisor's socket. Measured on the EMR DAG tests: 24 % less CPU.
AIRFLOW_EMIT_IN_THREAD = {"AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True"}


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Airflow's OpenLineage provider settings for a local Airflow (`make demo`, the tests):
    the tasks' and DAG runs' events beside the jobs' (a deployment sets its own)."""
    if not settings.lineage:
        return {"AIRFLOW__OPENLINEAGE__DISABLED": "true"}
    if settings.lineage_url:
        transport = {"type": "http", "url": settings.lineage_url.rstrip("/"), "endpoint": HTTP_ENDPOINT}
    elif not settings.lake.startswith("file://"):
        # the deployment's transport
        return {"AIRFLOW__OPENLINEAGE__NAMESPACE": settings.lineage_namespace, **AIRFLOW_EMIT_IN_THREAD}
    else:
        path = f"{local_path(settings.lake)}/{AIRFLOW_DIR}/events.jsonl"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        transport = {"type": "file", "log_file_path": path, "append": True}
    return {
        "AIRFLOW__OPENLINEAGE__NAMESPACE": settings.lineage_namespace,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        **AIRFLOW_EMIT_IN_THREAD,
    }


# ---- reading the events ----------------------------------------------------------------------
def read_events(lake: str) -> list[dict[str, Any]]:
    """Every job event under LAKE/_lineage/spark (a file:// or s3:// lake), oldest first."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(f"{lake.rstrip('/')}/{LINEAGE_DIR}")
    try:
        infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        return []
    events = []
    for info in infos:
        if info.type != fs.FileType.File or not info.path.endswith(".jsonl"):
            continue
        with filesystem.open_input_stream(info.path) as stream:
            for line in stream.read().decode("utf-8").splitlines():
                if line.strip():
                    events.append({**json.loads(line), "_file": info.path})
    events.sort(key=lambda e: e.get("eventTime", ""))
    return events


@dataclass
class JobRun:
    """A job's run (one `spark_jobs_*` run) with what its SQL executions read and wrote."""

    run_id: str
    name: str
    states: list[str] = field(default_factory=list)
    parent: dict[str, Any] | None = None
    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    # output dataset -> output column -> {(input dataset, input column)}: the columns it is
    # computed from (DIRECT), and those that decide which rows or groups it comes from (INDIRECT:
    # joins, filters, group and sort keys; the way a KMeans cluster joins its customers)
    columns: dict[str, dict[str, set[tuple[str, str]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    indirect: dict[str, dict[str, set[tuple[str, str]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    time: str = ""
    file: str = ""  # the events file: .../dt=<ds>/<Airflow run id>/<job>.<run id>.jsonl


# A table read or written through an Iceberg branch or tag (`processed.sales.branch_audit_x`, as
# Spark 4.1 names it in the listener's symlink) is still that table's dataset.
_BRANCH_OR_TAG = re.compile(r"\.(`(branch|tag)_[^`]*`|(branch|tag)_[^.`]*)$")


def dataset_name(dataset: Mapping[str, Any], lake: str) -> str:
    """A table's catalog name (`processed.sales`), else a file's path in the lake; landing files
    as their dataset (`landing/sales`: the dataset upstream delivers, whatever the day's files)."""
    for symlink in (dataset.get("facets") or {}).get("symlinks", {}).get("identifiers", []):
        if symlink.get("type") == "TABLE":
            name = _BRANCH_OR_TAG.sub("", symlink["name"])
            return name.split("/", 1)[1].replace("/", ".") if name.startswith("table/") else name
    path = _in_lake(dataset.get("namespace", ""), dataset.get("name", ""), lake)
    # a table without a catalog name (a Glue table where the listener could not tell the account
    # for its ARN): its location, LAKE/warehouse/<zone>/<name> (spark_jobs.tables)
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == WAREHOUSE:
        return f"{parts[1]}.{parts[2]}"
    return path


def _in_lake(namespace: str, name: str, lake: str) -> str:
    root = lake.rstrip("/")
    full = name if namespace == "file" else f"{namespace.rstrip('/')}/{name.lstrip('/')}"
    local = (local_path(root), os.path.realpath(local_path(root))) if root.startswith("file://") else ()
    for prefix in (*local, root):
        if full.startswith(prefix + "/"):
            inside = full[len(prefix) + 1 :]
            return "/".join(inside.split("/")[:2]) if inside.startswith("landing/") else inside
    return full


def _warehouse_tables(events: Iterable[Mapping[str, Any]], lake: str) -> dict[str, str]:
    """Table location (as named in column lineage) -> catalog name, from the datasets' symlinks."""
    names: dict[str, str] = {}
    for event in events:
        for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
            name = dataset_name(dataset, lake)
            if not _METADATA_TABLE.match(name):  # a metadata table has its table's location
                names[f"{dataset.get('namespace')}|{dataset.get('name')}"] = name
    return names


# Iceberg's metadata tables (`processed.sales.snapshots`): the jobs' bookkeeping, not their data
_METADATA_TABLE = re.compile(
    r"^[^./]+\.[^./]+\.(snapshots|refs|partitions|files|data_files|history|manifests|entries|"
    r"metadata_log_entries|position_deletes|all_[a-z_]+)$"
)


def _data(names: Iterable[str]) -> set[str]:
    return {n for n in names if not _METADATA_TABLE.match(n)}


def job_runs(events: list[dict[str, Any]], lake: str) -> dict[str, JobRun]:
    """The `spark_jobs_*` runs in the events, each with its SQL executions' datasets."""
    runs: dict[str, JobRun] = {}
    for event in events:
        name = event["job"]["name"]
        run = event["run"]
        if name.startswith("spark_jobs_") and "." not in name:
            job = runs.setdefault(run["runId"], JobRun(run["runId"], name))
            job.states.append(event["eventType"])
            job.time = job.time or event.get("eventTime", "")
            job.file = job.file or event.get("_file", "")
            job.parent = job.parent or (run.get("facets") or {}).get("parent")
    tables = _warehouse_tables(events, lake)
    for event in events:
        parent = ((event["run"].get("facets") or {}).get("parent") or {}).get("run", {}).get("runId")
        job = runs.get(parent)
        if job is None or event["eventType"] not in ("COMPLETE", "FAIL"):
            continue
        job.inputs |= _data(dataset_name(d, lake) for d in event.get("inputs", []))
        for out in event.get("outputs", []):
            out_name = dataset_name(out, lake)
            if _METADATA_TABLE.match(out_name):
                continue
            job.outputs.add(out_name)
            fields = ((out.get("facets") or {}).get("columnLineage") or {}).get("fields") or {}
            for column, lineage in fields.items():
                for source in lineage.get("inputFields", []):
                    key = f"{source.get('namespace')}|{source.get('name')}"
                    source_name = tables.get(key) or _in_lake(source["namespace"], source["name"], lake)
                    kinds = {t.get("type") for t in source.get("transformations") or [{"type": "DIRECT"}]}
                    for kind, into in (("DIRECT", job.columns), ("INDIRECT", job.indirect)):
                        if kind in kinds:
                            into[out_name][column].add((source_name, source["field"]))
    return runs


def run_of(job: JobRun) -> str | None:
    """The pipeline run (Airflow run id) a job run belongs to, from its parent facet's root."""
    root = (job.parent or {}).get("root") or {}
    return (root.get("run") or {}).get("runId")


# ---- the upstream graph ----------------------------------------------------------------------
@dataclass
class Upstream:
    output: str
    writers: dict[str, JobRun]  # dataset -> the job run that wrote it (in this graph)
    edges: dict[str, set[str]]  # dataset -> the datasets it was computed from
    # output column -> (the columns it is computed from, the landing datasets it comes from)
    columns: dict[str, tuple[set[tuple[str, str]], set[str]]]


def upstream(
    runs: Mapping[str, JobRun], output: str, *, ds: str | None = None, run_id: str | None = None
) -> Upstream:
    """The graph upstream of `curated.<output>` (or any table name), as the last COMPLETE job runs
    of a pipeline run wrote it: the pipeline run of the last writer of the output, unless
    `run_id` (an Airflow run id, matched in the job's lineage file path) or `ds` narrows it."""
    target = output if "." in output else f"curated.{output}"
    complete = [j for j in runs.values() if "COMPLETE" in j.states]
    if ds or run_id:
        complete = [j for j in complete if _matches(j, ds, run_id)]
    last = _last_writer(complete, target)
    if last is None:
        raise LookupError(f"no completed job run wrote {target} in the lineage events")
    same_run = [j for j in complete if run_of(j) == run_of(last)] if run_of(last) else complete
    # the latest writer of each dataset within the pipeline run
    writers: dict[str, JobRun] = {}
    for job in sorted(same_run, key=lambda j: j.time):
        for out in job.outputs:
            writers[out] = job
    edges: dict[str, set[str]] = {}
    todo, seen = [target], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        job = writers.get(name)
        if job is None:
            continue
        sources = {i for i in job.inputs if i != name}
        edges[name] = sources
        todo.extend(sources)
    names = sorted(set(last.columns.get(target, {})) | set(last.indirect.get(target, {})))
    columns = {col: (_sources(last, target, col), _origins(writers, target, col, set())) for col in names}
    return Upstream(target, {k: v for k, v in writers.items() if k in seen}, edges, columns)


def _matches(job: JobRun, ds: str | None, run_id: str | None) -> bool:
    parts = job.file.split("/")
    return (not ds or f"dt={ds}" in parts) and (not run_id or file_safe(run_id) in parts)


def _sources(job: JobRun, table: str, column: str) -> set[tuple[str, str]]:
    """What a column is computed from; a column computed from nothing directly (a number given to
    a KMeans cluster) from what chose its rows."""
    return set(job.columns.get(table, {}).get(column) or job.indirect.get(table, {}).get(column) or ())


def _origins(writers: Mapping[str, JobRun], table: str, column: str, seen: set) -> set[str]:
    """The landing datasets (or tables nobody in the graph wrote) a column comes from."""
    if (table, column) in seen:
        return set()
    seen.add((table, column))
    job = writers.get(table)
    sources = {s for s in _sources(job, table, column) if s[0] != table} if job else set()
    if not sources:
        return {table}
    found: set[str] = set()
    for src_table, src_column in sources:
        found |= _origins(writers, src_table, src_column, seen) if src_table in writers else {src_table}
    return found


def column_sources(
    runs: Mapping[str, JobRun], table: str, *, indirect: bool = False
) -> dict[str, set[tuple[str, str]]]:
    """One step back: each column of `table` -> the columns its last writer computed it from
    (with `indirect`: those that chose its rows, groups or join partners)."""
    last = _last_writer([j for j in runs.values() if "COMPLETE" in j.states], table)
    if last is None:
        return {}
    found = (last.indirect if indirect else last.columns).get(table, {})
    return {c: set(s) for c, s in found.items()}


def _last_writer(jobs: Iterable[JobRun], table: str) -> JobRun | None:
    """The job run that wrote `table` last."""
    writers = sorted((j for j in jobs if table in j.outputs), key=lambda j: j.time)
    return writers[-1] if writers else None


def render(graph: Upstream) -> str:
    lines = [f"{graph.output}"]

    def walk(name: str, depth: int, path: tuple[str, ...]) -> None:
        for source in sorted(graph.edges.get(name, ())):
            job = graph.writers.get(source)
            by = f"  (written by {job.name})" if job else ""
            lines.append(f"{'  ' * depth}<- {source}{by}")
            if source not in path:
                walk(source, depth + 1, (*path, source))

    job = graph.writers.get(graph.output)
    if job:
        parent = (job.parent or {}).get("job", {})
        lines[0] += f"  (written by {job.name}, run {job.run_id}, task {parent.get('name', '?')})"
    walk(graph.output, 1, (graph.output,))
    if graph.columns:
        lines.append("")
        lines.append("columns:")
        for column, (sources, origins) in graph.columns.items():
            by_table: dict[str, list[str]] = defaultdict(list)
            for table, name in sorted(sources):
                by_table[table].append(name)
            shown = ", ".join(
                f"{t}.{c[0]}" if len(c) == 1 else f"{t}.{{{', '.join(c)}}}" for t, c in by_table.items()
            )
            lines.append(f"  {column} <- {shown}  (from {', '.join(sorted(origins))})")
    return "\n".join(lines)
