"""The EMR security configuration every cluster of this project names: created once per account
and region (idempotently), and the private network the clusters run in.

Its document is defined from the settings in infra/documents.py; `python -m
scripts.create_emr_security_configuration` (or the stack of infra/) creates it, and
`job_flow_overrides` only puts its name in RunJobFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class SecurityConfigurationConflict(RuntimeError):
    """A configuration with this name exists with other content (EMR's are immutable)."""


def ensure_security_configuration(emr: Any, name: str, document: Mapping[str, Any]) -> str:
    """Create `name` with `document` unless it exists: 'created' or 'unchanged'.

    EMR security configurations cannot be changed in place, so an existing one with different
    content is a SecurityConfigurationConflict: pick a new name (and point the DAGs at it).
    """
    try:
        found = emr.describe_security_configuration(Name=name)
    except emr.exceptions.InvalidRequestException:
        found = None
    if found is None:
        emr.create_security_configuration(Name=name, SecurityConfiguration=json.dumps(document))
        return "created"
    if json.loads(found["SecurityConfiguration"]) != dict(document):
        raise SecurityConfigurationConflict(
            f"EMR security configuration {name!r} exists with different content; configurations are "
            "immutable: set PIPELINE_EMR_SECURITY_CONFIGURATION to a new name and run this again"
        )
    return "unchanged"


def network_problems(ec2: Any, subnet_id: str) -> list[str]:
    """Why `subnet_id` is not a private subnet ([] when it is): public IPs on launch, or a route to
    an internet gateway (in its own route table, or the VPC's main one when it has none)."""
    subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    problems = []
    if subnet.get("MapPublicIpOnLaunch"):
        problems.append(f"{subnet_id} gives instances public IPs (MapPublicIpOnLaunch)")
    own = [{"Name": "association.subnet-id", "Values": [subnet_id]}]
    tables = ec2.describe_route_tables(Filters=own)["RouteTables"]
    if not tables:
        main = [
            {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
            {"Name": "association.main", "Values": ["true"]},
        ]
        tables = ec2.describe_route_tables(Filters=main)["RouteTables"]
    for table in tables:
        for route in table.get("Routes", []):
            gateway = route.get("GatewayId", "")
            if gateway.startswith("igw-"):
                where = route.get("DestinationCidrBlock") or route.get("DestinationIpv6CidrBlock")
                problems.append(f"{subnet_id} routes {where} to internet gateway {gateway} (a public subnet)")
    return problems
