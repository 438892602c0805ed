"""The stack's resources a run uses: the lake bucket and its KMS key, the EMR security
configuration, the three roles, the zones' Glue databases, the private network, the clickstream's
Kinesis stream."""

from __future__ import annotations

from typing import Any

from deployment import iam
from include.settings import Settings
from infra.cfn import PROJECT_TAG, as_json, cfn, retained, sub
from infra.documents import security_configuration
from plugins.emr_naming import PROJECT
from spark_jobs.catalog import namespaces

# AmazonEMRServicePolicy_v2 lets EMR create network interfaces and instances only in subnets and
# security groups carrying this tag.
EMR_MANAGED_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
# Interface endpoints the nodes need in a subnet without a NAT: the Glue Data Catalog (Iceberg's
# catalog) and KMS (local disk and SSE-KMS keys). S3 gets a gateway endpoint (free).
INTERFACE_ENDPOINTS = ("glue", "kms")


def storage() -> dict[str, Any]:
    lake_objects = sub("arn:aws:s3:::${LakeBucket}/*")
    return {
        "LakeKey": retained(
            {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "Description": f"{PROJECT}: the lake (SSE-KMS) and the EMR nodes' disks",
                    "EnableKeyRotation": True,
                    # IAM policies of this account decide who uses the key (deployment/iam grants it).
                    "KeyPolicy": as_json(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "IamPoliciesOfThisAccountDecide",
                                    "Effect": "Allow",
                                    "Principal": {"AWS": sub("arn:aws:iam::${Account}:root")},
                                    "Action": "kms:*",
                                    "Resource": "*",
                                }
                            ],
                        }
                    ),
                    # tagged `project` by the stack's own tags (make aws-deploy sets them)
                },
            }
        ),
        "LakeBucket": retained(
            {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {
                                "ServerSideEncryptionByDefault": {
                                    "SSEAlgorithm": "aws:kms",
                                    "KMSMasterKeyID": {"Fn::GetAtt": ["LakeKey", "Arn"]},
                                },
                                "BucketKeyEnabled": True,  # one KMS call per object batch, not per object
                            }
                        ]
                    },
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                    # Versioning keeps overwritten and deleted objects: they go after 30 days.
                    "LifecycleConfiguration": {
                        "Rules": [
                            {
                                "Id": "ExpireOldVersionsAndAbandonedUploads",
                                "Status": "Enabled",
                                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                            }
                        ]
                    },
                    "Tags": [PROJECT_TAG],
                },
            }
        ),
        "LakeBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "LakeBucket"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [sub("arn:aws:s3:::${LakeBucket}"), lake_objects],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def emr_security() -> dict[str, Any]:
    # The document infra/documents.py defines, with the stack's key and certificates.
    placeholders = Settings(
        target="emr",
        kms_key_arn="${KmsKeyArn}",
        s3_encryption="SSE-KMS",
        tls_certificates_uri="s3://${TlsCertificatesBucket}/${TlsCertificatesKey}",
    )
    return {
        # No Name: CloudFormation names it, so a changed document (EMR's are immutable) is a
        # replacement under a new name, which the output then carries.
        "SecurityConfiguration": {
            "Type": "AWS::EMR::SecurityConfiguration",
            "Properties": {"SecurityConfiguration": as_json(cfn(security_configuration(placeholders)))},
        }
    }


def roles() -> dict[str, Any]:
    resources: dict[str, Any] = {}
    logical = {
        "airflow": "AirflowRole",
        "emr-service": "EmrServiceRole",
        "emr-instance-profile": "EmrInstanceRole",
        "serverless-execution": "ServerlessExecutionRole",
    }
    for role, spec in iam.ROLES.items():
        if spec["trust"]:
            trust = cfn(iam.document(spec["trust"]))
        else:  # Airflow's role: assumed by the principal the deployer names, or this account's
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TheAirflowWorkers",
                        "Effect": "Allow",
                        "Principal": {
                            "AWS": {
                                "Fn::If": [
                                    "HasAirflowPrincipal",
                                    {"Ref": "AirflowPrincipalArn"},
                                    sub("arn:aws:iam::${Account}:root"),
                                ]
                            }
                        },
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        properties: dict[str, Any] = {
            "RoleName": sub(iam.ROLE_NAMES[role]),
            "Description": f"{PROJECT}: {role} (least privilege, deployment/iam/{spec['policy']})",
            "AssumeRolePolicyDocument": trust,
            "Policies": [
                {"PolicyName": PROJECT, "PolicyDocument": as_json(cfn(iam.document(spec["policy"])))}
            ],
            "Tags": [PROJECT_TAG],
        }
        if spec["managed"]:
            properties["ManagedPolicyArns"] = [sub(arn) for arn in spec["managed"]]
        resources[logical[role]] = {"Type": "AWS::IAM::Role", "Properties": properties}
        if role == "serverless-execution":
            resources[logical[role]]["Condition"] = "ServerlessTarget"
    resources["EmrInstanceProfile"] = {
        "Type": "AWS::IAM::InstanceProfile",
        "Properties": {
            # named like its role: deployment/iam (PassRole) and EMR's defaults assume so
            "InstanceProfileName": sub(iam.ROLE_NAMES["emr-instance-profile"]),
            "Roles": [{"Ref": "EmrInstanceRole"}],
        },
    }
    return resources


def glue() -> dict[str, Any]:
    resources = {}
    for zone, database in namespaces("s3://bucket/prefix", "${GlueDatabasePrefix}").items():
        resources[f"Glue{zone.capitalize()}Database"] = {
            "Type": "AWS::Glue::Database",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseInput": {
                    "Name": sub(database),
                    "Description": f"{PROJECT}: the lake's {zone} zone (Iceberg tables)",
                },
            },
        }
    return resources


def network() -> dict[str, Any]:
    def tagged(name: str) -> list[dict[str, str]]:
        return [EMR_MANAGED_TAG, PROJECT_TAG, {"Key": "Name", "Value": f"{PROJECT}-{name}"}]

    vpc = {"Ref": "Vpc"}
    resources: dict[str, Any] = {
        "Vpc": {
            "Type": "AWS::EC2::VPC",
            "Properties": {
                "CidrBlock": {"Ref": "VpcCidr"},
                # EMR needs DNS hostnames; interface endpoints need both for their private DNS
                "EnableDnsSupport": True,
                "EnableDnsHostnames": True,
                "Tags": tagged("vpc"),
            },
        },
        "PrivateSubnet": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {
                "VpcId": vpc,
                "CidrBlock": {"Ref": "SubnetCidr"},
                "AvailabilityZone": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": False,
                "Tags": tagged("private"),
            },
        },
        # no internet gateway and no NAT: the subnet reaches AWS through the endpoints only
        "PrivateRouteTable": {
            "Type": "AWS::EC2::RouteTable",
            "Properties": {"VpcId": vpc, "Tags": tagged("private")},
        },
        "PrivateSubnetRouteTable": {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {
                "SubnetId": {"Ref": "PrivateSubnet"},
                "RouteTableId": {"Ref": "PrivateRouteTable"},
            },
        },
        "S3Endpoint": {
            "Type": "AWS::EC2::VPCEndpoint",
            "Properties": {
                "VpcId": vpc,
                "VpcEndpointType": "Gateway",
                "ServiceName": {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"},
                "RouteTableIds": [{"Ref": "PrivateRouteTable"}],
            },
        },
        "EndpointSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "HTTPS from the VPC to the interface endpoints",
                "VpcId": vpc,
                "SecurityGroupIngress": [
                    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": {"Ref": "VpcCidr"}}
                ],
                "Tags": tagged("endpoints"),
            },
        },
    }
    for service in INTERFACE_ENDPOINTS:
        resources[f"{service.capitalize()}Endpoint"] = {
            "Type": "AWS::EC2::VPCEndpoint",
            "Properties": {
                "VpcId": vpc,
                "VpcEndpointType": "Interface",
                "ServiceName": {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"},
                "SubnetIds": [{"Ref": "PrivateSubnet"}],
                "SecurityGroupIds": [{"Ref": "EndpointSecurityGroup"}],
                "PrivateDnsEnabled": True,
            },
        }
    # EMR-managed security groups: created empty, EMR writes their rules (and keeps them minimal).
    for logical, what in (
        ("EmrMasterSecurityGroup", "primary node"),
        ("EmrCoreSecurityGroup", "core and task nodes"),
        ("EmrServiceAccessSecurityGroup", "EMR service access (private subnet)"),
    ):
        resources[logical] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": f"EMR-managed: {what}",
                "VpcId": vpc,
                "Tags": tagged(logical.removeprefix("Emr").removesuffix("SecurityGroup").lower()),
            },
        }
    return {name: {"Condition": "CreateNetwork", **resource} for name, resource in resources.items()}


def clickstream() -> dict[str, Any]:
    """The stream the clickstream's producers put to (the nightly's land_clickstream task reads it,
    include/clickstream_kinesis.py). On demand: no shards to size; a week of retention, so a
    nightly that could not run for days still finds its records; encrypted with Kinesis' AWS
    managed key, which its readers use through Kinesis without a grant of their own."""
    stream = {
        "Type": "AWS::Kinesis::Stream",
        "Condition": "ClickstreamFromKinesis",
        "Properties": {
            "Name": iam.clickstream_stream_name(),
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
            "RetentionPeriodHours": 168,
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
            "Tags": [PROJECT_TAG],
        },
    }
    return {"ClickstreamStream": retained(stream)}


def serverless_network() -> dict[str, Any]:
    """The security group of the emr-serverless application's network interfaces in the private
    subnet: no inbound rule; outbound HTTPS only (the subnet reaches its S3, Glue and KMS endpoints
    and nothing else)."""
    group = {
        "Type": "AWS::EC2::SecurityGroup",
        "Condition": "ServerlessNetwork",
        "Properties": {
            "GroupDescription": "EMR Serverless application: HTTPS out to the endpoints of the subnet",
            "VpcId": {"Ref": "Vpc"},
            "SecurityGroupEgress": [
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"}
            ],
            "Tags": [PROJECT_TAG, {"Key": "Name", "Value": f"{PROJECT}-serverless"}],
        },
    }
    return {"ServerlessSecurityGroup": group}
