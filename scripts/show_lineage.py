"""Where an output's rows of a run came from, from the lineage events in the lake (include.lineage):

    python -m scripts.show_lineage OUTPUT [--lake LAKE] [--ds YYYY-MM-DD] [--run-id RUN]

prints the jobs, the tables and landing files upstream of OUTPUT, and for each of its columns
the columns it is computed from (the last run that wrote it, unless --ds/--run-id pick another).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from include.lineage import LINEAGE_DIR, job_runs, read_events, render, upstream


def main(argv: list[str] | None = None) -> int:
    from include.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m scripts.show_lineage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("output", help="a curated output (customer_segments) or a table (processed.sales)")
    parser.add_argument("--lake", help="lake URI or path (default PIPELINE_LAKE, else ./lake)")
    parser.add_argument("--ds", help="only job runs of this date")
    parser.add_argument("--run-id", help="only job runs of this Airflow run")
    args = parser.parse_args(argv)
    lake = args.lake or load_settings().lake
    if "://" not in lake:
        lake = Path(lake).resolve().as_uri()
    events = read_events(lake)
    if not events:
        print(f"no lineage events under {lake}/{LINEAGE_DIR}", file=sys.stderr)
        return 1
    try:
        graph = upstream(job_runs(events, lake), args.output, ds=args.ds, run_id=args.run_id)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(render(graph))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
