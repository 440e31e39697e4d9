"""An endpoint whose certificate the operator cannot verify is refused, with a clear reason: the
sandbox's CA is simply not given to the operator (SYNAPSE_SCIM_AZURE_CA_BUNDLE unset), as would be
the case for a man in the middle or a misconfigured private endpoint."""

from __future__ import annotations

from support.harness import RB_PLURAL, WS_PLURAL


def test_untrusted_certificate_is_refused_with_a_clear_reason(harness):
    h = harness
    manual = h.sb.admin.add_assignment("analytics", "Synapse Administrator", h.user_id("grace@contoso.onmicrosoft.com"))
    h.start_operator(SYNAPSE_SCIM_AZURE_CA_BUNDLE="")
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts", type_="Stalled", status="True", reason="CertificateUntrusted", timeout=120)
    ready = h.condition(RB_PLURAL, "analysts")
    assert ready["status"] == "False" and "certificate" in ready["message"].lower()
    assert "SYNAPSE_SCIM_AZURE_CA_BUNDLE" in ready["message"], ready["message"]
    assert h.condition(WS_PLURAL, "analytics")["reason"] == "CertificateUntrusted"
    # Not one request got through to a service: the TLS handshake failed before any was sent.
    log = h.sb.admin.request_log()
    assert [e for e in log if e["service"] in ("synapse", "graph") or e["operation"] == "token"] == [], log
    assert [a["id"] for a in h.assignments()] == [manual["id"]]
