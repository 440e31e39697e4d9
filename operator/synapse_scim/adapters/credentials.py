"""azure-identity credentials per SynapseWorkspace: workload identity, client secret, certificate.

The credential kind comes from `spec.credential`; with none, the operator's own identity is used through
the DefaultAzureCredential chain (workload identity first when the pod has it). Secrets are read from
the cluster on every sync and the credential is rebuilt only when the Secret's content changed, so a
rotated secret is picked up without a restart and an unchanged one keeps its cached tokens.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    WorkloadIdentityCredential,
)

from synapse_scim.core.errors import ReasonedError
from synapse_scim.core.reasons import Reason

PUBLIC_CLOUD = {
    "authorityHost": "https://login.microsoftonline.com",
    "graphEndpoint": "https://graph.microsoft.com",
    "synapseAudience": "https://dev.azuresynapse.net",
}

# Reads one key of a Secret: (namespace, name, key) -> bytes. Raises CredentialError when missing.
SecretReader = Callable[[str, str, str], Awaitable[bytes]]


class CredentialError(ReasonedError):
    """A credential that cannot be built; `reason` is the condition reason shown in status."""


@dataclass(frozen=True)
class Cloud:
    authority_host: str
    graph_endpoint: str
    synapse_audience: str

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Cloud:
        merged = {**PUBLIC_CLOUD, **{k: v for k, v in (spec or {}).items() if v}}
        return cls(
            authority_host=merged["authorityHost"].rstrip("/"),
            graph_endpoint=merged["graphEndpoint"].rstrip("/"),
            synapse_audience=merged["synapseAudience"].rstrip("/"),
        )

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_endpoint}/.default"

    @property
    def synapse_scope(self) -> str:
        return f"{self.synapse_audience}/.default"


def azure_ca_bundle() -> str | None:
    """The CA bundle for Azure endpoints (a private CA such as the sandbox's), if one is configured."""
    return os.environ.get("SYNAPSE_SCIM_AZURE_CA_BUNDLE") or None


def transport_kwargs() -> dict[str, Any]:
    """azure-core's spelling of azure_ca_bundle(); verification always stays on."""
    ca = azure_ca_bundle()
    return {"connection_verify": ca} if ca else {}


class CredentialCache:
    """One credential per workspace, rebuilt when its spec or its Secret's content changes."""

    def __init__(self, read_secret: SecretReader) -> None:
        self._read_secret = read_secret
        self._cache: dict[str, tuple[str, AsyncTokenCredential]] = {}

    async def get(
        self, key: str, namespace: str, tenant_id: str, spec: Mapping[str, Any] | None, cloud: Cloud
    ) -> AsyncTokenCredential:
        material, build = await self._material(namespace, tenant_id, spec or {}, cloud)
        fingerprint = hashlib.sha256(
            repr((tenant_id, sorted((spec or {}).items()), cloud)).encode() + material
        ).hexdigest()
        cached = self._cache.get(key)
        if cached and cached[0] == fingerprint:
            return cached[1]
        try:
            credential = build()
        except ValueError as exc:  # azure-identity refuses the material itself, e.g. an EC key for RS256
            raise CredentialError(
                Reason.CREDENTIAL_INVALID, f"spec.credential: {exc}: fix the key material in the Secret it names"
            ) from exc
        self._cache[key] = (fingerprint, credential)
        if cached:
            await cached[1].close()
        return credential

    async def drop(self, key: str) -> None:
        cached = self._cache.pop(key, None)
        if cached:
            await cached[1].close()

    async def close(self) -> None:
        for key in list(self._cache):
            await self.drop(key)

    async def _material(
        self, namespace: str, tenant_id: str, spec: Mapping[str, Any], cloud: Cloud
    ) -> tuple[bytes, Callable[[], AsyncTokenCredential]]:
        common = {"authority": cloud.authority_host, **transport_kwargs()}
        if "clientSecret" in spec:
            cs = spec["clientSecret"]
            ref = cs.get("secretRef") or {}
            secret = await self._read_secret(namespace, ref.get("name", ""), ref.get("key") or "clientSecret")
            value = secret.decode().strip()
            if not value:
                raise CredentialError(
                    Reason.SECRET_KEY_EMPTY,
                    f"Secret {ref.get('name')!r} key "
                    f"{ref.get('key') or 'clientSecret'!r} is empty: put the client secret there",
                )
            return secret, lambda: ClientSecretCredential(tenant_id, cs["clientId"], value, **common)
        if "certificate" in spec:
            cert = spec["certificate"]
            ref = cert.get("secretRef") or {}
            pem = await self._read_secret(namespace, ref.get("name", ""), ref.get("key") or "tls.pem")
            if b"PRIVATE KEY" not in pem or b"CERTIFICATE" not in pem:
                raise CredentialError(
                    Reason.CERTIFICATE_INVALID,
                    f"Secret {ref.get('name')!r} key {ref.get('key') or 'tls.pem'!r} must hold a PEM private key "
                    "and certificate",
                )
            return pem, lambda: CertificateCredential(
                tenant_id,
                cert["clientId"],
                certificate_data=pem,
                send_certificate_chain=bool(cert.get("sendCertificateChain")),
                **common,
            )
        if "workloadIdentity" in spec:
            wi = spec["workloadIdentity"]
            token_file = os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
            if not token_file:
                raise CredentialError(
                    Reason.WORKLOAD_IDENTITY_UNAVAILABLE,
                    "spec.credential.workloadIdentity needs the pod to run with Azure workload identity "
                    "(AZURE_FEDERATED_TOKEN_FILE is not set): label the pod azure.workload.identity/use=true",
                )
            return wi["clientId"].encode(), lambda: WorkloadIdentityCredential(
                tenant_id=tenant_id,
                client_id=wi["clientId"],
                token_file_path=token_file,
                **common,
            )
        # The operator's own identity. On AKS with workload identity the pod has a federated token and a
        # client id: use them directly, with this workspace's tenant and authority (the async
        # DefaultAzureCredential passes neither to its workload-identity link, so a sovereign-cloud or
        # per-workspace tenant would be ignored). Otherwise the DefaultAzureCredential chain.
        token_file, client_id = os.environ.get("AZURE_FEDERATED_TOKEN_FILE"), os.environ.get("AZURE_CLIENT_ID")
        if token_file and client_id:
            return f"workload:{client_id}".encode(), lambda: WorkloadIdentityCredential(
                tenant_id=tenant_id,
                client_id=client_id,
                token_file_path=token_file,
                **common,
            )
        return b"default", lambda: DefaultAzureCredential(
            authority=cloud.authority_host,
            exclude_visual_studio_code_credential=True,
            exclude_shared_token_cache_credential=True,
            exclude_cli_credential=True,
            exclude_powershell_credential=True,
            exclude_developer_cli_credential=True,
            **transport_kwargs(),
        )
