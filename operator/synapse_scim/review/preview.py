"""Read and plan, never write: what the operator's next sync of a workspace would do.

The reads and the decisions are the operator's own (reads.inputs.read_workspace, planner.plan_workspace),
so `synapse-scim plan` and `explain` cannot disagree with what the operator does; only the write step
of the controller's sync is left out. The objects come from manifests and, optionally, the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from synapse_scim.adapters.connections import Clients, Connections, workspace_name
from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.adapters.directory import Directory
from synapse_scim.adapters.kube import Kube
from synapse_scim.adapters.workspace import RoleDefinition, Workspace, WorkspaceError
from synapse_scim.core.model import Assignment, BindingKey, BindingState, Plan, Principal, Problem, normalize_id
from synapse_scim.core.objects import BindingObject, WorkspaceObject
from synapse_scim.core.planner import plan_workspace
from synapse_scim.core.reasons import Reason
from synapse_scim.reads.directory_reads import DirectoryReads
from synapse_scim.reads.inputs import read_workspace
from synapse_scim.reads.scim_reads import ScimResolution, ScimSource, ScimSubjects
from synapse_scim.review.chains import GroupWalker
from synapse_scim.review.manifests import Manifest, ManifestError
from synapse_scim.review.scim_chains import MatchKey, ScimMatch, scim_matches

Key = tuple[str, str]  # (namespace, name)


@dataclass
class Target:
    """One workspace to plan, with the bindings the operator would see for it."""

    body: dict[str, Any]
    bindings: list[dict[str, Any]]

    @property
    def key(self) -> Key:
        meta = self.body["metadata"]
        return (meta["namespace"], meta["name"])


@dataclass
class WorkspacePreview:
    ws: WorkspaceObject
    bindings: list[BindingObject]
    ws_name: str = ""
    roles: dict[str, RoleDefinition] = field(default_factory=dict)
    actual: tuple[Assignment, ...] = ()
    states: list[BindingState] = field(default_factory=list)
    plan: Plan | None = None
    problem: Problem | None = None  # nothing could be read
    subject_groups: dict[tuple[str, str], Principal] = field(default_factory=dict)  # (binding, display) -> group
    scim: ScimResolution = field(default_factory=ScimResolution)  # the ScimGroup subjects and their members
    scim_subjects: dict[BindingKey, ScimSubjects] = field(default_factory=dict)  # per binding that has any
    scim_matches: dict[MatchKey, ScimMatch] = field(default_factory=dict)  # how each pushed member matched

    @property
    def role_names(self) -> dict[str, str]:
        return {r.id: r.name for r in self.roles.values()}


def _with_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    meta = dict(body.get("metadata") or {})
    meta.setdefault("namespace", namespace)
    return {**body, "metadata": meta}


def _over(cluster: dict[str, Any] | None, manifest: dict[str, Any]) -> dict[str, Any]:
    """The object as the operator would see it once the manifest is applied: the manifest's spec, the
    cluster's status (claims, orphaned ids, held plan) and both sets of annotations (an approval made
    with kubectl annotate survives an apply that does not mention it)."""
    if cluster is None:
        return manifest
    meta = {**(cluster.get("metadata") or {}), **manifest["metadata"]}
    meta["annotations"] = {
        **((cluster.get("metadata") or {}).get("annotations") or {}),
        **(manifest["metadata"].get("annotations") or {}),
    }
    return {**manifest, "metadata": meta, "status": cluster.get("status") or {}}


async def targets(
    manifests: Iterable[Manifest], namespace: str, kube: Kube | None = None, prune: bool = False
) -> list[Target]:
    """Workspaces to plan: every SynapseWorkspace of the manifests and every workspace a manifest binding
    refers to; with a cluster, the bindings already there join (replaced by manifests of the same name),
    and with ``prune`` the cluster's bindings missing from the manifests are planned as deleted."""
    workspaces: dict[Key, dict[str, Any]] = {}
    bindings: dict[Key, dict[str, Any]] = {}
    sources: dict[tuple[str, Key], str] = {}
    for m in manifests:
        body = _with_namespace(m.body, namespace)
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if (m.kind, key) in sources:
            raise ManifestError(f"{m.source}: {m.kind} {key[0]}/{key[1]} is also defined in {sources[m.kind, key]}")
        sources[m.kind, key] = m.source
        (workspaces if m.kind == "SynapseWorkspace" else bindings)[key] = body
    wanted = set(workspaces) | {(ns, b["spec"]["workspaceRef"]["name"]) for (ns, _), b in bindings.items()}
    out: list[Target] = []
    for ws_key in sorted(wanted):
        ns, name = ws_key
        in_cluster = await kube.get_workspace(ns, name) if kube else None
        if ws_key in workspaces:
            body = _over(in_cluster, workspaces[ws_key])
        elif in_cluster is not None:
            body = in_cluster
        else:
            refs = sorted(
                sources["SynapseRoleBinding", k]
                for k, b in bindings.items()
                if (k[0], b["spec"]["workspaceRef"]["name"]) == ws_key
            )
            where = "in the manifests or the cluster" if kube else "in the manifests (--cluster also looks there)"
            raise ManifestError(f"{refs[0]}: spec.workspaceRef.name: no SynapseWorkspace {ns}/{name} {where}")
        mine: dict[str, dict[str, Any]] = {}
        if kube is not None:
            for b in await kube.list_bindings(ns, name):
                mine[b["metadata"]["name"]] = b
        from_manifests = {
            k[1]: b for k, b in bindings.items() if k[0] == ns and b["spec"]["workspaceRef"]["name"] == name
        }
        if prune:
            for bname in set(mine) - set(from_manifests):
                meta = {**mine[bname]["metadata"], "deletionTimestamp": "prune"}
                mine[bname] = {**mine[bname], "metadata": meta}
        for bname, b in from_manifests.items():
            mine[bname] = _over(mine.get(bname), b)
        out.append(Target(body=body, bindings=[mine[k] for k in sorted(mine)]))
    return out


def connections(kube: Kube | None) -> Connections:
    """With a cluster, the operator's own credential path (the workspace's Secret); without one, the
    environment's identity through the SDKs' default chain (no Secret is readable outside a cluster)."""
    if kube is not None:
        return Connections(kube.read_secret)

    async def no_secrets(namespace: str, name: str, key: str) -> bytes:
        raise CredentialError(Reason.SECRET_NOT_FOUND, f"Secret {namespace}/{name} cannot be read without --cluster")

    return Connections(no_secrets)


async def open_clients(conns: Connections, target: Target, kube: Kube | None) -> Clients:
    ns, name = target.key
    spec = dict(target.body.get("spec") or {})
    if kube is None:
        spec.pop("credential", None)
    return await conns.get(ns, name, spec)


async def preview_workspace(
    ws: WorkspaceObject,
    bindings: list[BindingObject],
    directory: Directory,
    workspace: Workspace,
    *,
    read_concurrency: int = 8,
    scim_source: ScimSource | None = None,
) -> WorkspacePreview:
    """sync_workspace's reads and plan, without its writes. ``scim_source``: where ScimGroup subjects are
    read (session.py: the cluster's objects with --cluster, else a NoScimSource that says to use it)."""
    result = WorkspacePreview(ws=ws, bindings=bindings, ws_name=workspace.name)
    reads = DirectoryReads(directory, read_concurrency)
    try:
        try:
            read = await read_workspace(
                ws,
                bindings,
                directory,
                workspace,
                read_concurrency=read_concurrency,
                reads=reads,
                scim_source=scim_source,
            )
        except WorkspaceError as exc:
            result.problem = Problem(exc.reason, exc.message)
            return result
        result.subject_groups = await _subject_groups(bindings, reads)
    finally:
        reads.cancel()
    result.roles = read.roles
    result.actual = read.actual
    result.states = list(read.states)
    result.scim = read.scim
    result.scim_subjects = dict(read.scim_subjects)
    result.scim_matches = scim_matches(read.scim, result.scim_subjects)
    result.plan = plan_workspace(read.inputs)
    return result


async def _subject_groups(bindings: list[BindingObject], reads: DirectoryReads) -> dict[tuple[str, str], Principal]:
    """The groups each binding expands, by the display name its DesiredGrant.via carries (the reads are
    cached: nothing is read twice)."""
    out: dict[tuple[str, str], Principal] = {}
    for b in bindings:
        for s in b.spec.get("subjects") or ():
            if s.get("kind") != "Group" or not s.get("expand", True) or b.deleting or b.spec.get("suspend"):
                continue
            try:
                group = await reads.resolve("Group", s.get("name"), s.get("id"))
            except Exception:  # already a Problem of the binding
                continue
            out[(str(b.key), group.display)] = group
    return out


async def chain_of(
    preview: WorkspacePreview, walker: GroupWalker, binding: str, via: tuple[str, ...], member: Principal
) -> tuple[str, ...]:
    """The groups from a binding's subject group down to ``member``; () when the member is the subject.
    A member of a pushed group has the group's label as its chain ("okta: Data Engineers"; scim_match
    says which pushed user it is)."""
    if not via:
        return ()
    if scim_match(preview, binding, via, member) is not None:
        return via
    group = preview.subject_groups.get((binding, via[0]))
    if group is None:
        return via
    paths = await walker.paths(group)
    return paths.get(member.id, via)


def scim_match(preview: WorkspacePreview, binding: str, via: tuple[str, ...], member: Principal) -> ScimMatch | None:
    """The pushed user that brings ``member`` into ``binding`` through the pushed group ``via`` names."""
    if len(via) != 1:
        return None
    return preview.scim_matches.get((binding, via[0], normalize_id(member.id)))


def preview_error(ws: WorkspaceObject, bindings: list[BindingObject], problem: Problem) -> WorkspacePreview:
    return WorkspacePreview(ws=ws, bindings=bindings, problem=problem)


def objects(target: Target) -> tuple[WorkspaceObject, list[BindingObject]]:
    return WorkspaceObject.from_body(target.body), [BindingObject.from_body(b) for b in target.bindings]


async def preview_target(
    conns: Connections,
    target: Target,
    kube: Kube | None,
    read_concurrency: int = 8,
    scim_source: ScimSource | None = None,
) -> tuple[WorkspacePreview, Clients | None]:
    ws, bindings = objects(target)
    try:
        workspace_name(dict(ws.spec))
        clients = await open_clients(conns, target, kube)
    except CredentialError as exc:
        return preview_error(ws, bindings, Problem(exc.reason, exc.message)), None
    except (KeyError, ValueError) as exc:
        return preview_error(ws, bindings, Problem(Reason.WORKSPACE_NAME_UNKNOWN, f"spec: {exc}")), None
    preview = await preview_workspace(
        ws, bindings, clients.directory, clients.workspace, read_concurrency=read_concurrency, scim_source=scim_source
    )
    return preview, clients
