"""Seed organisations for the end-to-end tests (the sandbox's seed format)."""

from __future__ import annotations

from typing import Any

DOMAIN = "contoso.onmicrosoft.com"


def upn(name: str) -> str:
    return f"{name}@{DOMAIN}"


def small_org() -> dict[str, Any]:
    """Data Engineers > Spark Team > Platform Core > Data Engineers (a three-level cycle), Analysts with a
    disabled member, a service principal in a group, and one workspace with every kind of scope item."""
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    return {
        "tenant": {"domain": DOMAIN},
        "apps": [
            {
                "name": "synapse-scim-operator",
                "secret": "operator-secret-1",
                "certificate": True,
                "federatedToken": True,
            },
        ],
        "users": [{"userPrincipalName": upn(u), "accountEnabled": u != "dave"} for u in users],
        "servicePrincipals": [{"displayName": "etl-pipeline"}],
        "groups": [
            {"displayName": "Data Engineers", "members": [upn("alice"), {"group": "Spark Team"}]},
            {"displayName": "Spark Team", "members": [upn("bob"), {"group": "Platform Core"}]},
            {"displayName": "Platform Core", "members": [upn("carol"), {"group": "Data Engineers"}]},
            {"displayName": "Analysts", "members": [upn("erin"), upn("frank"), upn("dave")]},
            {"displayName": "Pipelines", "members": [{"servicePrincipal": "etl-pipeline"}]},
            {"displayName": "Contractors", "members": [upn("grace")]},
        ],
        "workspaces": [
            {
                "name": "analytics",
                "bigDataPools": ["sparkpool"],
                "scopePools": ["sqlpool"],
                "integrationRuntimes": ["AutoResolveIntegrationRuntime"],
                "linkedServices": ["datalake"],
                "credentials": ["WorkspaceSystemIdentity"],
            }
        ],
    }


def with_big_group(org: dict[str, Any], name: str, size: int) -> dict[str, Any]:
    members = [f"member{i:05d}" for i in range(size)]
    org["users"] += [{"userPrincipalName": upn(m)} for m in members]
    org["groups"].append({"displayName": name, "members": [upn(m) for m in members]})
    return org
