"""The one shape of a failure that reaches status: a CamelCase reason and a message that says the fix."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from synapse_scim.core.reasons import Reason


class ReasonedError(Exception):
    """``retry_after``: the seconds the service asked us to wait (its Retry-After) before trying again,
    when it said so; the operator retries a failed sync no earlier than that."""

    def __init__(self, reason: Reason, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def retry_after_header(headers: Mapping[str, str] | None) -> float | None:
    """A response's Retry-After in seconds (delta-seconds or an HTTP date); None when it has none or it
    does not parse. ``headers`` must look names up case-insensitively (httpx and azure-core's do)."""
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


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
