"""`synapse-scim explain` against the sandbox: every role a principal holds and why (binding and group
chain, manual, managed but unwanted), every holder of one role at one scope, golden outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import scenario
from cli_helpers import Cli, assert_golden, writes

EXPLAIN = ("explain", "-f", "repo", "-n", scenario.NS)


@pytest.mark.parametrize(
    ("who", "golden"),
    [
        # Data Engineers > Spark Team > Platform Core > carol, in a group cycle: the shortest chain, and it ends.
        (scenario.upn("carol"), "explain-carol.txt"),
        # A manual Synapse Administrator, and a managed Synapse User whose removal the guard holds.
        (scenario.upn("heidi"), "explain-heidi.txt"),
        # A role held through a group (manually granted to Contractors), and a managed grant about to be revoked.
        (scenario.upn("grace"), "explain-grace.txt"),
        # Disabled: the bindings give it nothing.
        (scenario.upn("dave"), "explain-dave.txt"),
    ],
)
def test_explain_a_user(cli: Cli, repo: Path, who: str, golden: str) -> None:
    result = cli(*EXPLAIN, who)
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert_golden(golden, result.stdout)
    assert writes(cli.sb) == {}


def test_a_manual_grant_a_binding_wants_says_both(cli: Cli, repo: Path) -> None:
    # bob's Synapse Contributor, which data-engineers wants, was granted by hand before the binding: it
    # gives the access, and it stays when the binding goes (the operator never removes a manual grant).
    cli.sb.admin.add_assignment("analytics", "Synapse Contributor", scenario.upn("bob"))
    result = cli(*EXPLAIN, scenario.upn("bob"))
    assert result.rc == 0, result.stdout + result.stderr
    assert_golden("explain-bob-manual.txt", result.stdout)
    doc = json.loads(cli(*EXPLAIN, scenario.upn("bob"), "-o", "json").stdout)
    (held,) = doc["workspaces"][0]["assignments"]
    assert (held["status"], [r["kind"] for r in held["reasons"]]) == ("held", ["binding", "manual"])


def test_a_service_principal_by_name_app_id_or_object_id(cli: Cli, repo: Path) -> None:
    sp = cli.sb.state.directory.resolve("etl-pipeline", kinds=("servicePrincipal",))
    by_name = cli(*EXPLAIN, "etl-pipeline")
    assert by_name.rc == 0, by_name.stdout + by_name.stderr
    assert_golden("explain-etl-pipeline.txt", by_name.stdout)
    assert cli(*EXPLAIN, str(sp.app_id)).stdout == by_name.stdout
    assert cli(*EXPLAIN, str(sp.id)).stdout == by_name.stdout


def test_a_disabled_service_principal_is_explained_and_said_disabled(cli: Cli, repo: Path) -> None:
    # Bindings refuse a disabled subject; explain must not: what it still holds is the point.
    sp = cli.sb.state.directory.resolve("etl-pipeline", kinds=("servicePrincipal",))
    cli.sb.admin.add_assignment("analytics", "Synapse User", str(sp.id))
    cli.sb.admin.disable_service_principal(str(sp.id))
    outputs = [cli(*EXPLAIN, ref) for ref in ("etl-pipeline", str(sp.app_id), str(sp.id))]
    for result in outputs:
        assert result.rc == 0, result.stdout + result.stderr
        assert "disabled in the directory" in result.stdout.splitlines()[0]
        assert result.stdout == outputs[0].stdout
    doc = json.loads(cli(*EXPLAIN, "etl-pipeline", "-o", "json").stdout)
    assert doc["principal"]["accountEnabled"] is False
    (held,) = doc["workspaces"][0]["assignments"]
    assert (held["role"]["name"], held["status"]) == ("Synapse User", "held")


def test_a_group_as_json(cli: Cli, repo: Path) -> None:
    result = cli(*EXPLAIN, "Contractors", "-o", "json")
    assert result.rc == 0, result.stderr
    assert_golden("explain-contractors.json", result.stdout)
    doc = json.loads(result.stdout)
    statuses = {(a["role"]["name"], a["status"]) for a in doc["workspaces"][0]["assignments"]}
    assert statuses == {
        ("Synapse User", "held"),
        ("Synapse Artifact User", "missing (not created: Observe or suspended binding)"),
    }


def test_every_holder_of_a_role_at_a_scope(cli: Cli, repo: Path) -> None:
    result = cli(*EXPLAIN, "--role", "Synapse User", "--scope", "workspace")
    assert result.rc == 0, result.stderr
    assert_golden("explain-role.txt", result.stdout)
    pool = cli(*EXPLAIN, "--role", "Synapse Credential User", "--scope", "linkedService/datalake", "-o", "json")
    holders = {a["principal"]["display"]: a["status"] for a in json.loads(pool.stdout)["workspaces"][0]["assignments"]}
    assert holders == {"etl-pipeline": "to grant"}


def test_a_scope_that_is_not_one_is_an_error(cli: Cli, repo: Path) -> None:
    result = cli(*EXPLAIN, "--role", "Synapse User", "--scope", "pool/sparkpool")
    assert result.rc == 1
    assert result.stderr == (
        "error: --scope: 'pool/sparkpool' is not a scope (workspace, bigDataPool/NAME, "
        "integrationRuntime/NAME, linkedService/NAME, credential/NAME, scopePool/NAME, or "
        "workspaces/...)\n"
    )


def test_unknown_principal_is_an_error(cli: Cli, repo: Path) -> None:
    result = cli(*EXPLAIN, "nobody@contoso.com")
    assert result.rc == 1
    assert "error: SubjectNotFound: principal 'nobody@contoso.com' does not exist in the directory" in result.stdout


def test_principal_or_role_not_both(cli: Cli, repo: Path) -> None:
    result = cli(*EXPLAIN, "alice@contoso.com", "--role", "Synapse User")
    assert result.rc == 2  # argparse usage error
    assert "give either a PRINCIPAL or --role NAME" in result.stderr
