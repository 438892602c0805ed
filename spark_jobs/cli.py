"""The one entrypoint: parse the job command line, run the job, map bad input to exit 2.

Same arguments locally (`python -m spark_jobs ...`) and as an EMR step
(`spark-submit --py-files spark_jobs-<version>.zip entrypoint.py ...`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence

from spark_jobs.common import JobInputError, date_range, normalize_lake, parse_ds
from spark_jobs.paths import metrics_uri
from spark_jobs.protocol import EXIT_BAD_INPUT, LINEAGE_VAR, METRICS_PREFIX
from spark_jobs.schemas import DATASETS
from spark_jobs.tables import WAP_BRANCH

# job name -> module with `run(spark, args) -> dict` (imported only when that job runs)
JOBS = {
    "ingest": "spark_jobs.ingest",
    "graph": "spark_jobs.graph",
    "sales_rolling": "spark_jobs.sales_rolling",
    "stock_daily": "spark_jobs.stock_daily",
    "features": "spark_jobs.features",
    "segments": "spark_jobs.segments",
    "clickstream": "spark_jobs.clickstream",
    "maintain": "spark_jobs.maintain",
    "audit": "spark_jobs.audit",
    "publish": "spark_jobs.publish",
}
RANGED_JOBS = ("ingest", "audit")  # jobs that also take --start-ds/--end-ds

log = logging.getLogger("spark_jobs")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:+=@-]{1,250}$")  # what the orchestrator's run ids become


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors are one line too."""

    def error(self, message: str):  # type: ignore[override]
        raise JobInputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m spark_jobs", description=__doc__)
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--ds", help="logical date YYYY-MM-DD (the run's data_interval_start)")
    parser.add_argument("--lake", required=True, help="lake root: file:///abs/path or s3://bucket/prefix")
    parser.add_argument("--dataset", choices=DATASETS, help="ingest: which landing dataset")
    parser.add_argument("--start-ds", help="ingest: first date of a range (inclusive)")
    parser.add_argument("--end-ds", help="ingest: last date of a range (inclusive)")
    parser.add_argument(
        "--checkpoint",
        help="clickstream: checkpoint location (default LAKE/_checkpoints/clickstream_checkouts/dt=DS)",
    )
    parser.add_argument(
        "--keep-days",
        type=int,
        help="maintain: expire snapshots committed more than this many days before --ds (default 14)",
    )
    parser.add_argument(
        "--checks-uri",
        help="audit: the run's checks, a JSON file (the plan writes _runs/audits/dt=DS/BRANCH.checks.json)",
    )
    parser.add_argument(
        "--warnings-block",
        action="store_true",
        help="audit: a failed `warn` check fails the audit too (nothing is published)",
    )
    parser.add_argument(
        "--branch",
        help="write-audit-publish: commit to this branch of each table (not main); reads see it too",
    )
    parser.add_argument(
        "--run-id",
        help="the orchestrator's run (Airflow run_id), recorded on every commit the job makes",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.lake = normalize_lake(args.lake)
    if args.run_id is not None and not _RUN_ID.match(args.run_id):
        raise JobInputError(f"--run-id {args.run_id!r}: letters, digits and _ . : + = @ - only")
    if args.branch is not None and (not _RUN_ID.match(args.branch) or args.branch == "main"):
        raise JobInputError(f"--branch {args.branch!r}: letters, digits and _ . : + = @ - only, not main")
    audit_only = args.checks_uri is not None or args.warnings_block
    if (args.checks_uri is None and args.job == "audit") or (audit_only and args.job != "audit"):
        raise JobInputError("--checks-uri and --warnings-block are audit's, and audit needs --checks-uri")
    if args.keep_days is not None and (args.job != "maintain" or not 1 <= args.keep_days <= 3650):
        raise JobInputError("--keep-days is maintain's, between 1 and 3650")
    ranged = args.start_ds is not None or args.end_ds is not None
    if args.job in RANGED_JOBS:
        if args.job == "ingest" and args.dataset is None:
            raise JobInputError("ingest needs --dataset")
        if args.job != "ingest" and args.dataset is not None:
            raise JobInputError("--dataset is ingest's")
        if ranged and args.ds is not None:
            raise JobInputError("give either --ds or --start-ds/--end-ds, not both")
        if ranged:
            if args.start_ds is None or args.end_ds is None:
                raise JobInputError("--start-ds and --end-ds go together")
            args.dates = date_range(parse_ds(args.start_ds), parse_ds(args.end_ds))
        elif args.ds is not None:
            args.dates = [parse_ds(args.ds)]
        else:
            raise JobInputError(f"{args.job} needs --ds or --start-ds/--end-ds")
        args.ds = args.dates[-1]
    else:
        if ranged or args.dataset is not None:
            raise JobInputError(f"{args.job} takes --ds only (--dataset/--start-ds/--end-ds are ingest's)")
        args.dates = [parse_ds(args.ds)] if args.ds is not None else []
        if args.ds is None:
            raise JobInputError(f"{args.job} needs --ds")
        args.ds = parse_ds(args.ds)
    return args


def main(
    argv: Sequence[str] | None = None,
    lineage: Mapping[str, str] | None = None,
    queued_seconds: float | None = None,
) -> int:
    """Run one job command line; `lineage`: per-job `spark.openlineage.*` properties (else the
    environment's SPARK_JOBS_LINEAGE, JSON, else only the application's own settings);
    `queued_seconds`: how long the job waited for the Spark application that runs it (the local
    server's queue), recorded in its timings."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()  # a duration only; no date ever comes from the clock
    try:
        args = parse_args(argv)
    except JobInputError as exc:
        print(f"spark_jobs: bad arguments: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from spark_jobs.common import write_text
    from spark_jobs.lineage import StepLineage, job_name, properties
    from spark_jobs.session import get_spark

    module = importlib.import_module(JOBS[args.job])
    spark = get_spark(f"{args.job}-{args.ds}", args.lake)
    if args.run_id:
        spark.conf.set("spark.pipeline.run-id", args.run_id)
    if args.branch:
        spark.conf.set(WAP_BRANCH, args.branch)
    if lineage is None and os.environ.get(LINEAGE_VAR):
        lineage = json.loads(os.environ[LINEAGE_VAR])
    step = StepLineage(
        spark,
        properties(spark, lineage),
        name=job_name(args.job, args.dataset),
        lake=args.lake,
        ds=args.ds,
        run=args.run_id,
    )
    step.start()
    ready = time.monotonic()
    log.info("%s --ds %s: Spark ready after %.1fs; running", args.job, args.ds, ready - started)
    try:
        metrics = module.run(spark, args) or {}
        worked = time.monotonic()
    except JobInputError as exc:
        step.end(error=str(exc))
        print(f"spark_jobs {args.job} --ds {args.ds}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException as exc:
        step.end(error=f"{type(exc).__name__}: {exc}")
        raise
    record = {"job": args.job, "ds": str(args.ds), "run_id": args.run_id}
    if args.job == "ingest":
        record.update(dataset=args.dataset, start_ds=str(args.dates[0]), end_ds=str(args.dates[-1]))
    record.update(metrics)
    # Start-up (arguments, imports, the Spark session, lineage START) apart from the job's own
    # work, so a report can tell a slow JVM from a slow job; the total as before.
    timings = {"startup_seconds": round(ready - started, 3), "spark_seconds": round(worked - ready, 3)}
    record["timings"] = timings
    if queued_seconds is not None:
        timings["queue_seconds"] = round(queued_seconds, 3)
    record["duration_seconds"] = round(time.monotonic() - started, 3)
    # One machine-readable line (the local operator collects it) and the same JSON in the lake
    # (the run report reads it, also on EMR where nobody reads the step's stdout).
    print(METRICS_PREFIX + json.dumps(record, default=str))
    uri = metrics_uri(args.lake, args.job, args.ds, args.dataset)
    try:
        write_text(spark, uri, json.dumps(record, sort_keys=True, default=str))
    except Exception as exc:  # the outputs are written: missing numbers must not fail the step
        log.warning("could not write the run metrics to %s: %s", uri, exc)
    log.info("%s --ds %s: done in %.1fs", args.job, args.ds, record["duration_seconds"])
    code = int(record.get("exit_code") or 0)
    if code:  # the job ran, and its verdict is no (an audit that found a blocking problem)
        failed = record.get("failed_checks") or []
        reason = f"{len(failed)} check(s) failed: {'; '.join(failed)}"
        step.end(error=reason)
        print(f"spark_jobs {args.job} --ds {args.ds}: {reason}", file=sys.stderr)
    else:
        step.end()
    return code
