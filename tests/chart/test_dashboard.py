"""The Grafana dashboard the chart ships (charts/synapse-scim/dashboards/synapse-scim.json, rendered as a
ConfigMap for the Grafana sidecar with grafanaDashboard.enabled): Grafana's own dashboard-linter passes it
with --strict (every rule, none disabled), and its shape is what the sidecar and the README expect.

dashboard-linter is built from its Go module (github.com/grafana/dashboard-linter) by
hack/build-dashboard-linter.sh and cached; SYNAPSE_SCIM_DASHBOARD_LINTER names a binary to use instead.
That every metric its queries read is served by a running operator is tests/ops/test_dashboard_metrics.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.chart import CHART, VALUES_DIR, by_kind, fullname

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = CHART / "dashboards" / "synapse-scim.json"
KEY = "synapse-scim.json"


@pytest.fixture(scope="session")
def dashboard_linter() -> Path:
    given = os.environ.get("SYNAPSE_SCIM_DASHBOARD_LINTER")
    if given:
        return Path(given)
    proc = subprocess.run(
        [str(ROOT / "hack" / "build-dashboard-linter.sh")], capture_output=True, text=True, check=False, timeout=900
    )
    assert proc.returncode == 0, f"hack/build-dashboard-linter.sh failed:\n{proc.stderr}"
    return Path(proc.stdout.strip())


def _configmap(helm: Any, *args: str, namespace: str = "synapse-scim") -> dict[str, Any]:
    objects = helm.render("--set", "grafanaDashboard.enabled=true", *args, namespace=namespace)
    (found,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    return found


def _rendered_dashboard(helm: Any) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(_configmap(helm)["data"][KEY])
    return dashboard


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_rendered_dashboard_passes_the_grafana_dashboard_linter_strict(helm, dashboard_linter, tmp_path):
    path = tmp_path / KEY
    path.write_text(json.dumps(_rendered_dashboard(helm), indent=2))
    proc = subprocess.run(
        [str(dashboard_linter), "lint", "--strict", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, f"dashboard-linter --strict:\n{proc.stdout}\n{proc.stderr}"
    # Every rule ran (a build that lost some would pass vacuously): these are the linter's rule texts.
    for rule in (
        "Checks that each target uses a valid PromQL query.",
        "Checks that each target uses $__rate_interval.",
        "Checks that every PromQL query has a job matcher.",
        "Checks that any counter metric (ending in _total) is aggregated with rate, irate, or increase.",
        "Checks that each panel uses the templated datasource.",
        "Checks that each panel uses has valid units defined.",
        "Checks that the dashboard is not editable.",
    ):
        assert rule in proc.stdout


def test_the_linter_fails_a_bad_dashboard(helm, dashboard_linter, tmp_path):
    """The linter is no stamp: a counter read without rate() and a panel without a description fail."""
    dashboard = _rendered_dashboard(helm)
    panel = _panels(dashboard)[1]
    panel["description"] = ""
    panel["targets"][0]["expr"] = 'sum(synapse_scim_reconciles_total{job=~"$job", instance=~"$instance"})'
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dashboard))
    proc = subprocess.run(
        [str(dashboard_linter), "lint", "--strict", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode != 0
    assert "counter metric" in proc.stdout and "description" in proc.stdout.lower()


def test_configmap_is_the_dashboard_file_byte_for_byte(helm):
    configmap = _configmap(helm, namespace="ops")
    assert configmap["data"][KEY] == DASHBOARD.read_text().rstrip("\n")
    assert configmap["metadata"]["name"] == f"{fullname('scim')}-dashboard"
    assert configmap["metadata"]["namespace"] == "ops"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in configmap["metadata"]


def test_dashboard_is_off_by_default(helm):
    assert not [o for o in helm.render() if o["kind"] == "ConfigMap"]


def test_sidecar_label_namespace_and_annotations_are_configurable(helm):
    configmap = _configmap(
        helm, "-f", str(VALUES_DIR / "grafana-dashboard.yaml"), "--set", "grafanaDashboard.namespace=monitoring"
    )
    labels = configmap["metadata"]["labels"]
    assert labels["grafana.example.com/dashboard"] == "synapse-scim"
    assert "grafana_dashboard" not in labels
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Identity"}
    assert configmap["metadata"]["namespace"] == "monitoring"


def test_schema_rejects_a_bad_sidecar_label(helm):
    out = helm.render_text("--set", "grafanaDashboard.label.key=not a label", check=False)
    assert out.returncode != 0 and "/grafanaDashboard/label/key" in out.stderr


def test_datasource_and_filter_variables_drive_every_query():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "namespace", "workspace"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert dashboard["uid"] == "synapse-scim" and dashboard["editable"] is False
    titles = set()
    for panel in _panels(dashboard):
        titles.add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            expr = target["expr"]
            assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, expr
            # Metrics with a workspace label are filtered by the namespace and workspace variables.
            if "synapse_scim_azure" not in expr and "synapse_scim_scim_requests" not in expr:
                if "synapse_scim_scim_request_duration" not in expr and "synapse_scim_leader" not in expr:
                    assert 'namespace=~"$namespace"' in expr, expr
    assert {
        "Leader",
        "Syncs by result",
        "Sync duration",
        "Assignments created, adopted and deleted",
        "Held removals",
        "Drift by binding",
        "Write concurrency",
        "Azure requests by service",
        "Azure errors by service",
        "SCIM requests",
        "SCIM pokes",
    } <= titles
    # Grid positions never overlap.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24


def test_chart_readme_documents_the_dashboard():
    readme = (CHART / "README.md").read_text()
    assert "grafanaDashboard.enabled" in readme and "dashboard-linter" in readme
