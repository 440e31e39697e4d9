"""Reading the Azure sandbox's own state, and the operator's adapters built against it exactly as
synapse_scim.adapters builds them (real SDKs over HTTPS, the sandbox CA as the only trust anchor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure.identity.aio import ClientSecretCredential

from synapse_scim.adapters.credentials import Cloud
from synapse_scim.adapters.directory import Directory, graph_client
from synapse_scim_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
# The example organisation (users @contoso.com): what the `sb` fixture seeds.
ORG = ROOT / "examples" / "sandbox" / "org.yaml"
OPERATOR = "synapse-scim-operator"


def gid(sb: Any, name: str) -> str:
    """The id of the (first) group with this display name."""
    return sb.state.directory.groups_named(name)[0].id


def uid(sb: Any, upn: str) -> str:
    return sb.state.directory.user(upn).id


async def graph_calls(sb: Sandbox) -> dict[str, int]:
    """The sandbox's Graph counters ("graph.<operation>.<status>": n)."""
    return {k: v for k, v in (await sb.admin.counters()).items() if k.startswith("graph.")}


def cloud(sb: Any) -> Cloud:
    """The sandbox's endpoints as a SynapseWorkspace's spec.cloud names them."""
    return Cloud.from_spec({"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.removesuffix("/v1.0")})


def operator_credential(sb: Any, client: str = OPERATOR) -> ClientSecretCredential:
    app = sb.client(client)
    return ClientSecretCredential(
        sb.tenant_id, app.client_id, app.secret or "", authority=sb.authority_host, connection_verify=str(sb.ca_path)
    )


def directory(sb: Any, credential: ClientSecretCredential) -> Directory:
    """The operator's Directory adapter on the sandbox's Graph."""
    return Directory(graph_client(credential, cloud(sb), verify=str(sb.ca_path)))


def object_id(sb: Any, ref: str) -> str:
    """The id of the user, group or service principal named `ref` (UPN, display name or id), lower case."""
    return str(sb.state.directory.resolve(ref).id).lower()


def role_id(sb: Any, name: str) -> str:
    """The id of a Synapse role definition, by name."""
    return str(sb.state.roles.resolve(name).id).lower()


async def holders(sb: Sandbox, role: str, workspace: str = "analytics", scope: str | None = None) -> set[str]:
    """Who holds `role` at `scope` (default: the whole workspace) in the sandbox now: principal ids."""
    scope = scope or f"workspaces/{workspace}"
    rid = role_id(sb, role)
    return {
        a["principalId"].lower()
        for a in await sb.admin.list_assignments(workspace)
        if a["roleDefinitionId"].lower() == rid and a["scope"] == scope
    }


async def last_seq(sb: Sandbox) -> int:
    """The sequence number of the last request the sandbox logged (0 if none): `since=` for later reads."""
    log = await sb.admin.request_log()
    return int(log[-1]["seq"]) if log else 0


async def synapse_requests(sb: Sandbox, operation: str, since: int = 0) -> list[dict[str, Any]]:
    """The Synapse requests of one operation (createRoleAssignment, listRoleAssignments, ...) the sandbox
    logged after `since`."""
    return list(await sb.admin.request_log(service="synapse", operation=operation, since=since))
