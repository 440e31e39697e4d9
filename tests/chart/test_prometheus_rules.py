"""The chart's PrometheusRule (templates/prometheusrule.yaml, value prometheusRule.*): not rendered by
default; rendered, its groups pass `promtool check rules` and the unit tests of tests/chart/promtool/
(`promtool test rules`: every alert fires when it should and stays quiet when it should not); every
alert links to its section of docs/runbooks.md.

promtool is built from the official Go module by hack/build-promtool.sh (pinned in
hack/promtool.env), found as SYNAPSE_SCIM_PROMTOOL (what `make test` sets) or built (then cached).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.chart import REPO, by_kind, one

PROMTOOL_TESTS = REPO / "tests" / "chart" / "promtool"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://runbooks.example/runbooks.md"  # what the promtool tests expect in runbook_url
ENABLED = ("--set", "prometheusRule.enabled=true", "--set", f"prometheusRule.runbookBaseUrl={RUNBOOK_BASE}")


@pytest.fixture(scope="session")
def promtool() -> Path:
    given = os.environ.get("SYNAPSE_SCIM_PROMTOOL")
    if given and os.access(given, os.X_OK):
        return Path(given)
    out = subprocess.run(
        [str(REPO / "hack" / "build-promtool.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(out.splitlines()[-1])


def _rule(helm: Any, *args: str, **kwargs: str) -> dict[str, Any]:
    return one(helm.render(*ENABLED, *args, **kwargs), "PrometheusRule")


def _alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def _promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_not_rendered_by_default(helm):
    assert not by_kind(helm.render(), "PrometheusRule")
    assert not by_kind(helm.render("--set", "metrics.serviceMonitor.enabled=true"), "PrometheusRule")


def test_promtool_checks_the_rules_and_runs_their_unit_tests(helm, promtool, tmp_path):
    rule = _rule(helm)  # release "scim" in "synapse-scim": job="scim-synapse-scim-metrics"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    for test_file in PROMTOOL_TESTS.glob("*.yaml"):
        shutil.copy(test_file, tmp_path / test_file.name)

    check = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(_alerts(rule))} rules found" in check.stdout + check.stderr

    tests = sorted(p.name for p in PROMTOOL_TESTS.glob("*.yaml"))
    run = _promtool(promtool, "test", "rules", *tests, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAILED" not in run.stdout + run.stderr


def test_every_alert_is_unit_tested_both_ways_and_has_a_runbook(helm):
    alerts = _alerts(_rule(helm))
    assert len(alerts) == 7
    cases: dict[str, list[bool]] = {}
    for test_file in PROMTOOL_TESTS.glob("*.yaml"):
        for group in yaml.safe_load(test_file.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for alert in alerts:
        name = alert["alert"]
        assert set(cases.get(name, [])) == {True, False}, f"{name}: needs a firing and a quiet promtool case"
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        base, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert base == RUNBOOK_BASE and anchor == name.lower(), name
        assert anchor in headings, f"docs/runbooks.md has no section '## {name}'"


def test_namespace_labels_selector_and_alert_labels(helm, tmp_path):
    values = {
        "prometheusRule": {
            "enabled": True,  # in the file: a --set would win over it
            "namespace": "monitoring",
            "labels": {"release": "kube-prometheus-stack"},
            "selector": 'namespace="ops",service="synapse"',
            "alertLabels": {"team": "platform"},
            "runbookBaseUrl": f"{RUNBOOK_BASE}/",  # the chart trims the slash
        }
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    rule = one(helm.render("-f", str(tmp_path / "values.yaml"), namespace="ops"), "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "scim"
    for alert in _alerts(rule):
        assert alert["labels"]["team"] == "platform"
        assert "job=" not in alert["expr"]
        selectors = re.findall(r"synapse_scim_\w+\{([^}]*)\}", alert["expr"])
        assert selectors and all(s.startswith('namespace="ops",service="synapse"') for s in selectors)
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{alert['alert'].lower()}"


def test_default_selector_is_the_service_monitors_job(helm):
    rule = _rule(helm, release="prod", namespace="ops")
    for alert in _alerts(rule):
        selectors = re.findall(r"synapse_scim_\w+\{([^}]*)\}", alert["expr"])
        assert selectors and all(s.startswith('job="prod-synapse-scim-metrics"') for s in selectors)


def test_runbook_url_is_required_and_values_are_checked(helm):
    missing = helm.render_text("--set", "prometheusRule.enabled=true", check=False)
    assert missing.returncode != 0 and "prometheusRule.runbookBaseUrl" in missing.stderr
    unknown = helm.render_text(*ENABLED, "--set", "prometheusRule.severity=page", check=False)
    assert unknown.returncode != 0 and "severity" in unknown.stderr
    braces = helm.render_text(*ENABLED, "--set-string", "prometheusRule.selector={job=x}", check=False)
    assert braces.returncode != 0 and "selector" in braces.stderr
