"""Fixtures of the infrastructure tests: moto in this process as an account, stacks of infra/ in it."""

from __future__ import annotations

import logging
import warnings

import boto3
import pytest

import tests.harness.airflow_home  # noqa: F401  (first: sets up Airflow's home before Airflow is imported)
from tests.infra.stack import deploy_stack


@pytest.fixture(scope="module")
def moto_account():
    """moto in this process, an account of the module's own (starting it costs seconds: AWS's
    managed policies, which attach AmazonEMRServicePolicy_v2, and each region's EC2). Not shared
    by the package: each module deploys a stack per test, a region each, and two modules on one
    xdist worker would together need more regions than there are."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        for key, value in {
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }.items():
            mp.setenv(key, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        # moto names each resource type it skips; tests/infra/stack.py creates those by API
        warnings.filterwarnings("ignore", message="Tried to parse AWS::")
        logging.getLogger("moto.cloudformation.parsing").setLevel(logging.ERROR)
        with mock_aws():
            yield Account(lambda service, region: boto3.client(service, region_name=region))


class Account:
    """The moto account of the package: its clients, and the regions its tests deployed into."""

    def __init__(self, client) -> None:
        self.client = client
        self.used: set[str] = set()

    def deploy(self, **parameters: str) -> tuple[str, dict[str, str]]:
        """The stack in a region of its own: (region, the settings of its outputs)."""
        free = [region for region in REGIONS if region not in self.used]
        if not free:
            raise RuntimeError(
                f"the moto account has no region left for another stack: its module deployed "
                f"{len(self.used)} (one per region, tests/infra/conftest.py REGIONS)"
            )
        region = free[0]
        self.used.add(region)
        return region, deploy_stack(self.client, "cma", region, parameters)


# Each stack of a module goes to a region of its own: stacks share no resources (IAM role names,
# the only account-wide ones, carry the region).
REGIONS = (
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "us-east-2",
    "us-west-1", "us-west-2", "ca-central-1", "sa-east-1", "ap-south-1", "ap-southeast-1",
    "ap-southeast-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "me-south-1", "af-south-1",
    "ap-east-1", "eu-central-2", "ap-south-2", "ap-southeast-3", "il-central-1",
)  # fmt: skip
