"""EMR's in-transit encryption certificates: a PEM zip made here (self-signed), uploaded where the stack says.

    python -m infra.tls_certs --stack NAME --region REGION [--if-missing]   # upload to the stack's URI
    python -m infra.tls_certs --out certs.zip --region REGION               # only write the zip

EMR's PEM provider reads a zip with `privateKey.pem`, `certificateChain.pem` and
`trustedCertificates.pem` from S3 when a node boots, and every node presents that certificate,
so its name must match the nodes' private DNS names: `*.ec2.internal` in us-east-1,
`*.<region>.compute.internal` elsewhere. A self-signed certificate is a start: it encrypts
traffic between the nodes, which trust only it. For a certificate of your own CA, zip the same
three files and upload them to the same URI (PIPELINE_EMR_TLS_CERTIFICATES_URI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from plugins.emr_naming import PROJECT

VALID_DAYS = 365
ZIP_MEMBERS = ("privateKey.pem", "certificateChain.pem", "trustedCertificates.pem")
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def node_domain(region: str) -> str:
    """The wildcard name of EC2 private DNS in `region` (what EMR nodes are called)."""
    return "*.ec2.internal" if region == "us-east-1" else f"*.{region}.compute.internal"


def certificates_zip(region: str, *, now: dt.datetime | None = None, days: int = VALID_DAYS) -> bytes:
    """A new RSA key and a self-signed certificate for `region`'s node names, zipped as EMR reads them."""
    now = now or dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_domain(region)),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, PROJECT),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_domain(region))]), critical=False)
        # self-signed: the certificate is its own trust anchor, so it is a CA of itself only
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in zip(ZIP_MEMBERS, (key_pem, cert_pem, cert_pem), strict=True):
            zf.writestr(zipfile.ZipInfo(member, _FIXED_TIME), data)
    return buffer.getvalue()


def upload(s3: Any, uri: str, data: bytes, *, if_missing: bool) -> str:
    """Put the zip at `uri` (the bucket's default encryption applies): 'uploaded' or 'kept'."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if if_missing:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        if any(obj["Key"] == key for obj in listed):
            return "kept"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return "uploaded"


def main(argv: Sequence[str] | None = None, clients: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tls_certs", description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True, help="region of the clusters (names the certificate)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="upload to the stack's PIPELINE_EMR_TLS_CERTIFICATES_URI")
    where.add_argument("--out", help="write the zip to this file instead")
    parser.add_argument("--if-missing", action="store_true", help="keep a zip already at the stack's URI")
    args = parser.parse_args(argv)
    data = certificates_zip(args.region)
    if args.out:
        with open(args.out, "wb") as f:
            f.write(data)
        print(f"wrote {args.out} ({node_domain(args.region)}, valid {VALID_DAYS} days)")
        return 0
    from infra.deploy import outputs

    if clients is None:
        import boto3

        clients = {name: boto3.client(name, region_name=args.region) for name in ("cloudformation", "s3")}
    uri = outputs(clients["cloudformation"], args.stack).get("PIPELINE_EMR_TLS_CERTIFICATES_URI")
    if not uri:
        print(f"infra.tls_certs: stack {args.stack} names no TLS certificates URI", file=sys.stderr)
        return 1
    outcome = upload(clients["s3"], uri, data, if_missing=args.if_missing)
    print(f"TLS certificates for {node_domain(args.region)}: {outcome} {uri}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
