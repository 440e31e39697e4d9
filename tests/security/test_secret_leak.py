"""No known secret value ever reaches a log line (text or JSON), an Event, a status or a metric.

A full run against the sandbox: a client-secret workspace and a certificate workspace granted, then
a wrong secret and a rotation back, once with text logs and once (after a restart) with JSON logs;
then everything the operator wrote is searched for the client secret, the wrong secrets, the private
key's PEM body and every access token the sandbox issued."""

from __future__ import annotations

import json
import re
import secrets
import urllib.request
from typing import Any

import pytest

from support.harness import RB_PLURAL, WS_PLURAL
from support.orgs import small_org, upn
from synapse_scim_sandbox.devcluster import free_port


@pytest.fixture
def org() -> dict[str, Any]:
    seed = small_org()
    seed["workspaces"].append({"name": "reporting"})
    return seed


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def poke(h, workspace: str, n: int) -> None:
    h.patch(WS_PLURAL, workspace, {"metadata": {"annotations": {"example.com/poke": str(n)}}})


def wrong_secret_then_rotation(h, wrong: str, n: int) -> None:
    h.secret("synapse-sp", {"clientSecret": wrong})
    poke(h, "analytics", n)
    h.wait_condition(RB_PLURAL, "analysts", type_="Stalled", status="True", reason="AuthenticationFailed")
    h.secret("synapse-sp", {"clientSecret": h.app.secret})
    poke(h, "analytics", n + 1)
    h.wait_condition(RB_PLURAL, "analysts")


def private_key_body(pem: str) -> list[str]:
    block = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.+?)\n-----END", pem, re.S)
    assert block, "the sandbox's certificate file holds a private key"
    return [line for line in block.group(1).splitlines() if len(line) >= 40]  # the short last line is not unique


def test_no_known_secret_in_logs_events_status_or_metrics(harness):
    h = harness
    wrong = [f"wrong-{secrets.token_urlsafe(24)}" for _ in range(2)]
    pem = h.app.certificate_path.read_text()
    metrics: list[str] = []

    # Text logs: both credential kinds, a wrong secret, a rotation.
    port = free_port()
    h.start_operator(SYNAPSE_SCIM_METRICS_PORT=str(port))
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.secret("synapse-cert", {"tls.pem": pem})
    h.workspace(
        "reporting",
        client_id=h.app.client_id,
        credential={"certificate": {"clientId": h.app.client_id, "secretRef": {"name": "synapse-cert"}}},
    )
    h.binding("engineers", ["Synapse User"], [{"kind": "Group", "name": "Data Engineers"}], workspace="reporting")
    h.wait_condition(RB_PLURAL, "analysts")
    h.wait_condition(RB_PLURAL, "engineers")
    wrong_secret_then_rotation(h, wrong[0], 1)
    metrics.append(scrape(port))
    h.stop_operator()

    # JSON logs, after a restart: expired tokens, a directory change, a wrong secret, a rotation.
    port = free_port()
    h.sb.admin.expire_tokens()
    h.start_operator(SYNAPSE_SCIM_METRICS_PORT=str(port), SYNAPSE_SCIM_LOG_FORMAT="json")
    h.sb.admin.add_member("Data Engineers", upn("heidi"))
    h.wait_for(
        lambda: h.user_id(upn("heidi")) in {a["principalId"] for a in h.assignments("reporting")},
        "heidi granted in reporting",
    )
    wrong_secret_then_rotation(h, wrong[1], 3)
    metrics.append(scrape(port))
    h.stop_operator()

    # What must never appear.
    tokens = h.sb.call(lambda state: list(state.tokens.tokens))
    assert len(tokens) >= 4, "the sandbox issued Graph and Synapse tokens in both runs"
    known = {
        "client secret": [h.app.secret],
        "wrong secret": wrong,
        "private key": private_key_body(pem),
        "access token": tokens + [t.rsplit(".", 1)[1] for t in tokens],
    }
    assert all(len(v) >= 16 for values in known.values() for v in values), "each value is long enough to be unique"

    # Everything the operator wrote.
    log = h.operator_log()
    assert "AADSTS7000215" in log, "the wrong secret was tried (and logged as a failure)"
    json_lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert json_lines and any(r["logger"] == "synapse_scim.audit" for r in json_lines), "the JSON run logged"
    events = [h.api.sanitize_for_serialization(e) for e in h.core.list_namespaced_event(h.namespace).items]
    assert any(e["reason"] == "Granted" for e in events)
    objects = [
        o
        for plural in (WS_PLURAL, RB_PLURAL)
        for o in h.custom.list_namespaced_custom_object("synapse-scim.io", "v1alpha1", h.namespace, plural)["items"]
    ]
    assert len(objects) == 4 and all(o.get("status") for o in objects)
    places = {
        "operator log": log,
        "events": json.dumps(events),
        "custom resources": json.dumps(objects),
        "metrics": "\n".join(metrics),
    }
    assert "synapse_scim_azure_requests_total" in places["metrics"]

    leaks = [
        (what, where) for what, values in known.items() for v in values for where, text in places.items() if v in text
    ]
    assert leaks == [], f"secret values found: {sorted(set(leaks))}"
