"""Check, before any run, that the AWS account holds what the emr target's settings name
(deployment.preflight, the checks the EMR DAGs' `preflight` task runs): `python -m
scripts.check_aws_preflight` (`make aws-preflight`). Exit 0 all there, 1 something missing (one
line each, with what to do), 2 the settings are not the emr target's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from deployment.preflight import boto3_clients, report, run_checks
from include.packaging import build_bundle, code_location
from include.settings import SettingsError, load_settings


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.check_aws_preflight", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    try:
        settings = load_settings(environ)
        if not settings.is_emr:
            raise SettingsError("preflight checks the emr target: set PIPELINE_TARGET=emr and its settings")
    except SettingsError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    code_files = code_location(settings, build_bundle().version)["py_files"]
    passed, text = report(run_checks(settings, boto3_clients(settings.region), code_files))
    print(text, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
