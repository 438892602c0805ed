"""`python -m scripts.render_iam_policies --account ID`: the rendered IAM documents of the
PIPELINE_* settings, as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from include.settings import SettingsError, load_settings
from infra.documents import rendered_roles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.render_iam_policies", description=__doc__)
    parser.add_argument("--account", required=True, help="12-digit AWS account id")
    args = parser.parse_args(argv)
    try:
        roles = rendered_roles(load_settings(), args.account)
    except SettingsError as exc:
        print(f"iam: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(roles, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
