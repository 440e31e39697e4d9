"""The Flux and Argo CD examples users copy (examples/flux, examples/argocd): Flux's kinds decoded
strictly into the Go types of Flux's own API modules (hack/gitops-health -check-manifests), the
health checks naming our kinds and objects that the examples define, the Argo CD health
customisation identical to health/argocd, and the Applications well formed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from argo_health import HEALTH, KINDS, script

from synapse_scim.review.manifests import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
OUR_GROUP = "synapse-scim.io"


def _checked(tool: Path, files: list[Path]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(tool), "-check-manifests", *map(str, files)], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_flux_examples_are_valid_flux_objects(gitops_tool):
    docs = _checked(gitops_tool, sorted((EXAMPLES / "flux").glob("*.yaml")))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["GitRepository", "HelmRelease", "Kustomization"]
    for d in docs:
        assert d["checked"] and not d.get("error"), d


def test_the_strict_check_would_catch_a_misspelt_field(gitops_tool, tmp_path):
    bad = yaml.safe_load((EXAMPLES / "flux" / "bindings-kustomization.yaml").read_text())
    bad["spec"]["healthCheck"] = bad["spec"].pop("healthChecks")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    [doc] = _checked(gitops_tool, [tmp_path / "bad.yaml"])
    assert doc["checked"] and "healthCheck" in doc["error"]


def test_flux_health_checks_name_our_kinds_and_objects_the_examples_define():
    ks = yaml.safe_load((EXAMPLES / "flux" / "bindings-kustomization.yaml").read_text())
    checks = ks["spec"]["healthChecks"]
    defined = {(m.kind, m.body["metadata"]["name"]) for m in load([EXAMPLES])}
    assert {c["kind"] for c in checks} == set(KINDS)
    for c in checks:
        assert c["apiVersion"] == f"{OUR_GROUP}/v1alpha1", c
        assert (c["kind"], c["name"]) in defined, f"{c['kind']} {c['name']} is not among the examples"
    assert ks["spec"]["timeout"], "a first sync of a large group takes minutes: say how long to wait"


def test_the_helmrelease_installs_the_chart_and_replaces_its_crds():
    hr = yaml.safe_load((EXAMPLES / "flux" / "helmrelease.yaml").read_text())
    chart = hr["spec"]["chart"]["spec"]
    assert (ROOT / chart["chart"]).is_dir() and (ROOT / chart["chart"] / "Chart.yaml").exists()
    assert hr["spec"]["install"]["crds"] == hr["spec"]["upgrade"]["crds"] == "CreateReplace"
    values_schema = json.loads((ROOT / "charts" / "synapse-scim" / "values.schema.json").read_text())
    assert set(hr["spec"]["values"]) <= set(values_schema["properties"])


def test_the_argocd_health_customisation_is_health_argocd():
    assert (EXAMPLES / "argocd" / "argocd-cm.yaml").read_text() == (HEALTH / "argocd-cm-patch.yaml").read_text()
    cm = yaml.safe_load((EXAMPLES / "argocd" / "argocd-cm.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    for kind in KINDS:
        assert cm["data"][f"resource.customizations.health.{OUR_GROUP}_{kind}"] == script(kind).read_text()


def test_the_argocd_applications_are_well_formed():
    apps = list(yaml.safe_load_all((EXAMPLES / "argocd" / "application.yaml").read_text()))
    assert [a["kind"] for a in apps] == ["Application", "Application"]
    spec_keys = {"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences", "info"}
    for app in apps:
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["metadata"]["namespace"] == "argocd"
        assert set(app["spec"]) <= spec_keys, set(app["spec"]) - spec_keys
        assert {"repoURL", "targetRevision", "path"} <= set(app["spec"]["source"])
        assert {"server", "namespace"} <= set(app["spec"]["destination"])
    chart = next(a for a in apps if a["metadata"]["name"] == "synapse-scim")
    assert (ROOT / chart["spec"]["source"]["path"] / "Chart.yaml").exists()
    values_schema = json.loads((ROOT / "charts" / "synapse-scim" / "values.schema.json").read_text())
    assert set(chart["spec"]["source"]["helm"]["valuesObject"]) <= set(values_schema["properties"])


def test_plan_skips_the_gitops_tools_objects():
    # `synapse-scim plan -f examples/` reads our kinds only: the Flux and Argo CD objects are skipped.
    loaded = load([EXAMPLES / "flux", EXAMPLES / "argocd"])
    assert loaded == []
