"""Arguments every figure module takes, so each one also runs alone: `python -m bench.fig_x --quick`."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (development), not the reported ones")
    p.add_argument("--repeat", type=int, default=None, help="runs per measurement (min/median over them)")
    p.add_argument("--work", type=Path, default=None, help="work directory (default .bench/)")
    return p


def runs(args: argparse.Namespace, full: int, quick: int = 2) -> int:
    if args.repeat:
        return max(1, args.repeat)
    return quick if args.quick else full


def add_sizes(p: argparse.ArgumentParser, what: str) -> None:
    """`--sizes small,big`: the row counts of a sized figure (default: its full sizes)."""
    p.add_argument(
        "--sizes",
        type=lambda v: sorted(int(x) for x in v.split(",")),
        default=None,
        help=f"two {what} row counts, small,big (default 1000000,10000000)",
    )
