"""Failure reasons a person acts on: refused writes stall the binding, and a TLS verification failure
anywhere in an exception's chain is CertificateUntrusted."""

from __future__ import annotations

import ssl

from azure.core.exceptions import ServiceRequestError

from synapse_scim.core.errors import untrusted_certificate
from synapse_scim.core.model import BindingReport, Problem
from synapse_scim.core.status import BindingOutcome, binding_conditions


def report() -> BindingReport:
    return BindingReport(desired=2, in_sync=2, pending_removal=0, unmanaged=0, held=0)


def conds(outcome: BindingOutcome) -> dict[str, tuple[str, str]]:
    return {c.type: ("True" if c.status else "False", c.reason) for c in binding_conditions(outcome, "ws")}


def test_a_refused_write_stalls_the_binding_and_names_every_problem():
    outcome = BindingOutcome(
        report=report(),
        problems=(Problem("DirectoryReadFailed", "429"),),
        write_errors=(Problem("AccessDenied", "403: give it Synapse Administrator"),),
    )
    c = conds(outcome)
    assert c["Stalled"] == ("True", "AccessDenied") and c["Ready"] == ("False", "AccessDenied")
    message = next(x.message for x in binding_conditions(outcome, "ws") if x.type == "Ready")
    assert "429" in message and "Synapse Administrator" in message


def test_a_transient_write_error_keeps_reconciling():
    c = conds(BindingOutcome(report=report(), write_errors=(Problem("WorkspaceReadFailed", "HTTP 503"),)))
    assert c["Reconciling"] == ("True", "WorkspaceReadFailed") and c["Stalled"][0] == "False"


def test_certificate_verification_failure_in_the_chain_is_named():
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
        except ssl.SSLCertVerificationError as inner:
            raise ServiceRequestError("Cannot connect to host") from inner
    except ServiceRequestError as exc:
        found = untrusted_certificate(exc, "listing role definitions")
    assert found is not None and found.reason == "CertificateUntrusted"
    assert "SYNAPSE_SCIM_AZURE_CA_BUNDLE" in found.message and "spec.endpoint" in found.message


def test_other_connection_failures_are_not_called_untrusted():
    assert untrusted_certificate(ServiceRequestError("Connect call failed"), "x") is None
