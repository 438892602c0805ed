"""deployment/iam's `${Placeholders}` as CloudFormation values, and what every resource of the
stack shares (its tag, the retention of data)."""

from __future__ import annotations

import re
from typing import Any

from deployment import iam
from plugins.emr_naming import PROJECT
from spark_jobs.catalog import namespaces

# Outside the lake prefix: the nodes read the whole lake, and nobody else needs the private key.
TLS_CERTIFICATES_KEY = "_security/emr-tls-certificates.zip"
PROJECT_TAG = {"Key": "project", "Value": PROJECT}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


def _text_placeholders() -> dict[str, str]:
    """Placeholders that stand for a name made of other placeholders: expanded as text first."""
    curated = namespaces("s3://bucket/prefix", "${GlueDatabasePrefix}")["curated"]
    return {
        "GlueDatabase": curated,
        "AirflowRoleName": iam.ROLE_NAMES["airflow"],
        "EmrServiceRoleName": iam.ROLE_NAMES["emr-service"],
        "EmrInstanceRoleName": iam.ROLE_NAMES["emr-instance-profile"],
        "ServerlessExecutionRoleName": iam.ROLE_NAMES["serverless-execution"],
        "ClickstreamStreamName": iam.CLICKSTREAM_STREAM_NAME,
    }


def _values() -> dict[str, Any]:
    """The remaining placeholders: a literal, or what Fn::Sub looks up for them."""
    return {
        "Account": {"Ref": "AWS::AccountId"},
        "Region": {"Ref": "AWS::Region"},
        "Project": PROJECT,
        "LakeBucket": {"Ref": "LakeBucket"},
        "LakePrefix": {"Ref": "LakePrefix"},
        "GlueDatabasePrefix": {"Ref": "GlueDatabasePrefix"},
        "KmsKeyArn": {"Fn::GetAtt": ["LakeKey", "Arn"]},
        "TlsCertificatesBucket": {"Ref": "LakeBucket"},
        "TlsCertificatesKey": TLS_CERTIFICATES_KEY,
        "MetricsNamespace": {"Ref": "MetricsNamespace"},
        "AlertsTopicArn": {"Ref": "AlertsTopic"},
    }


def sub(text: str) -> Any:
    """`text` with deployment/iam's placeholders as CloudFormation: a plain string when every one is
    a literal, else `Fn::Sub` with a variable map of exactly the placeholders it uses."""
    for name, expansion in _text_placeholders().items():
        text = text.replace("${" + name + "}", expansion)
    values = _values()
    unknown = set(_PLACEHOLDER.findall(text)) - set(values)
    if unknown:
        raise KeyError(f"no CloudFormation value for {sorted(unknown)} in {text!r}")
    variables: dict[str, Any] = {}
    for name in dict.fromkeys(_PLACEHOLDER.findall(text)):
        if isinstance(values[name], str):
            text = text.replace("${" + name + "}", values[name])
        else:
            variables[name] = values[name]
    # deployment/iam writes ARNs of the commercial partition; the stack deploys to any
    partitioned = text.replace("arn:aws:", "arn:${AWS::Partition}:")
    if variables:
        return {"Fn::Sub": [partitioned, variables]}
    return {"Fn::Sub": partitioned} if partitioned != text else text


def cfn(doc: Any) -> Any:
    """A JSON document of deployment/ with every string that holds a placeholder made CloudFormation."""
    if isinstance(doc, dict):
        return {k: cfn(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [cfn(v) for v in doc]
    if isinstance(doc, str) and ("${" in doc or doc.startswith("arn:aws:")):
        return sub(doc)
    return doc


def as_json(doc: Any) -> dict[str, Any]:
    """`doc` passed on as the JSON text the service stores and returns (what EMR and IAM get from
    their own APIs), still written as a structure here: Fn::ToJsonString (AWS::LanguageExtensions)."""
    return {"Fn::ToJsonString": doc}


def retained(resource: dict[str, Any]) -> dict[str, Any]:
    """Data and the key that encrypts it outlive the stack: `make aws-destroy` keeps both."""
    return {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", **resource}
