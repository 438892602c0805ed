"""The authorization questions AWS would ask for a recorded request (action, resource ARN,
condition keys such as the cluster's tags), and what the Airflow role is granted beyond what the
recorded DAG runs ask: the IAM tests judge the documents of deployment/iam with these."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from moto.core import DEFAULT_ACCOUNT_ID

from deployment.iam.evaluate import Request
from tests.harness.aws_fakes import REGION, AwsRequest

ACCOUNT = DEFAULT_ACCOUNT_ID

# Granted to the Airflow role although the recorded runs below do not call them, each with why.
# Anything granted that is neither recorded nor listed here fails the test: grants do not grow
# silently.
NOT_EXERCISED = {
    "elasticmapreduce:CancelSteps": "cancel running steps when a run fails or a task is killed",
    "elasticmapreduce:ListSteps": "find a step a retried add-steps task already added",
    "elasticmapreduce:ListClusters": "the janitor DAG finds clusters that outlived their run",
    "kms:Decrypt": "S3 decrypts SSE-KMS objects (logs) with the caller's permission",
    "kms:GenerateDataKey": "S3 encrypts uploads (the code zip) with the caller's permission",
    "glue:GetTable": "the rollback DAG finds a table's current metadata (tests/dags/test_upkeep.py)",
    "glue:UpdateTable": "the rollback DAG points a table back at its earlier snapshot",
    "sns:Publish": "alerts to PIPELINE_ALERT_SNS_TOPIC_ARN (tests/dags/test_alert_channels.py)",
}
# The clickstream's landing from Kinesis (PIPELINE_CLICKSTREAM_KINESIS_STREAM, off in the runs
# above): tests/dags/test_kinesis_clickstream.py records its calls and judges them the same way.
KINESIS_LANDING = {
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
    "kinesis:GetShardIterator",
    "kinesis:GetRecords",
}
# The emr-serverless target's calls (include/targets/serverless.py lists them), granted to the same
# Airflow role but made by neither target's EMR runs recorded here; tests/security/test_iam.py
# asks each of them on the run's application and on another project's.
SERVERLESS_TARGET = {
    "emr-serverless:CreateApplication",
    "emr-serverless:ListApplications",
    "emr-serverless:GetApplication",
    "emr-serverless:StartApplication",
    "emr-serverless:StopApplication",
    "emr-serverless:DeleteApplication",
    "emr-serverless:StartJobRun",
    "emr-serverless:ListJobRuns",
    "emr-serverless:GetJobRun",
    "emr-serverless:CancelJobRun",
    "emr-serverless:TagResource",
    "iam:CreateServiceLinkedRole",
}
# Preflight's reads: off in these runs (an account holding only the lake bucket); the nightly run
# against the deployed stack records them (tests/dags/test_emr_on_stack.py).
PREFLIGHT_ONLY = {
    "elasticmapreduce:DescribeSecurityConfiguration",
    "ec2:DescribeSubnets",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "iam:GetRole",
    "iam:GetInstanceProfile",
    "iam:ListRolePolicies",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "s3:GetEncryptionConfiguration",
    "kms:DescribeKey",
    "glue:GetDatabase",
}


def _resources_glue(body: dict) -> list[str]:
    base = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    db = body.get("DatabaseName") or body.get("DatabaseInput", {}).get("Name")
    table = body.get("TableName") or body.get("Name") or body.get("TableInput", {}).get("Name")
    out = [f"{base}:catalog", f"{base}:database/{db}"]
    if table and "DatabaseInput" not in body:
        out.append(f"{base}:table/{db}/{table}")
    return out


def authorization_questions(req: AwsRequest, cluster_tags: dict[str, dict[str, str]]) -> list[Request]:
    """What IAM checks for one recorded request (an action may need several resources)."""
    if req.action.startswith("ElasticMapReduce."):
        action = "elasticmapreduce:" + req.action.split(".", 1)[1]
        body = req.body
        if action == "elasticmapreduce:RunJobFlow":
            tags = {t["Key"]: t["Value"] for t in body.get("Tags", [])}
            context = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
            role = f"arn:aws:iam::{ACCOUNT}:role"
            return [
                Request(action, "*", context),
                Request(
                    "iam:PassRole",
                    f"{role}/{body['ServiceRole']}",
                    {"iam:PassedToService": "elasticmapreduce.amazonaws.com"},
                ),
                Request(
                    "iam:PassRole",
                    f"{role}/{body['JobFlowRole']}",
                    {"iam:PassedToService": "ec2.amazonaws.com"},
                ),
            ]
        if action in ("elasticmapreduce:ListClusters", "elasticmapreduce:DescribeSecurityConfiguration"):
            return [Request(action, "*")]
        ids = body.get("JobFlowIds") or [body.get("ClusterId") or body["JobFlowId"]]
        return [
            Request(
                action,
                f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{cid}",
                {f"aws:ResourceTag/{k}": v for k, v in cluster_tags.get(cid, {}).items()},
            )
            for cid in ids
        ]
    if req.action.startswith("AWSGlue."):
        action = "glue:" + req.action.split(".", 1)[1]
        if action == "glue:GetDatabase":  # the database is the request's Name
            base = f"arn:aws:glue:{REGION}:{ACCOUNT}"
            return [
                Request(action, f"{base}:catalog"),
                Request(action, f"{base}:database/{req.body['Name']}"),
            ]
        return [Request(action, arn) for arn in _resources_glue(req.body)]
    if req.action.startswith("GraniteServiceVersion20100801."):  # CloudWatch (JSON protocol)
        action = "cloudwatch:" + req.action.split(".", 1)[1]
        assert action == "cloudwatch:PutMetricData", f"map {action} to IAM"
        # no resource-level permission; the namespace is the condition key
        return [Request(action, "*", {"cloudwatch:namespace": req.body["Namespace"]})]
    if req.action.startswith("Kinesis_20131202."):
        # every call names the stream (the landing passes its ARN; DescribeStreamSummary its name)
        arn = (
            req.body.get("StreamARN") or f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{req.body['StreamName']}"
        )
        return [Request("kinesis:" + req.action.split(".", 1)[1], arn)]
    if req.action.startswith("TrentService."):  # KMS
        key = req.body["KeyId"]
        arn = key if key.startswith("arn:") else f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}"
        return [Request("kms:" + req.action.split(".", 1)[1], arn)]
    if req.service in ("ec2", "iam", "sts"):  # query protocol: the action is a form field
        return _query_questions(req.service, {k: v[0] for k, v in parse_qs(req.body.decode()).items()})
    assert not req.action, f"map {req.action} to IAM"
    url = urlsplit(req.url)
    bucket, _, key = url.path.lstrip("/").partition("/")
    query = parse_qs(url.query, keep_blank_values=True)
    if not key:
        if "encryption" in query:
            return [Request("s3:GetEncryptionConfiguration", f"arn:aws:s3:::{bucket}")]
        assert req.method in ("GET", "HEAD"), f"bucket-level {req.method} {req.url}"
        prefix = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
        return [Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", prefix)]
    obj = f"arn:aws:s3:::{bucket}/{key}"
    if req.method == "HEAD":
        # a missing key answers 404 (what check_for_key expects) only with ListBucket, else 403
        return [Request("s3:GetObject", obj), Request("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
    if req.method == "POST" and ("uploads" in query or "uploadId" in query):
        # a multipart upload (the 43 MB listener jar): starting and completing it is PutObject's
        return [Request("s3:PutObject", obj)]
    if req.method == "DELETE" and "uploadId" in query:
        return [Request("s3:AbortMultipartUpload", obj)]
    action = {"GET": "s3:GetObject", "PUT": "s3:PutObject", "DELETE": "s3:DeleteObject"}[req.method]
    return [Request(action, obj)]


def _query_questions(service: str, form: dict[str, str]) -> list[Request]:
    action = form["Action"]
    if service == "sts":
        # GetCallerIdentity needs no permission; AssumeRole is the worker's own credentials
        # asking to become the Airflow role, before any call as that role
        assert action in ("GetCallerIdentity", "AssumeRole"), action
        return []
    if service == "ec2":
        return [Request(f"ec2:{action}", "*")]  # EC2's Describe* have no resource-level permission
    iam_arn = f"arn:aws:iam::{ACCOUNT}"
    if action == "GetInstanceProfile":
        return [Request(f"iam:{action}", f"{iam_arn}:instance-profile/{form['InstanceProfileName']}")]
    if "RoleName" in form:
        return [Request(f"iam:{action}", f"{iam_arn}:role/{form['RoleName']}")]
    return [Request(f"iam:{action}", form["PolicyArn"])]
