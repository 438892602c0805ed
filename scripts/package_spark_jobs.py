"""Write the spark-submit bundle of `spark_jobs` (versioned zip plus entrypoint) to a folder:
what `make package` runs. The same bundle the EMR tasks upload (`include.packaging`).

`python -m scripts.package_spark_jobs [--out dist]`
"""

from __future__ import annotations

import argparse
from pathlib import Path

from include.packaging import build_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.package_spark_jobs", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("dist"))
    args = parser.parse_args(argv)
    bundle = build_bundle()
    zip_path, entry_path = bundle.write(args.out)
    print(f"version {bundle.version}: {zip_path} ({len(bundle.zip_bytes)} bytes), {entry_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
