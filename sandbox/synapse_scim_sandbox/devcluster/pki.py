"""A throw-away private PKI for a local control plane, the way envtest makes one.

One CA signs the API server's serving certificate and an admin client certificate (O=system:masters);
a separate key pair signs service-account tokens. The CA's key is kept too (`ca.key`), so that
`issue_serving_cert` can sign another serving certificate the same clients trust (the fault-injecting
proxy of apiproxy.py). ECDSA P-256 keys: generated in microseconds,
accepted by kube-apiserver for serving, client auth and service-account signing alike.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass(frozen=True)
class PKIFiles:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public_key: Path
    sa_private_key: Path


def write_pki(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> PKIFiles:
    """Create the CA, the serving and admin certificates and the service-account keys in directory."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = _key()
    ca_name = _name("synapse-scim-devcluster-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(subject: x509.Name, usage: ExtendedKeyUsageOID, sans: list[x509.GeneralName] | None):
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    sans = _sans((*hosts, "kubernetes", "kubernetes.default", "kubernetes.default.svc"))
    serving_key, serving_cert = leaf(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    admin_key, admin_cert = leaf(_name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None)
    sa_key = _key()

    files = PKIFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_public_key=directory / "sa.pub",
        sa_private_key=directory / "sa.key",
    )
    files.ca_cert.write_bytes(_pem_cert(ca_cert))
    files.ca_key.write_bytes(_pem_key(ca_key))
    files.serving_cert.write_bytes(_pem_cert(serving_cert))
    files.serving_key.write_bytes(_pem_key(serving_key))
    files.admin_cert.write_bytes(_pem_cert(admin_cert))
    files.admin_key.write_bytes(_pem_key(admin_key))
    files.sa_private_key.write_bytes(_pem_key(sa_key))
    files.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for private in (files.ca_key, files.serving_key, files.admin_key, files.sa_private_key):
        private.chmod(0o600)
    return files


def _sans(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return sans


def issue_serving_cert(
    ca_cert: Path,
    ca_key: Path,
    cert_out: Path,
    key_out: Path,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    common_name: str = "synapse-scim-devcluster-server",
) -> tuple[Path, Path]:
    """A serving certificate for `hosts` signed by the CA in `ca_cert`/`ca_key` (written to
    `cert_out` and `key_out`, the key 0600)."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .sign(signer, hashes.SHA256())
    )
    cert_out.write_bytes(_pem_cert(cert))
    key_out.write_bytes(_pem_key(key))
    key_out.chmod(0o600)
    return cert_out, key_out


def write_ca(directory: Path) -> tuple[Path, Path]:
    """A CA of its own (`ca.crt`, `ca.key` in directory): for a server in front of a cluster whose CA
    key is not at hand (an existing cluster)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = _key()
    name = _name("synapse-scim-devcluster-proxy-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    cert_path.write_bytes(_pem_cert(cert))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path
