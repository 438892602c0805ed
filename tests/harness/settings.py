"""The emr target's settings of the tests' DAG runs against moto."""

from __future__ import annotations

EMR_ENV = {
    "PIPELINE_TARGET": "emr",
    "PIPELINE_LAKE": "s3://lake-bucket/lake",
    "PIPELINE_EMR_SUBNET_ID": "subnet-0123456789abcdef0",
    "PIPELINE_EMR_MASTER_SG": "sg-0123456789abcdef0",
    "PIPELINE_EMR_CORE_SG": "sg-0fedcba9876543210",
    "PIPELINE_EMR_POLL_SECONDS": "1",
    # the stand-in cluster writes no step logs: the sensors look once and say where they would be
    "PIPELINE_EMR_STEP_LOG_WAIT_SECONDS": "0",
    "PIPELINE_RETRIES": "0",  # a retry delay would stall dag.test(); retries are checked on the structure
    "PIPELINE_GLUE_DATABASE_PREFIX": "analytics_test",
    # These runs are about the DAG, in an account holding only the lake bucket; preflight is
    # tested against the deployed stack of infra/ (tests/infra/).
    "PIPELINE_EMR_PREFLIGHT": "false",
}

# The emr-serverless target's: the lake, code and logs as EMR's, the application's network, the
# job runtime role (moto's account) and the KMS key the job runs' logs and writes are encrypted with.
SERVERLESS_ENV = {
    **EMR_ENV,
    "PIPELINE_TARGET": "emr-serverless",
    "PIPELINE_SERVERLESS_EXECUTION_ROLE": "arn:aws:iam::123456789012:role/analytics-jobs",
    "PIPELINE_SERVERLESS_SECURITY_GROUP": "sg-0a1b2c3d4e5f60718",
    "PIPELINE_EMR_KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
