"""A throw-away certificate authority and the server certificate all three sandbox listeners use.

Files written into the certificate directory:
- `ca.pem`: the CA certificate to trust (`connection_verify=`, `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`);
- `server.pem` / `server-key.pem`: the server certificate chain and key (valid for 127.0.0.1,
  ::1 and localhost).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass
class SandboxTLS:
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    server_context: ssl.SSLContext

    @classmethod
    def create(cls, cert_dir: Path) -> SandboxTLS:
        cert_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="synapse-scim sandbox")
        server = ca.issue_cert(*SERVER_NAMES)
        ca_path = cert_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        cert_path, key_path = cert_dir / "server.pem", cert_dir / "server-key.pem"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
        key_path.write_bytes(server.private_key_pem.bytes())
        key_path.chmod(0o600)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.configure_cert(context)
        return cls(ca_path, cert_path, key_path, context)


def client_context(ca_path: str | Path) -> ssl.SSLContext:
    """An SSL context for clients that trusts exactly the sandbox CA."""
    return ssl.create_default_context(cafile=str(ca_path))
