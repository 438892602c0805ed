"""`make aws-deploy` / `make aws-destroy`: the stack of infra/ in the deployer's account, and its settings.

    python -m infra.deploy deploy  --stack NAME --region REGION [--parameter Key=Value ...]
    python -m infra.deploy outputs --stack NAME --region REGION
    python -m infra.deploy destroy --stack NAME --region REGION

`deploy` creates the stack, or updates it when it exists (nothing to update is not an error),
waits for CloudFormation to finish, and prints the stack's outputs as `.env` lines: the
PIPELINE_* settings and the Airflow connection. Credentials come from the deployer's standard
AWS chain (profile, SSO, environment); none are read here. The stack name and region are never
defaulted: a deploy into the wrong account or region is the mistake these commands prevent.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from infra.template import TEMPLATE_FILE, render, settings_of_outputs
from plugins.emr_naming import PROJECT

_STACK = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# The roles have fixed names (deployment.iam.ROLE_NAMES) and the template uses a transform
# (AWS::LanguageExtensions, for Fn::ToJsonString): CloudFormation wants both acknowledged.
CAPABILITIES = ["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
# Waiting is CloudFormation's business; these bound it (a private subnet's endpoints take minutes).
_WAIT = {"Delay": 10, "MaxAttempts": 180}


class DeployError(RuntimeError):
    """CloudFormation refused or rolled back; the message says why."""


def _stack_exists(cf: Any, stack: str) -> bool:
    try:
        found = cf.describe_stacks(StackName=stack)["Stacks"]
    except cf.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return False
        raise
    return bool(found) and found[0]["StackStatus"] != "REVIEW_IN_PROGRESS"


def deploy(cf: Any, stack: str, parameters: Mapping[str, str] | None = None) -> dict[str, str]:
    """Create or update `stack` from the template; returns its settings ({variable: value})."""
    request = {
        "StackName": stack,
        "TemplateBody": render(),
        "Parameters": [
            {"ParameterKey": k, "ParameterValue": v} for k, v in sorted((parameters or {}).items())
        ],
        "Capabilities": CAPABILITIES,
        "Tags": [{"Key": "project", "Value": PROJECT}],  # CloudFormation passes them on to the resources
    }
    if _stack_exists(cf, stack):
        try:
            cf.update_stack(**request)
        except cf.exceptions.ClientError as exc:
            if "No updates are to be performed" in str(exc):
                return outputs(cf, stack)
            raise DeployError(f"CloudFormation refused the update: {exc}") from exc
        waiter = "stack_update_complete"
    else:
        # a failed first creation is rolled back and deleted, so the next deploy starts clean
        cf.create_stack(**request, OnFailure="DELETE")
        waiter = "stack_create_complete"
    try:
        cf.get_waiter(waiter).wait(StackName=stack, WaiterConfig=_WAIT)
    except Exception as exc:
        raise DeployError(f"stack {stack} did not complete: {_failure(cf, stack) or exc}") from exc
    return outputs(cf, stack)


def _failure(cf: Any, stack: str) -> str:
    """The first resource failure of the stack's events, e.g. 'LakeBucket: CREATE_FAILED: ...'."""
    for event in cf.describe_stack_events(StackName=stack)["StackEvents"]:
        if event.get("ResourceStatus", "").endswith("_FAILED"):
            reason = event.get("ResourceStatusReason")
            return f"{event['LogicalResourceId']}: {event['ResourceStatus']}: {reason}"
    return ""


def outputs(cf: Any, stack: str) -> dict[str, str]:
    """The deployed stack's settings: {PIPELINE_... or AIRFLOW_CONN_...: value}."""
    found = cf.describe_stacks(StackName=stack)["Stacks"][0]
    return settings_of_outputs(found.get("Outputs", []))


def destroy(cf: Any, stack: str) -> None:
    """Delete the stack; the bucket and its key are retained (DeletionPolicy), with the lake in them."""
    cf.delete_stack(StackName=stack)
    cf.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig=_WAIT)


def env_lines(settings: Mapping[str, str]) -> list[str]:
    """`.env` lines (single-quoted where a value needs it, e.g. the connection's JSON)."""
    lines = []
    for var, value in settings.items():
        lines.append(f"{var}='{value}'" if re.search(r"[^A-Za-z0-9_./:=+,@-]", value) else f"{var}={value}")
    return lines


def _parameters(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--parameter {item!r}: use Key=Value")
        out[key] = value
    return out


def main(argv: Sequence[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("deploy", "outputs", "destroy"))
    parser.add_argument("--stack", required=True, help="CloudFormation stack name (no default)")
    parser.add_argument("--region", required=True, help="AWS region, e.g. eu-west-1 (no default)")
    parser.add_argument(
        "--parameter", action="append", default=[], help=f"Key=Value of {TEMPLATE_FILE.name}'s Parameters"
    )
    args = parser.parse_args(argv)
    if not _STACK.match(args.stack):
        print(f"infra.deploy: {args.stack!r} is not a stack name (letters, digits, -)", file=sys.stderr)
        return 2
    if not _REGION.match(args.region):
        print(f"infra.deploy: {args.region!r} is not a region name (e.g. eu-west-1)", file=sys.stderr)
        return 2
    if client is None:
        import boto3

        client = boto3.client("cloudformation", region_name=args.region)
    try:
        if args.action == "destroy":
            destroy(client, args.stack)
            print(f"stack {args.stack} deleted; its lake bucket and KMS key are kept (delete them by hand)")
            return 0
        settings = (
            deploy(client, args.stack, _parameters(args.parameter))
            if args.action == "deploy"
            else outputs(client, args.stack)
        )
    except DeployError as exc:
        print(f"infra.deploy: {exc}", file=sys.stderr)
        return 1
    print(f"# stack {args.stack} in {args.region}: paste into .env")
    print("\n".join(env_lines(settings)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
