"""Check, before any run, that the AWS account holds what the settings' AWS target needs
(deployment.preflight, the checks the DAGs' `preflight` task runs for that target): `python -m
scripts.check_aws_preflight` (`make aws-preflight`). Exit 0 all there, 1 something missing (one
line each, with what to do), 2 the settings are not an AWS target's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from deployment.preflight import boto3_clients, report, run_checks
from include.emr_release import RELEASES
from include.packaging import build_bundle, code_location
from include.settings import SettingsError, load_settings


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.check_aws_preflight", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    try:
        settings = load_settings(environ)
        if not settings.on_aws:
            raise SettingsError(
                "preflight checks an AWS target: set PIPELINE_TARGET=emr or emr-serverless and its settings"
            )
    except SettingsError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    code_files = code_location(settings, build_bundle().version)["py_files"]
    findings = run_checks(settings, boto3_clients(settings.region), code_files, RELEASES)
    passed, text = report(findings, settings)
    print(text, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
