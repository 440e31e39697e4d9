"""The one shape of a failure that reaches status: a CamelCase reason and a message that says the fix."""

from __future__ import annotations

import ssl

from synapse_scim.core.reasons import Reason


class ReasonedError(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def first_line(text: str, limit: int = 300) -> str:
    """The first line of an SDK error, bounded: their texts carry whole response bodies."""
    stripped = text.strip()
    return stripped.splitlines()[0][:limit] if stripped else ""


def untrusted_certificate(exc: BaseException, what: str) -> ReasonedError | None:
    """The failure as CertificateUntrusted if, somewhere in its chain, a TLS certificate failed
    verification; None otherwise. Verification is never turned off: a person must fix the trust."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(link):
            detail = getattr(link, "verify_message", None) or "certificate verify failed"
            return ReasonedError(
                Reason.CERTIFICATE_UNTRUSTED,
                f"{what}: the server's TLS certificate is not trusted ({detail}): check the host in spec.endpoint "
                "and spec.cloud; if Azure is reached through a private CA or a TLS-inspecting proxy, give the "
                "operator that CA (chart value azureCABundle, env SYNAPSE_SCIM_AZURE_CA_BUNDLE)",
            )
        link = link.__cause__ or link.__context__
    return None
