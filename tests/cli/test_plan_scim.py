"""`plan` / `explain` with ScimGroup subjects: with --cluster the pushed groups are read from the cluster's
ScimUser and ScimGroup objects (written here as the SCIM endpoint writes them, through KubeScimStore), and
every grant through one shows its chain and matching rule; the pushed users that get nothing and the
binding's status.scim counts are listed; a ScimGroup that does not resolve keeps its former members'
grants (held, not revoked). Without --cluster, the subjects are unresolved and the message says to use it.

Sandbox users are matched by userPrincipalName (scenario.upn: alice@contoso.com ...)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import scenario
import yaml
from cli_helpers import Cli, assert_golden, writes
from kubernetes import client

from synapse_scim.adapters.scim.kube_store import KubeScimStore
from synapse_scim.core.scim.resources import Kind

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
DATA_ENGINEERS = {"kind": "ScimGroup", "provider": "okta", "name": "Data Engineers"}
GHOSTS = {"kind": "ScimGroup", "provider": "okta", "name": "Ghosts"}


async def _push(objects: client.CustomObjectsApi, namespace: str, grace: str) -> None:
    """What okta pushed: the group Data Engineers with alice and ERIN (userName as the UPN, any case), gmiller
    (grace's object id as externalId), dave (disabled in Entra ID), frank (deactivated in okta) and zoe (no
    Entra account); no group Ghosts."""
    store = KubeScimStore(objects, namespace, "okta")
    await store.start()
    try:
        users = [
            await store.create(Kind.USER, {"userName": scenario.upn("alice"), "active": True}),
            await store.create(Kind.USER, {"userName": "ERIN@contoso.com", "active": True}),
            await store.create(Kind.USER, {"userName": "gmiller", "externalId": grace, "active": True}),
            await store.create(Kind.USER, {"userName": scenario.upn("dave"), "active": True}),
            await store.create(Kind.USER, {"userName": scenario.upn("frank"), "active": False}),
            await store.create(Kind.USER, {"userName": "zoe@fabrikam.com", "active": True}),
        ]
        await store.create(Kind.GROUP, {"displayName": "Data Engineers"}, tuple(u.id for u in users))
    finally:
        store.close()


def _pr(root: Path, subjects: dict[str, list[dict[str, Any]]], namespace: str | None = None) -> Path:
    """The pull request: binding okta-engineers (Synapse Contributor to okta's Data Engineers) and binding
    okta-ghosts (Synapse Artifact Publisher to okta's Ghosts, which okta no longer pushes)."""
    pr = root / "pr"
    pr.mkdir(exist_ok=True)
    roles = {"okta-engineers": ["Synapse Contributor"], "okta-ghosts": ["Synapse Artifact Publisher"]}
    docs = [
        scenario.binding(name, "analytics", roles[name], subs, namespace=namespace) for name, subs in subjects.items()
    ]
    (pr / "okta.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return pr


@pytest.fixture
def pushed(cli: Cli, cluster: Any, namespace: str, objects: client.CustomObjectsApi, tmp_path: Path) -> Path:
    """The cluster: workspace analytics (credential in a Secret), ScimProvider okta and what it pushed. Synapse:
    bob's Synapse Contributor from when he was in okta's Data Engineers, carol's Synapse Artifact Publisher
    from when she was in okta's Ghosts (both the operator's)."""
    sb = cli.sb
    with cluster.api_client() as api:
        secret = sb.client("synapse-scim-operator").secret
        client.CoreV1Api(api).create_namespaced_secret(
            namespace,
            {"metadata": {"name": "synapse-sp"}, "data": {"clientSecret": base64.b64encode(secret.encode()).decode()}},
        )
    objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "synapseworkspaces", scenario.workspace(sb, "analytics", namespace=namespace)
    )
    provider = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScimProvider",
        "metadata": {"name": "okta"},
        "spec": {"tokenSecretRef": {"name": "okta-scim-tokens"}},
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "scimproviders", provider)
    grace = str(sb.state.directory.resolve(scenario.upn("grace"), kinds=("user",)).id)
    asyncio.run(_push(objects, namespace, grace))
    scenario.owned(sb, "analytics", "Synapse Contributor", scenario.upn("bob"))
    scenario.owned(sb, "analytics", "Synapse Artifact Publisher", scenario.upn("carol"))
    return _pr(tmp_path, {"okta-engineers": [DATA_ENGINEERS], "okta-ghosts": [GHOSTS]})


def _args(cluster: Any, namespace: str, *args: str) -> list[str]:
    return [*args, "-f", "pr", "--cluster", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]


def test_plan_shows_scim_chains_unmatched_users_and_held_grants(
    cli: Cli, cluster: Any, namespace: str, pushed: Path
) -> None:
    result = cli(*_args(cluster, namespace, "plan"), identity=False)
    assert result.rc == 1, result.stdout + result.stderr  # okta-ghosts is not Ready: its group does not resolve
    assert result.stderr == ""
    assert_golden("plan-scim.txt", result.stdout, {namespace: "t-##########"})
    assert "okta: Data Engineers → alice@contoso.com (matched by userName)" in result.stdout
    assert "okta: Data Engineers → grace@contoso.com (matched by externalId, pushed as gmiller)" in result.stdout
    assert writes(cli.sb) == {}


def test_plan_json_adds_the_scim_fields(cli: Cli, cluster: Any, namespace: str, pushed: Path) -> None:
    doc = json.loads(cli(*_args(cluster, namespace, "plan", "-o", "json"), identity=False).stdout)
    (ws,) = doc["workspaces"]
    grants = {c["principal"]["display"]: c for c in ws["changes"] if c["action"] == "grant"}
    assert set(grants) == {scenario.upn("alice"), scenario.upn("erin"), scenario.upn("grace")}
    alice = grants[scenario.upn("alice")]
    assert alice["via"] == ["okta: Data Engineers → alice@contoso.com (matched by userName)"]
    (how,) = alice["scim"]
    assert how["binding"] == f"{namespace}/okta-engineers"
    assert (how["provider"], how["group"]["displayName"], how["user"]["userName"], how["rule"], how["match"]) == (
        "okta",
        "Data Engineers",
        scenario.upn("alice"),
        "userName",
        "matched by userName",
    )
    # bob left the pushed group: his grant is revoked like any former member's. Not a field more on it.
    (revoke,) = [c for c in ws["changes"] if c["action"] == "revoke"]
    assert revoke["principal"]["display"] == scenario.upn("bob") and "scim" not in revoke

    bindings = {b["name"].split("/")[1]: b for b in ws["bindings"]}
    engineers = bindings["okta-engineers"]
    assert engineers["scim"]["counts"] == {
        "groups": 1,
        "members": 6,
        "matched": 3,
        "unmatched": 1,
        "inactive": 1,
        "disabled": 1,
    }
    (unresolved,) = engineers["scim"]["unresolved"]
    assert (unresolved["reason"], unresolved["subject"]) == ("PrincipalNotMatched", "ScimUser okta/zoe@fabrikam.com")
    assert "heldWhileIncomplete" not in engineers

    ghosts = bindings["okta-ghosts"]
    assert ghosts["scim"]["counts"]["groups"] == 0
    held = ghosts["heldWhileIncomplete"]
    assert [(p["reason"], p["subject"]) for p in held["problems"]] == [("ScimGroupNotFound", "ScimGroup okta/Ghosts")]
    assert [(a["principal"]["display"], a["role"]["name"]) for a in held["assignments"]] == [
        (scenario.upn("carol"), "Synapse Artifact Publisher")
    ]


def test_explain_a_member_of_a_pushed_group(cli: Cli, cluster: Any, namespace: str, pushed: Path) -> None:
    alice = cli(*_args(cluster, namespace, "explain", scenario.upn("alice")), identity=False)
    assert alice.rc == 0, alice.stdout + alice.stderr
    assert_golden("explain-scim-alice.txt", alice.stdout, {namespace: "t-##########"})
    doc = json.loads(
        cli(*_args(cluster, namespace, "explain", scenario.upn("alice"), "-o", "json"), identity=False).stdout
    )
    ((cause,),) = [a["reasons"] for a in doc["workspaces"][0]["assignments"]]
    assert cause["chain"] == ["okta: Data Engineers"]
    assert (cause["scim"]["user"]["userName"], cause["scim"]["match"]) == (scenario.upn("alice"), "matched by userName")


def test_explain_a_former_member_of_a_group_that_does_not_resolve(
    cli: Cli, cluster: Any, namespace: str, pushed: Path
) -> None:
    carol = cli(*_args(cluster, namespace, "explain", scenario.upn("carol")), identity=False)
    assert carol.rc == 0, carol.stdout + carol.stderr
    assert_golden("explain-scim-carol.txt", carol.stdout, {namespace: "t-##########"})
    doc = json.loads(
        cli(*_args(cluster, namespace, "explain", scenario.upn("carol"), "-o", "json"), identity=False).stdout
    )
    (held,) = doc["workspaces"][0]["assignments"]
    (cause,) = held["reasons"]
    assert (held["status"], cause["kind"], cause["heldBy"]["binding"]) == (
        "held",
        "unwanted",
        f"{namespace}/okta-ghosts",
    )


def test_without_the_cluster_scim_subjects_say_to_use_it(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """No cluster, no pushed groups: the binding is incomplete (nothing of its pairs is revoked) and the error
    says what to do."""
    (repo / "bindings" / "okta.yaml").write_text(
        yaml.safe_dump(
            scenario.binding("okta-engineers", "analytics", ["Synapse Contributor"], [DATA_ENGINEERS]), sort_keys=False
        )
    )
    result = cli("plan", "-f", "repo", "-n", scenario.NS)
    assert result.rc == 1, result.stdout + result.stderr
    assert (
        "  error: SynapseRoleBinding data-platform/okta-engineers: ScimProviderNotFound: "
        "ScimGroup okta/Data Engineers: ScimProvider data-platform/okta: plan without --cluster cannot read the "
        "groups identity providers pushed (ScimGroup objects in the cluster): use --cluster\n"
    ) in result.stdout


def test_explain_pushed_users_that_get_nothing(cli: Cli, cluster: Any, namespace: str, pushed: Path) -> None:
    """zoe has no Entra account (explain finds her among the pushed users rather than failing), frank was
    deactivated in okta, dave is disabled in Entra ID: each is told why the pushed group gives nothing."""
    zoe = cli(*_args(cluster, namespace, "explain", "zoe@fabrikam.com"), identity=False)
    assert zoe.rc == 0, zoe.stdout + zoe.stderr
    assert_golden("explain-scim-zoe.txt", zoe.stdout, {namespace: "t-##########"})
    frank = cli(*_args(cluster, namespace, "explain", scenario.upn("frank"), "-o", "json"), identity=False)
    (note,) = json.loads(frank.stdout)["workspaces"][0]["pushedUsers"]
    assert (note["user"]["userName"], note["match"]) == (scenario.upn("frank"), "deactivated by the identity provider")
    dave = cli(*_args(cluster, namespace, "explain", scenario.upn("dave")), identity=False)
    assert (
        f"  gets nothing from SynapseRoleBinding {namespace}/okta-engineers: pushed user okta/dave@contoso.com in "
        "okta: Data Engineers: matched by userName, disabled in Entra ID\n"
    ) in dave.stdout
    nobody = cli(*_args(cluster, namespace, "explain", "nobody@fabrikam.com"), identity=False)
    assert nobody.rc == 1 and "SubjectNotFound" in nobody.stdout
