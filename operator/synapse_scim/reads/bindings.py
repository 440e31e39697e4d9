"""A binding's desired grants from the directory and the role definitions, or the problems that kept
them unknown (a problem makes the binding incomplete: the planner then prunes nothing in its pairs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from synapse_scim.adapters.directory import DirectoryError, Expansion
from synapse_scim.adapters.workspace import RoleDefinition
from synapse_scim.core.model import BindingState, DeletionPolicy, ManagementPolicy, Principal, Problem
from synapse_scim.core.objects import BindingObject
from synapse_scim.core.planner import desired_grants
from synapse_scim.core.reasons import Reason
from synapse_scim.core.scope import role_valid_at, scope_path, spec_scope_spelling
from synapse_scim.reads.directory_reads import DirectoryReads
from synapse_scim.reads.scim_reads import SCIM_GROUP, ScimSubjects


def subject_label(subject: Mapping[str, Any]) -> str:
    return f"{subject.get('kind')} {subject.get('name') or subject.get('id')}"


def claims_from_status(status: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """The role/scope pairs a binding claimed at its last sync (status.claims)."""
    return frozenset((c["roleId"], c["scope"]) for c in status.get("claims") or () if "roleId" in c and "scope" in c)


def direct_users(state: BindingState) -> frozenset[str]:
    """The accounts a binding names itself (not through a group): the tenant watch follows them."""
    return frozenset(d.principal.id.lower() for d in state.desired if not d.via)


def valid_scopes_text(role_scopes: Iterable[str]) -> str:
    """Where a role may be assigned, as a person writes it in spec.scope; a path spec.scope cannot
    express is shown as the role definition lists it."""
    spelled: list[str] = []
    other: list[str] = []
    for template in role_scopes:
        text = spec_scope_spelling(template)
        if text is None:
            other.append(template)
            continue
        text = "{} (the workspace)" if text == "{}" else text
        if text not in spelled:
            spelled.append(text)
    parts = [f"spec.scope {', '.join(spelled)}"] if spelled else []
    parts += [f"{t} (no spec.scope for it)" for t in other]
    return "; ".join(parts) or "no scope"


def resolve_roles(
    b: BindingObject, roles: Mapping[str, RoleDefinition], scope: str, ws_name: str
) -> tuple[dict[str, str], list[Problem]]:
    """Role names of the spec -> role ids valid at the binding's scope, and a problem per name that is not."""
    role_ids: dict[str, str] = {}
    problems: list[Problem] = []
    for name in b.spec.get("roles") or ():
        role = roles.get(name)
        if role is None:
            known = ", ".join(sorted(roles)) or "none"
            problems.append(
                Problem(
                    Reason.ROLE_NOT_FOUND,
                    f"role {name!r} does not exist in workspace {ws_name} (roles are named exactly; known: {known})",
                )
            )
        elif not role_valid_at(role.scopes, scope):
            problems.append(
                Problem(
                    Reason.ROLE_NOT_VALID_AT_SCOPE,
                    f"role {name!r} cannot be assigned at scope {scope}; "
                    f"it is valid at: {valid_scopes_text(role.scopes)}",
                )
            )
        else:
            role_ids[name] = role.id
    return role_ids, problems


async def resolve_binding(
    b: BindingObject,
    ws_name: str,
    roles: Mapping[str, RoleDefinition],
    reads: DirectoryReads,
    scim: ScimSubjects | None = None,
) -> tuple[BindingState, frozenset[str]]:
    """A binding's state for the planner, and the ids of every group its subjects expanded through.
    ``scim``: its ScimGroup subjects, resolved for the whole sync (reads/scim_reads.py)."""
    mode = ManagementPolicy(b.spec.get("managementPolicy", "Enforce"))
    deletion_policy = DeletionPolicy(b.spec.get("deletionPolicy", "Delete"))
    previous_claims = claims_from_status(b.status)

    def state(**fields: Any) -> BindingState:
        return BindingState(
            key=b.key,
            mode=mode,
            suspended=b.suspended,
            deleting=b.deleting,
            deletion_policy=deletion_policy,
            previous_claims=previous_claims,
            **fields,
        )

    try:
        scope = scope_path(ws_name, b.spec.get("scope"))
    except ValueError as exc:
        return state(complete=False, errors=(Problem(Reason.SCOPE_INVALID, f"spec.scope: {exc}"),)), frozenset()
    role_ids, problems = resolve_roles(b, roles, scope, ws_name)
    claims = frozenset((rid, scope) for rid in role_ids.values())
    if b.deleting or b.suspended:
        # Nothing of theirs is wanted any more / may be touched now: no directory reads needed.
        return state(complete=not problems and not b.suspended, claims=claims, errors=tuple(problems)), frozenset()

    principals: list[tuple[Principal, tuple[str, ...]]] = []
    groups: set[str] = set()
    subjects = [s for s in b.spec.get("subjects") or () if s.get("kind") != SCIM_GROUP]
    if scim is not None:
        # Pushed groups' matched members; a subject that did not resolve (or whose lookups failed)
        # makes the binding incomplete, so its former members' grants are held, never revoked.
        principals.extend(scim.principals)
        problems.extend(scim.problems)
    resolved = await asyncio.gather(
        *(reads.resolve(s.get("kind", ""), s.get("name"), s.get("id")) for s in subjects), return_exceptions=True
    )
    expansions: list[tuple[Principal, asyncio.Task[Expansion]]] = []
    for subject, found in zip(subjects, resolved, strict=True):
        label = subject_label(subject)
        if isinstance(found, DirectoryError):
            if found.reason == Reason.SUBJECT_DISABLED:
                continue  # a disabled account gets nothing: offboarding follows the directory
            problems.append(Problem(found.reason, found.message, subject=label, retry_after=found.retry_after))
            continue
        if isinstance(found, BaseException):
            problems.append(Problem(Reason.DIRECTORY_READ_FAILED, f"{label}: {found}", subject=label))
            continue
        if found.type == "Group":
            groups.add(found.id)
            if subject.get("expand", True):
                expansions.append((found, reads.expand(found)))
                continue
        principals.append((found, ()))
    for group, task in expansions:
        try:
            expansion = await task
        except DirectoryError as exc:
            problems.append(
                Problem(exc.reason, exc.message, subject=f"Group {group.display}", retry_after=exc.retry_after)
            )
            continue
        groups |= expansion.groups
        via = (group.display,)  # one tuple for the group's members (each wish keeps it), not one each
        principals.extend((p, via) for p in expansion.principals)
    desired = desired_grants(b.key, role_ids, principals, scope)
    return state(complete=not problems, claims=claims, desired=desired, errors=tuple(problems)), frozenset(groups)
