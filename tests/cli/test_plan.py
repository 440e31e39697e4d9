"""`synapse-scim plan` against the sandbox, without a cluster: credentials from the environment (the SDKs'
default chain), manifests from a directory tree, golden outputs, exit codes 0 / 1 / 2, nothing written."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import scenario
import yaml
from cli_helpers import Cli, assert_golden, writes

PLAN = ("plan", "-f", "repo", "-n", scenario.NS)


def test_plan_table_shows_grants_revocations_and_held_removals(cli: Cli, repo: Path) -> None:
    before = cli.sb.admin.list_assignments("analytics")
    result = cli(*PLAN)
    assert result.rc == 2, result.stderr
    assert result.stderr == ""  # piped: no progress
    assert_golden("plan.txt", result.stdout)
    # Read-only: not one create or delete reached Synapse, and the workspace is unchanged.
    assert writes(cli.sb) == {}
    assert cli.sb.admin.list_assignments("analytics") == before


def test_plan_json_is_the_machine_format(cli: Cli, repo: Path) -> None:
    result = cli(*PLAN, "-o", "json")
    assert result.rc == 2, result.stderr
    assert_golden("plan.json", result.stdout)
    doc = json.loads(result.stdout)
    analytics = doc["workspaces"][0]
    assert analytics["counts"] == {"grant": 5, "revoke": 0, "held": 2, "orphan": 0}
    assert analytics["holdReason"] == "RemovalsHeld"
    carol = next(c for c in analytics["changes"] if c["principal"]["display"] == scenario.upn("carol"))
    assert carol["via"] == ["Data Engineers → Spark Team → Platform Core → carol@contoso.com"]


def test_doing_what_the_plan_says_leaves_nothing_to_plan(cli: Cli, repo: Path) -> None:
    """Grants with the plan's assignment ids and the removals (held ones approved) are exactly the operator's
    writes: planning again finds no change and exits 0."""
    doc = json.loads(cli(*PLAN, "-o", "json").stdout)
    for ws in doc["workspaces"]:
        for change in ws["changes"]:
            if change["action"] == "grant":
                cli.sb.admin.add_assignment(
                    ws["workspaceName"],
                    change["role"]["id"],
                    change["principal"]["id"],
                    change["scope"],
                    id=change["assignmentId"],
                    principal_type=change["principal"]["type"],
                )
            else:
                cli.sb.admin.delete_assignment(ws["workspaceName"], change["assignmentId"])
    result = cli(*PLAN)
    assert result.rc == 0, result.stdout + result.stderr
    assert_golden("plan-no-changes.txt", result.stdout)


def test_bad_manifest_names_file_document_and_field(cli: Cli, repo: Path) -> None:
    bad = scenario.binding("typo", "analytics", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    bad["spec"]["managmentPolicy"] = "Observe"
    other = scenario.binding("no-roles", "analytics", [], [{"kind": "Group", "name": "Analysts"}])
    secret = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    (repo / "bindings" / "bad.yaml").write_text(yaml.safe_dump_all([secret, bad], sort_keys=False))
    result = cli(*PLAN)
    assert result.rc == 1
    assert result.stdout == ""
    assert_golden("plan-bad-manifest.txt", result.stderr)

    (repo / "bindings" / "bad.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    result = cli(*PLAN)
    assert result.rc == 1
    assert result.stderr == (
        "error: repo/bindings/bad.yaml#1 (SynapseRoleBinding no-roles): spec.roles: [] should be non-empty\n"
    )


def test_binding_to_a_workspace_nobody_defines_is_an_error(cli: Cli, repo: Path) -> None:
    stray = scenario.binding("stray", "nowhere", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    (repo / "bindings" / "stray.yaml").write_text(yaml.safe_dump(stray))
    result = cli(*PLAN)
    assert result.rc == 1
    assert result.stderr == (
        "error: repo/bindings/stray.yaml#1: spec.workspaceRef.name: no SynapseWorkspace "
        "data-platform/nowhere in the manifests (--cluster also looks there)\n"
    )


def test_unresolvable_subject_fails_the_plan(cli: Cli, repo: Path) -> None:
    ghost = scenario.binding("ghosts", "reporting", ["Synapse User"], [{"kind": "Group", "name": "Ghosts"}])
    (repo / "bindings" / "ghosts.yaml").write_text(yaml.safe_dump(ghost))
    result = cli(*PLAN)
    assert result.rc == 1
    assert (
        "  error: SynapseRoleBinding data-platform/ghosts: SubjectNotFound: Group 'Ghosts' does not exist in "
        "the directory\n"
    ) in result.stdout
    # The binding's wishes are unknown, so grace's Synapse User in reporting (its role and scope) is not
    # revoked any more: a failed read never turns into a revocation, in the plan as in the operator.
    assert result.stdout.endswith(
        "Plan: 7 to grant, 0 to revoke, 2 held by the removal guard. 1 error(s): the operator would not be Ready.\n"
    )


def test_failed_read_is_an_error_not_an_empty_plan(cli: Cli, repo: Path) -> None:
    cli.sb.admin.inject_fault({"service": "synapse", "operations": ["listRoleAssignments"], "status": 500})
    result = cli(*PLAN, "-o", "json")
    assert result.rc == 1
    doc = json.loads(result.stdout)
    assert all(ws["problems"][0]["reason"] == "WorkspaceReadFailed" for ws in doc["workspaces"])
    assert all(ws["changes"] == [] for ws in doc["workspaces"])
    assert writes(cli.sb) == {}


def test_no_identity_in_the_environment_is_an_authentication_error(cli: Cli, repo: Path) -> None:
    result = cli(*PLAN, identity=False)
    assert result.rc == 1
    assert "AuthenticationFailed" in result.stdout


def test_progress_only_on_a_terminal(cli: Cli, repo: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "synapse_scim.cli", *PLAN],
            cwd=cli.cwd,
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=120,
        )
        os.close(secondary)
        secondary = -1
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert proc.returncode == 2
    assert b"reading data-platform/analytics (1/2)" in seen
    assert b"reading data-platform/reporting (2/2)" in seen
    assert_golden("plan.txt", proc.stdout)  # stdout is the same plan, progress never mixes into it
