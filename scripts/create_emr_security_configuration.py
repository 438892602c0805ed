"""Create the EMR security configuration every cluster of this project names (encryption, IMDSv2),
once per account and region and idempotently; `--print` shows its document, `--check-network`
checks that the clusters' subnet is private. The document is `infra.documents.security_configuration`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence

from deployment.emr_security import (
    SecurityConfigurationConflict,
    ensure_security_configuration,
    network_problems,
)
from include.settings import SettingsError, load_settings
from infra.documents import security_configuration


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.create_emr_security_configuration",
        description="Create the EMR security configuration named by PIPELINE_EMR_SECURITY_CONFIGURATION "
        "(idempotent), from the PIPELINE_* settings of the emr target.",
    )
    parser.add_argument("--print", action="store_true", help="print the JSON document and exit (no AWS call)")
    parser.add_argument(
        "--check-network",
        action="store_true",
        help="also check that PIPELINE_EMR_SUBNET_ID is private (no public IPs, no internet gateway route)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(environ)
        if not settings.is_emr:
            raise SettingsError(
                "set PIPELINE_TARGET=emr (and its settings) to define the EMR security configuration"
            )
        document = security_configuration(settings)
    except SettingsError as exc:
        print(f"emr_security: {exc}", file=sys.stderr)
        return 2
    if args.print:
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    import boto3

    # Credentials come from the environment's standard chain (profile, SSO, instance role): none here.
    emr = boto3.client("emr", region_name=settings.region)
    try:
        outcome = ensure_security_configuration(emr, settings.security_configuration, document)
    except SecurityConfigurationConflict as exc:
        print(f"emr_security: {exc}", file=sys.stderr)
        return 1
    print(f"EMR security configuration {settings.security_configuration!r}: {outcome}")
    if args.check_network:
        problems = network_problems(boto3.client("ec2", region_name=settings.region), settings.subnet_id)
        for problem in problems:
            print(f"emr_security: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"subnet {settings.subnet_id}: private (no public IPs, no internet gateway route)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
