"""App registrations (the clients that may get tokens), their credentials, and issued access tokens.

A client authenticates with one of:
- a client secret;
- a certificate: MSAL / azure-identity send a `client_assertion` JWT signed with the certificate's
  RSA key (RS256 with an `x5t` header or PS256 with `x5t#S256`); the signature is verified against
  the registered certificate, and `iss`/`sub` must be the client id and `exp` in the future;
- a federated (workload identity) token: the `client_assertion` must equal the registered token,
  i.e. the content of the file `AZURE_FEDERATED_TOKEN_FILE` points at. No issuer discovery is done.

Access tokens are JWT-shaped (header.payload.signature; the payload carries aud, tid, appid, oid,
roles, iat, exp) but unsigned: the sandbox keeps a table token -> (client, audience, expiry) and that
table is the only thing Graph and Synapse trust.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

GRAPH_AUDIENCE = "https://graph.microsoft.com"
SYNAPSE_AUDIENCE = "https://dev.azuresynapse.net"
#: Resource (scope prefix) -> audience put in the token.
RESOURCES = {
    "https://graph.microsoft.com": GRAPH_AUDIENCE,
    "00000003-0000-0000-c000-000000000000": GRAPH_AUDIENCE,
    "https://dev.azuresynapse.net": SYNAPSE_AUDIENCE,
}
#: Graph application permissions a client may be given (`graph:` in the seed).
GRAPH_PERMISSIONS = (
    "Directory.Read.All",
    "Group.Read.All",
    "GroupMember.Read.All",
    "User.Read.All",
    "Application.Read.All",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    text = text.strip().rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AssertionRejected(Exception):
    """A client assertion that is not acceptable; `aadsts` is the error number to report."""

    def __init__(self, aadsts: int, message: str) -> None:
        super().__init__(message)
        self.aadsts = aadsts


@dataclass
class ClientCertificate:
    pem: bytes  # certificate only
    key_pem: bytes  # unencrypted PKCS8 private key (empty when only the public part is known)
    sha1: str  # base64url of the DER SHA-1 (x5t)
    sha256: str  # base64url of the DER SHA-256 (x5t#S256)
    public_key: rsa.RSAPublicKey

    @classmethod
    def from_pem(cls, pem: bytes, key_pem: bytes = b"") -> ClientCertificate:
        cert = x509.load_pem_x509_certificate(pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("client certificates must have an RSA key (azure-identity signs with RS256/PS256)")
        return cls(
            cert.public_bytes(serialization.Encoding.PEM),
            key_pem,
            b64url(hashlib.sha1(der).digest()),
            b64url(hashlib.sha256(der).digest()),
            key,
        )

    @classmethod
    def generate(cls, common_name: str) -> ClientCertificate:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls.from_pem(cert.public_bytes(serialization.Encoding.PEM), key_pem)

    def verify(self, signing_input: bytes, signature: bytes, alg: str) -> None:
        if alg == "RS256":
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
        elif alg == "PS256":
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        else:
            raise AssertionRejected(5002738, f"Unsupported client assertion algorithm '{alg}'.")
        try:
            self.public_key.verify(signature, signing_input, pad, hashes.SHA256())
        except InvalidSignature:
            raise AssertionRejected(7000274, "Client assertion contains an invalid signature.") from None


@dataclass
class AppRegistration:
    name: str
    client_id: str
    object_id: str  # the service principal's object id (what Synapse sees as principalId)
    secret: str | None = None
    certificate: ClientCertificate | None = None
    federated_token: str | None = None
    graph_permissions: tuple[str, ...] = GRAPH_PERMISSIONS
    certificate_path: Path | None = None  # PEM with key + certificate, for CertificateCredential
    federated_token_file: Path | None = None

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "client_id": self.client_id,
            "object_id": self.object_id,
            "secret": self.secret,
            "certificate_path": str(self.certificate_path) if self.certificate_path else None,
            "federated_token_file": str(self.federated_token_file) if self.federated_token_file else None,
            "graph_permissions": list(self.graph_permissions),
        }

    def write_files(self, directory: Path) -> None:
        """Write the certificate (key + cert PEM) and federated token file for SDK credentials."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        if self.certificate is not None and self.certificate.key_pem:
            self.certificate_path = directory / f"{safe}.pem"
            self.certificate_path.write_bytes(self.certificate.key_pem + self.certificate.pem)
            self.certificate_path.chmod(0o600)
        if self.federated_token is not None:
            self.federated_token_file = directory / f"{safe}.federated-token"
            self.federated_token_file.write_text(self.federated_token, encoding="utf-8")
            self.federated_token_file.chmod(0o600)

    def check_assertion(self, assertion: str, now: float, token_endpoint_suffix: str) -> None:
        """Accept a federated token or a certificate-signed JWT; raise AssertionRejected otherwise."""
        if self.federated_token is not None and secrets.compare_digest(
            assertion.strip().encode(), self.federated_token.strip().encode()
        ):
            return
        parts = assertion.split(".")
        try:
            header = json.loads(b64url_decode(parts[0])) if len(parts) == 3 else None
            claims = json.loads(b64url_decode(parts[1])) if len(parts) == 3 else None
            signature = b64url_decode(parts[2]) if len(parts) == 3 else b""
        except (ValueError, binascii.Error):
            header = claims = None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            header = claims = None
        x5t = header.get("x5t") if header else None
        x5t256 = header.get("x5t#S256") if header else None
        if self.federated_token is not None and (self.certificate is None or not (x5t or x5t256)):
            subject = claims.get("sub") if claims else None
            raise AssertionRejected(
                700213, f"No matching federated identity record found for presented assertion subject '{subject}'."
            )
        if header is None or claims is None:
            raise AssertionRejected(50027, "JWT token is invalid or malformed.")
        if self.certificate is None:
            raise AssertionRejected(700027, "The client has no certificate registered.")
        if not (
            (x5t and x5t.rstrip("=") == self.certificate.sha1)
            or (x5t256 and x5t256.rstrip("=") == self.certificate.sha256)
        ):
            raise AssertionRejected(
                700027,
                f"Client assertion failed signature validation. Key was not found for thumbprint '{x5t or x5t256}'.",
            )
        self.certificate.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature, str(header.get("alg")))
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            raise AssertionRejected(
                700023,
                "Client assertion audience claim does not match Realm issuer; iss and sub must be the client id.",
            )
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now:
            raise AssertionRejected(700024, "Client assertion is not within its valid time range.")
        if not str(claims.get("aud", "")).rstrip("/").endswith(token_endpoint_suffix):
            raise AssertionRejected(
                700021, f"Client assertion audience claim does not match the token endpoint: {claims.get('aud')!r}."
            )


@dataclass(slots=True)
class Token:
    client_id: str
    object_id: str
    audience: str
    issued_at: float
    expires_at: float
    roles: tuple[str, ...] = ()


@dataclass
class TokenStore:
    tokens: dict[str, Token] = field(default_factory=dict)
    issued: int = 0

    def issue(
        self, app: AppRegistration, audience: str, tenant_id: str, now: float, lifetime: float
    ) -> tuple[str, Token]:
        roles = app.graph_permissions if audience == GRAPH_AUDIENCE else ()
        token = Token(app.client_id, app.object_id, audience, now, now + lifetime, roles)
        header = {"typ": "JWT", "alg": "RS256", "kid": "synapse-scim-sandbox"}
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "appid": app.client_id,
            "azp": app.client_id,
            "oid": app.object_id,
            "sub": app.object_id,
            "tid": tenant_id,
            "idtyp": "app",
            "roles": list(roles),
            "ver": "1.0",
        }
        text = ".".join(
            (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(secrets.token_bytes(32)))
        )
        self.tokens[text] = token
        self.issued += 1
        if self.issued % 1024 == 0:
            self.purge(now - 3600)
        return text, token

    def purge(self, before: float) -> None:
        for key in [k for k, t in self.tokens.items() if t.expires_at < before]:
            del self.tokens[key]

    def expire(self, now: float, client_id: str | None = None) -> int:
        """Make issued tokens (of one client, or all) expired as of `now`; returns how many."""
        n = 0
        for t in self.tokens.values():
            if (client_id is None or t.client_id == client_id.lower()) and t.expires_at > now:
                t.expires_at = now - 1
                n += 1
        return n
