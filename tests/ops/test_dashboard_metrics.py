"""What the dashboard and the Log Analytics queries read exists in what a running operator emits.

One `synapse-scim run` (JSON logs, /metrics, the SCIM endpoint on) syncs a workspace (grants) and takes a
SCIM push that pokes a workspace waiting for a pushed group. Then:

- every metric name in the PromQL of charts/synapse-scim/dashboards/synapse-scim.json is declared on
  /metrics (its `# TYPE` line: prometheus_client writes `# HELP` and `# TYPE` for a labelled metric
  before its first observation too, with no sample), and has at least one sample, but for the two this
  run cannot cause (a 409 adoption, a failed Azure request); histograms' `_bucket`, `_sum`, `_count`
  and counters' `_total` are the names of their samples. Deleting a binding at the end revokes, for
  `_deleted_total` and a revoke audit line;
- every field the KQL of docs/log-analytics.md reads (`m.<field>` of the JSON line, `a.<field>` of a
  Synapse write's audit record, `s.<field>` of a SCIM change's) is in the lines the operator wrote.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from pathlib import Path

import httpx
import trustme
from prometheus_client.parser import text_string_to_metric_families

from support.harness import GROUP, RB_PLURAL, VERSION
from synapse_scim_sandbox.devcluster import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "synapse-scim" / "dashboards" / "synapse-scim.json"
LOG_ANALYTICS = ROOT / "docs" / "log-analytics.md"
TOKEN = "okta-" + "7" * 40
SCIM = "application/scim+json"
METRIC = re.compile(r"\bsynapse_scim_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count")
# Declared but not observed by this run: they need a grant that already exists, or Azure failing.
DECLARED_ONLY = {"synapse_scim_assignments_adopted_total", "synapse_scim_azure_request_errors_total"}


def dashboard_metrics() -> set[str]:
    """The metric names of every PromQL expression of the dashboard (panels and variables)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def kql_fields() -> dict[str, set[str]]:
    """The fields the documented KQL reads, per alias: m (the line), a (write record), s (SCIM record)."""
    blocks = re.findall(r"```kusto\n(.*?)```", LOG_ANALYTICS.read_text(), re.S)
    assert len(blocks) >= 4
    fields: dict[str, set[str]] = {"m": set(), "a": set(), "s": set()}
    for block in blocks:
        for alias, field in re.findall(r"(?<![\w.])([mas])\.([A-Za-z_]+)", block):
            fields[alias].add(field)
    return fields


def scrape(port: int) -> tuple[set[str], set[str]]:
    """(families with a # TYPE line, names of the samples) on /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    typed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    samples = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    return typed, samples


def sampled(name: str, samples: set[str]) -> bool:
    return name in samples or any(name + suffix in samples for suffix in SUFFIXES)


def test_parsers_find_what_they_should():
    names = dashboard_metrics()
    assert {"synapse_scim_leader", "synapse_scim_reconcile_duration_seconds_bucket"} <= names
    assert "synapse_scim_scim_pokes_total" in names
    fields = kql_fields()
    assert {"logger", "message", "level"} <= fields["m"]
    assert {"action", "principal", "principal_id", "outcome"} <= fields["a"]
    assert {"provider", "operation", "resourceType"} <= fields["s"]


def _tls(directory: Path) -> trustme.CA:
    directory.mkdir(parents=True)
    ca = trustme.CA(organization_name="synapse-scim dashboard test")
    leaf = ca.issue_cert("127.0.0.1")
    (directory / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    (directory / "tls.key").write_bytes(leaf.private_key_pem.bytes())
    return ca


def test_dashboard_metrics_are_served_and_documented_audit_fields_are_logged(harness, tmp_path):
    h = harness
    metrics_port, scim_port = free_port(), free_port()
    ca = _tls(tmp_path / "scim-tls")
    h.secret("okta-token", {"token": TOKEN})
    h.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        h.namespace,
        "scimproviders",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ScimProvider",
            "metadata": {"name": "okta"},
            "spec": {"tokenSecretRef": {"name": "okta-token"}},
        },
    )
    h.start_operator(
        SYNAPSE_SCIM_METRICS_PORT=str(metrics_port),
        SYNAPSE_SCIM_LOG_FORMAT="json",
        SYNAPSE_SCIM_SCIM_PORT=str(scim_port),
        SYNAPSE_SCIM_SCIM_HOST="127.0.0.1",
        SYNAPSE_SCIM_SCIM_TLS_DIR=str(tmp_path / "scim-tls"),
        SYNAPSE_SCIM_SCIM_BASE_URL=f"https://127.0.0.1:{scim_port}",
        SYNAPSE_SCIM_SCIM_TOKEN_CACHE="0.5s",
    )
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    # A pushed group that does not exist yet: the workspace waits for its provider, so a push pokes it.
    h.binding("engineers", ["Synapse User"], [{"kind": "ScimGroup", "provider": "okta", "name": "Data Engineers"}])
    h.wait_condition(RB_PLURAL, "analysts")

    base = f"https://127.0.0.1:{scim_port}/scim/v2/{h.namespace}/okta"
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with httpx.Client(
        verify=context, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": SCIM}, timeout=20
    ) as http:

        def serving() -> bool:
            try:
                return http.get(f"{base}/ServiceProviderConfig").status_code == 200
            except httpx.HTTPError:
                return False

        h.wait_for(serving, "the SCIM endpoint serving okta")
        user = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dashboard@example.com"}
        assert http.post(f"{base}/Users", json=user).status_code == 201
        group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Data Engineers"}
        assert http.post(f"{base}/Groups", json=group).status_code == 201

    # The pushed group resolves the engineers' subject (no removal is held any more): deleting the
    # analysts binding revokes its grants.
    h.wait_condition(RB_PLURAL, "engineers")
    h.delete(RB_PLURAL, "analysts")
    h.wait_for(lambda: not h.assignments(), "the analysts' grants revoked")

    wanted = dashboard_metrics()
    assert DECLARED_ONLY <= wanted

    def all_sampled() -> tuple[set[str], set[str]] | None:
        try:
            typed, samples = scrape(metrics_port)
        except OSError:
            return None
        return (typed, samples) if all(sampled(name, samples) for name in wanted - DECLARED_ONLY) else None

    try:
        typed, samples = h.wait_for(all_sampled, "a sample of every dashboard metric", timeout=60)
    except AssertionError:
        typed, samples = scrape(metrics_port)
        missing = sorted(name for name in wanted - DECLARED_ONLY if not sampled(name, samples))
        raise AssertionError(f"dashboard metrics not served by the operator: {missing}") from None
    # The families themselves are declared (# TYPE) under the names the queries use, less the suffixes.
    for name in wanted:
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert family in typed or name in typed, name

    lines = [json.loads(line) for line in h.operator_log().splitlines() if line.startswith("{")]
    audit = [line for line in lines if line.get("logger") == "synapse_scim.audit" and "audit" in line]
    writes = [line for line in audit if "action" in line["audit"]]
    pushes = [line for line in audit if "provider" in line["audit"]]
    assert {(w["audit"]["action"], w["audit"]["outcome"]) for w in writes} >= {("grant", "done"), ("revoke", "done")}
    assert {p["audit"]["resourceType"] for p in pushes} == {"User", "Group"}, audit
    assert all(p["audit"]["provider"] == f"{h.namespace}/okta" for p in pushes)

    fields = kql_fields()
    line_keys: set[str] = set().union(*(line.keys() for line in lines))
    write_keys: set[str] = set().union(*(w["audit"].keys() for w in writes))
    push_keys: set[str] = set().union(*(p["audit"].keys() for p in pushes))
    assert fields["m"] <= line_keys, f"m. fields the JSON lines lack: {fields['m'] - line_keys}"
    assert fields["a"] <= write_keys, f"a. fields the write records lack: {fields['a'] - write_keys}"
    assert fields["s"] <= push_keys, f"s. fields the SCIM records lack: {fields['s'] - push_keys}"
    # And the tables of docs/log-analytics.md name every field the operator writes, no more.
    doc = LOG_ANALYTICS.read_text()
    documented = set(re.findall(r"^\| `audit\.([A-Za-z_]+)`", doc, re.M))
    documented |= {
        f for row in re.findall(r"^\| (`audit\.[^|]+)\|", doc, re.M) for f in re.findall(r"audit\.(\w+)", row)
    }
    assert documented == write_keys | push_keys, (documented, write_keys | push_keys)
