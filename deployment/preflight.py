"""Preflight: is everything a cluster needs there? Read-only AWS calls, seconds, before RunJobFlow.

`python -m scripts.check_aws_preflight` (with the deployer's credentials) and the EMR DAGs' `preflight`
task (with the Airflow connection's) check what a RunJobFlow would otherwise find missing
minutes in: the EMR security configuration and the TLS certificates it names, the KMS key, the
EMR service role and the nodes' instance profile, a private subnet tagged for
AmazonEMRServicePolicy_v2 and its security groups, the lake bucket and its default encryption,
the zones' Glue databases, whether the code zip's location is writable, and whether the run
report may publish its metrics to CloudWatch and the alerts to their SNS topic, and the Kinesis
stream the clickstream is landed from, when it is set. Each missing
piece is one finding: one line saying what is wrong and what to do about it.

Nothing is written: writability and the permissions to publish are judged by reading the
caller's own IAM policies and evaluating them (deployment/iam/evaluate.py) for the calls the run
will make.

The settings are read by attribute (include.settings.Settings): this package sits below include
and imports nothing of it, so the EMR target's preflight task can run it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from deployment.emr_security import network_problems
from deployment.iam.evaluate import Request, UnsupportedPolicy, is_allowed

# include.settings.Settings, read by attribute (nothing of include is imported here)
Settings = Any

SERVICES = ("emr", "iam", "ec2", "s3", "glue", "kms", "sts", "kinesis")
MANAGED_TAG = ("for-use-with-amazon-emr-managed-policies", "true")
DEPLOY = "deploy the stack (make aws-deploy) and paste its settings into .env"
_ASSUMED_ROLE = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/(?P<role>[^/]+)/")
_NOT_FOUND = ("NoSuchEntity", "NotFoundException", "EntityNotFoundException", "404", "NoSuchBucket")


@dataclass(frozen=True)
class Finding:
    """One missing or wrong piece; `blocking=False` for what preflight could not judge."""

    piece: str
    problem: str
    fix: str
    blocking: bool = True

    def line(self) -> str:
        return f"{self.piece}: {self.problem}; {self.fix}"


Clients = Mapping[str, Any]
Check = Callable[[Settings, Clients], list[Finding]]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    return _code(exc) in _NOT_FOUND or "does not exist" in str(exc) or "not found" in str(exc).lower()


def _unreadable(piece: str, exc: ClientError) -> Finding:
    return Finding(
        piece,
        f"could not be read ({_code(exc)}: {exc.response.get('Error', {}).get('Message', '')})",
        "grant the caller deployment/iam/airflow-role-policy.json (the stack's Airflow role has it)",
    )


def _name(role_or_arn: str) -> str:
    return role_or_arn.rsplit("/", 1)[-1]


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


# ---- the checks ----------------------------------------------------------------------------
def check_security_configuration(settings: Settings, aws: Clients) -> list[Finding]:
    name, piece = settings.security_configuration, "EMR security configuration"
    try:
        found = aws["emr"].describe_security_configuration(Name=name)
    except ClientError as exc:
        if _code(exc) == "InvalidRequestException" or _missing(exc):
            return [Finding(piece, f"{name!r} does not exist", DEPLOY)]
        return [_unreadable(piece, exc)]
    document = json.loads(found["SecurityConfiguration"])
    tls = document.get("EncryptionConfiguration", {}).get("InTransitEncryptionConfiguration", {})
    certs = tls.get("TLSCertificateConfiguration", {}).get("S3Object")
    if not certs:
        return []
    # Listed, not read: only the nodes may read the private key.
    bucket, key = _bucket_key(certs)
    piece = "TLS certificates"
    try:
        listed = aws["s3"].list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    except ClientError as exc:
        if _missing(exc):
            return [Finding(piece, f"bucket of {certs} does not exist", DEPLOY)]
        return [_unreadable(piece, exc)]
    if not any(obj["Key"] == key for obj in listed):
        return [
            Finding(
                piece,
                f"{certs} (named by {name!r}) does not exist",
                "make aws-certs STACK=<stack> REGION=<region> (python -m infra.tls_certs) uploads them",
            )
        ]
    return []


def check_kms_key(settings: Settings, aws: Clients) -> list[Finding]:
    if not settings.kms_key_arn:
        return [Finding("KMS key", "PIPELINE_EMR_KMS_KEY_ARN is not set", DEPLOY)]
    try:
        key = aws["kms"].describe_key(KeyId=settings.kms_key_arn)["KeyMetadata"]
    except ClientError as exc:
        if _missing(exc):
            return [Finding("KMS key", f"{settings.kms_key_arn} does not exist", DEPLOY)]
        return [_unreadable("KMS key", exc)]
    if key.get("KeyState") != "Enabled":
        return [Finding("KMS key", f"{settings.kms_key_arn} is {key.get('KeyState')}", "enable the key")]
    return []


def check_roles(settings: Settings, aws: Clients) -> list[Finding]:
    findings = []
    role = _name(settings.service_role)
    try:
        aws["iam"].get_role(RoleName=role)
    except ClientError as exc:
        findings.append(
            Finding("EMR service role", f"{role!r} does not exist", DEPLOY)
            if _missing(exc)
            else _unreadable("EMR service role", exc)
        )
    profile = _name(settings.instance_profile)
    try:
        roles = aws["iam"].get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
    except ClientError as exc:
        findings.append(
            Finding("EMR instance profile", f"{profile!r} does not exist", DEPLOY)
            if _missing(exc)
            else _unreadable("EMR instance profile", exc)
        )
    else:
        if not roles:
            findings.append(
                Finding("EMR instance profile", f"{profile!r} has no role", "add the nodes' role to it")
            )
    return findings


def _tagged(tags: Sequence[Mapping[str, str]] | None) -> bool:
    return any((t.get("Key"), t.get("Value")) == MANAGED_TAG for t in tags or [])


def check_network(settings: Settings, aws: Clients) -> list[Finding]:
    subnet_id, ec2 = settings.subnet_id, aws["ec2"]
    try:
        subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    except ClientError as exc:
        if _missing(exc) or "NotFound" in _code(exc):
            return [Finding("subnet", f"{subnet_id} does not exist", DEPLOY)]
        return [_unreadable("subnet", exc)]
    tag = f"tag it {MANAGED_TAG[0]}={MANAGED_TAG[1]} (AmazonEMRServicePolicy_v2 needs it)"
    findings = [
        Finding("subnet", problem, "use a private subnet (the stack's CreateNetwork=true makes one)")
        for problem in network_problems(ec2, subnet_id)
    ]
    if not _tagged(subnet.get("Tags")):
        findings.append(
            Finding("subnet", f"{subnet_id} is not tagged {MANAGED_TAG[0]}={MANAGED_TAG[1]}", tag)
        )
    groups = [
        (var, sg)
        for var, sg in (
            ("PIPELINE_EMR_MASTER_SG", settings.master_security_group),
            ("PIPELINE_EMR_CORE_SG", settings.core_security_group),
            ("PIPELINE_EMR_SERVICE_SG", settings.service_security_group),
        )
        if sg
    ]
    for var, sg in groups:
        try:
            group = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
        except ClientError as exc:
            if _missing(exc) or "NotFound" in _code(exc):
                findings.append(Finding("security group", f"{var}={sg} does not exist", DEPLOY))
                continue
            findings.append(_unreadable("security group", exc))
            continue
        if group.get("VpcId") != subnet.get("VpcId"):
            findings.append(
                Finding("security group", f"{var}={sg} is not in the subnet's VPC", "use groups of that VPC")
            )
        if not _tagged(group.get("Tags")):
            findings.append(Finding("security group", f"{var}={sg} is not tagged {MANAGED_TAG[0]}=true", tag))
    return findings


def _bucket_exists(aws: Clients, bucket: str, piece: str, account: str | None) -> Finding | None:
    kwargs = {"ExpectedBucketOwner": account} if account else {}
    try:
        aws["s3"].head_bucket(Bucket=bucket, **kwargs)
    except ClientError as exc:
        if _missing(exc):
            return Finding(piece, f"bucket {bucket} does not exist", DEPLOY)
        if _code(exc) in ("403", "AccessDenied"):
            return Finding(
                piece,
                f"bucket {bucket} is not this account's or may not be listed by the caller",
                "use the stack's bucket (its PIPELINE_LAKE)",
            )
        return _unreadable(piece, exc)
    return None


def check_bucket(settings: Settings, aws: Clients) -> list[Finding]:
    bucket, _ = _bucket_key(settings.lake)
    missing = _bucket_exists(aws, bucket, "lake bucket", None)
    if missing:
        return [missing]
    try:
        rules = aws["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            rules = []
        else:
            return [_unreadable("lake bucket", exc)]
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if not defaults:
        return [Finding("lake bucket", f"{bucket} has no default encryption", DEPLOY)]
    if settings.s3_encryption == "SSE-KMS":
        key = settings.kms_key_arn
        if not any(
            d.get("SSEAlgorithm") == "aws:kms" and key and _key_matches(d.get("KMSMasterKeyID", ""), key)
            for d in defaults
        ):
            found = ", ".join(
                f"{d.get('SSEAlgorithm')} {d.get('KMSMasterKeyID', '')}".strip() for d in defaults
            )
            return [
                Finding(
                    "lake bucket",
                    f"{bucket} encrypts with {found} by default, not SSE-KMS with PIPELINE_EMR_KMS_KEY_ARN",
                    "set its default encryption to that key (the stack does)",
                )
            ]
    return []


def _key_matches(configured: str, key_arn: str) -> bool:
    """A bucket names its key by ARN or id; the setting is an ARN."""
    return configured == key_arn or key_arn.endswith(f"/{configured}")


def check_glue_databases(settings: Settings, aws: Clients) -> list[Finding]:
    findings = []
    for zone, database in settings.namespaces.items():
        try:
            aws["glue"].get_database(Name=database)
        except ClientError as exc:
            findings.append(
                Finding("Glue database", f"{database} ({zone} zone) does not exist", DEPLOY)
                if _missing(exc)
                else _unreadable("Glue database", exc)
            )
    return findings


def _role_policies(iam: Any, role: str) -> list[dict[str, Any]]:
    """The identity policies of `role`: inline, then attached (default versions)."""
    docs = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        docs.append(_document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]))
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        got = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
        docs.append(_document(got["PolicyVersion"]["Document"]))
    return docs


def _document(doc: Any) -> dict[str, Any]:
    """boto3 decodes policy documents; a document it could not decode arrives as its JSON text."""
    return json.loads(doc) if isinstance(doc, str) else doc


@dataclass(frozen=True)
class _Caller:
    """The caller's role and its identity policies, or why they could not be had."""

    role: str | None
    policies: list[dict[str, Any]]
    why_not: str = ""  # "the caller ... is not an assumed role" / "... could not be read (...)"
    fix: str = ""


def _caller(aws: Clients, identity: Mapping[str, Any]) -> _Caller:
    role = _ASSUMED_ROLE.match(identity["Arn"])
    if role is None:
        return _Caller(
            None,
            [],
            f"the caller {identity['Arn']} is not an assumed role",
            "run preflight with the Airflow role's credentials to judge it",
        )
    name = role.group("role")
    try:
        return _Caller(name, _role_policies(aws["iam"], name))
    except ClientError as exc:
        return _Caller(
            name,
            [],
            f"the policies of role {name} could not be read ({_code(exc)})",
            "grant the role deployment/iam/airflow-role-policy.json's PreflightReadsItsOwnPolicies",
        )


def _denied(caller: _Caller, questions: Sequence[Request]) -> list[Request] | str:
    """The questions the caller's policies deny, or the feature that keeps them from being judged."""
    try:
        return [q for q in questions if not is_allowed(caller.policies, q)]
    except UnsupportedPolicy as exc:
        return str(exc)


def check_code_location(settings: Settings, aws: Clients, code_files: str) -> list[Finding]:
    """May the caller upload this run's code to `code_files` (its zip's S3 location)?"""
    target = code_files
    bucket, key = _bucket_key(target)
    piece = "code location"
    identity = aws["sts"].get_caller_identity()
    missing = _bucket_exists(aws, bucket, piece, identity["Account"])
    if missing:
        return [missing]
    caller = _caller(aws, identity)
    if caller.why_not:
        return [
            Finding(
                piece, f"writability of {target} not judged: {caller.why_not}", caller.fix, blocking=False
            )
        ]
    questions = [Request("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")]
    if settings.s3_encryption == "SSE-KMS" and settings.kms_key_arn and settings.region:
        via_s3 = {"kms:ViaService": f"s3.{settings.region}.amazonaws.com"}
        questions.append(Request("kms:GenerateDataKey", settings.kms_key_arn, via_s3))
    denied = _denied(caller, questions)
    if isinstance(denied, str):
        return [
            Finding(
                piece,
                f"writability of {target} not judged: a policy of role {caller.role} uses {denied}",
                "check the role grants s3:PutObject there",
                blocking=False,
            )
        ]
    return [
        Finding(
            piece,
            f"role {caller.role} may not {q.action} on {q.resource} (uploading {target})",
            "grant it deployment/iam/airflow-role-policy.json (the stack's Airflow role has it) "
            "or point PIPELINE_CODE_URI inside the lake",
        )
        for q in denied
    ]


def check_monitoring(settings: Settings, aws: Clients) -> list[Finding]:
    """May the caller publish the run's metrics to its namespace (PIPELINE_CLOUDWATCH_METRICS) and
    the alerts to their topic (PIPELINE_ALERT_SNS_TOPIC_ARN)? Judged from its own policies: neither
    call has a read-only twin, and a test metric or message would land where people watch."""
    asked: list[tuple[str, Request, str]] = []
    if settings.cloudwatch_metrics:
        namespace = settings.cloudwatch_namespace
        asked.append(
            (
                "CloudWatch metrics",
                Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace}),
                f"grant it PutMetricData on namespace {namespace} (deployment/iam/airflow-role-policy.json; "
                "the stack's Airflow role has it for the stack's MetricsNamespace), or set "
                "PIPELINE_CLOUDWATCH_NAMESPACE to that namespace",
            )
        )
    if settings.alerts.sns_topic_arn:
        topic = settings.alerts.sns_topic_arn
        asked.append(
            (
                "alerts topic",
                Request("sns:Publish", topic),
                "grant it sns:Publish on the topic (the stack's Airflow role has it for the stack's topic)",
            )
        )
    if not asked:
        return []
    caller = _caller(aws, aws["sts"].get_caller_identity())
    what = " and ".join(piece for piece, _, _ in asked)
    if caller.why_not:
        return [
            Finding(
                asked[0][0], f"permission for {what} not judged: {caller.why_not}", caller.fix, blocking=False
            )
        ]
    denied = _denied(caller, [q for _, q, _ in asked])
    if isinstance(denied, str):
        return [
            Finding(
                asked[0][0],
                f"permission for {what} not judged: a policy of role {caller.role} uses {denied}",
                "check the role's grants by hand",
                blocking=False,
            )
        ]
    return [
        Finding(piece, f"role {caller.role} may not {q.action} ({_context(q)})", fix)
        for piece, q, fix in asked
        if q in denied
    ]


def check_clickstream_stream(settings: Settings, aws: Clients) -> list[Finding]:
    """The Kinesis stream the clickstream is landed from (PIPELINE_CLICKSTREAM_KINESIS_STREAM):
    it exists and can be read (ACTIVE, or UPDATING while it reshards)."""
    name = settings.clickstream_stream
    if not name:
        return []
    piece = "clickstream stream"
    try:
        summary = aws["kinesis"].describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException" or _missing(exc):
            return [
                Finding(
                    piece,
                    f"Kinesis stream {name!r} does not exist in {settings.region or 'the region'}",
                    "deploy the stack with ClickstreamFromKinesis=true (its output names the stream) "
                    "or set PIPELINE_CLICKSTREAM_KINESIS_STREAM to the stream the events are put to",
                )
            ]
        return [_unreadable(piece, exc)]
    status = summary["StreamStatus"]
    if status not in ("ACTIVE", "UPDATING"):
        return [
            Finding(
                piece,
                f"Kinesis stream {name!r} is {status}",
                "wait until it is ACTIVE (being created) or point the setting at a live stream",
            )
        ]
    return []


def _context(q: Request) -> str:
    return ", ".join(f"{k}={v}" for k, v in q.context.items()) if q.context else q.resource


# each a Check, but the code location's, which also takes where this run's code goes
CHECKS: tuple[Callable[..., list[Finding]], ...] = (
    check_security_configuration,
    check_kms_key,
    check_roles,
    check_network,
    check_bucket,
    check_glue_databases,
    check_code_location,
    check_monitoring,
    check_clickstream_stream,
)


def run_checks(settings: Settings, aws: Clients, code_files: str) -> list[Finding]:
    """Every check's findings, in order; a check that fails unexpectedly is a finding too.
    `code_files` is where this run's code zip goes (include.packaging.code_location's py_files):
    the code location's check judges that one."""
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            if check is check_code_location:
                findings.extend(check_code_location(settings, aws, code_files))
            else:
                findings.extend(check(settings, aws))
        except ClientError as exc:
            findings.append(_unreadable(check.__name__.removeprefix("check_").replace("_", " "), exc))
    return findings


def report(findings: Sequence[Finding]) -> tuple[bool, str]:
    """(passed, text): one line per finding, blocking ones first."""
    blocking = [f for f in findings if f.blocking]
    notes = [f for f in findings if not f.blocking]
    lines = [f"preflight: {len(blocking)} missing or wrong, {len(CHECKS)} checks"]
    lines += [f"MISSING {f.line()}" for f in blocking]
    lines += [f"NOTE {f.line()}" for f in notes]
    return not blocking, "\n".join(lines)


def boto3_clients(region: str | None) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 10})
    session = boto3.session.Session(region_name=region)
    return {name: session.client(name, config=config) for name in SERVICES}
