"""Write seeded demo data into a lake: the landing partitions of all five datasets for every day
of a date range (`make demo-data`; the Compose stack's init, into its empty lake volume).

`python -m scripts.generate_demo_data --lake LAKE --start YYYY-MM-DD --end YYYY-MM-DD --scale S [--seed 7]`.
`--if-empty` writes only into a lake that holds nothing yet (the Compose stack's lake volume).
Scale 1.0 is 1,000,000 sales rows over the range; the same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from include.demo_data import generate, generate_if_empty, lake_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.generate_demo_data", description=__doc__)
    parser.add_argument("--lake", required=True, help="local lake root: a path or file:// URI")
    parser.add_argument("--start", required=True, type=dt.date.fromisoformat, help="first date YYYY-MM-DD")
    parser.add_argument("--end", required=True, type=dt.date.fromisoformat, help="last date YYYY-MM-DD")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1,000,000 sales rows over the range")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--if-empty", action="store_true", help="write only if the lake holds nothing yet")
    args = parser.parse_args(argv)
    if args.if_empty:
        manifest = generate_if_empty(args.lake, args.start, args.end, args.scale, args.seed)
        if manifest is None:
            print(f"{lake_root(args.lake)} is not empty: no demo data written")
            return 0
    else:
        manifest = generate(args.lake, args.start, args.end, args.scale, args.seed)
    for name, total in manifest["datasets"].items():
        bad = sum(total["bad"].values())
        print(
            f"{name}: {total['rows']} rows in {total['partitions']} partitions "
            f"({total['duplicates']} duplicates, {bad} bad rows) -> {manifest['lake']}/landing/{name}"
        )
    print("demo data manifest: " + json.dumps({k: manifest[k] for k in ("start", "end", "scale", "seed")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
