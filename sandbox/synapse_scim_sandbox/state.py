"""The sandbox's whole in-memory world: tenant, directory, app registrations, tokens and workspaces.

Pure data and rules (no I/O). The HTTP handlers, the admin API and the seed loader all mutate it
through the methods here, so the same validation applies to a role assignment made by the SDK, by
the admin API and by a seed file.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass

from .apps import AppRegistration, TokenStore
from .directory import GROUP, PRINCIPAL_TYPES, SERVICE_PRINCIPAL, USER, Directory, DirectoryError
from .workspaces import TEMPLATE_BY_KIND, Assignment, Roles, ScopeError, Workspace, load_builtin_roles

#: Namespace of every id the sandbox derives from a name (uuid5), so runs are reproducible.
SANDBOX_NAMESPACE = uuid.UUID("5d1c7a3e-2b8f-4c61-9e0a-7f3b1d2c4e59")


def stable_id(kind: str, name: str) -> str:
    """The id the sandbox gives an object of `kind` named `name` when the seed gives none."""
    return str(uuid.uuid5(SANDBOX_NAMESPACE, f"{kind}:{name.casefold()}"))


def is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return len(text) == 36


class Clock:
    """Wall clock plus an offset that tests can advance (token expiry without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Settings:
    token_lifetime: float = 3600.0
    page_size: int = 100  # Synapse role assignments per list page
    graph_page_size: int = 100  # Graph default page size ($top absent)
    graph_max_page_size: int = 999
    delta_member_chunk: int = 1000  # members of one group per delta page before it continues


class AssignmentError(Exception):
    """A role assignment request the service rejects; carries the HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class State:
    def __init__(
        self, tenant_id: str, tenant_domain: str, settings: Settings | None = None, clock: Clock | None = None
    ) -> None:
        self.tenant_id = tenant_id.lower()
        self.tenant_domain = tenant_domain
        self.settings = settings or Settings()
        self.clock = clock or Clock()
        self.directory = Directory()
        self.roles = Roles(load_builtin_roles())
        self.workspaces: dict[str, Workspace] = {}
        self.apps: dict[str, AppRegistration] = {}
        self.tokens = TokenStore()

    # ---------------------------------------------------------------- tenant, apps
    def is_tenant(self, ref: str) -> bool:
        return ref.lower() in (self.tenant_id, self.tenant_domain.lower())

    def add_app(self, app: AppRegistration) -> AppRegistration:
        app.client_id = app.client_id.lower()
        if app.client_id in self.apps:
            raise DirectoryError(f"client id {app.client_id} is registered twice", status=409, code="Conflict")
        sp = self.directory.sp_by_app_id(app.client_id)
        if sp is None:
            sp = self.directory.add_service_principal(app.object_id, app.client_id, app.name)
        app.object_id = sp.id
        self.apps[app.client_id] = app
        return app

    def app(self, client_id: str) -> AppRegistration | None:
        return self.apps.get(client_id.lower())

    def replace_data(self, fresh: State) -> None:
        """Take directory and workspaces from `fresh` (a re-seeded copy); apps, tokens, clock stay."""
        self.directory = fresh.directory
        self.workspaces = fresh.workspaces
        for app in self.apps.values():
            if self.directory.sp_by_app_id(app.client_id) is None:
                self.directory.add_service_principal(app.object_id, app.client_id, app.name)

    # ---------------------------------------------------------------- principals
    def principal_type(self, object_id: str) -> str | None:
        obj = self.directory.get(object_id)
        return PRINCIPAL_TYPES[obj.kind] if obj is not None else None

    def member_of(self, object_id: str) -> set[str]:
        """Every group that contains `object_id`, directly or through nesting (cycle-safe)."""
        seen: set[str] = set()
        queue = deque(self.directory.parents(object_id))
        while queue:
            gid = queue.popleft()
            if gid not in seen:
                seen.add(gid)
                queue.extend(self.directory.parents(gid))
        return seen

    # ---------------------------------------------------------------- workspaces
    def add_workspace(self, name: str) -> Workspace:
        if name in self.workspaces:
            raise DirectoryError(f"workspace {name!r} is defined twice", status=409, code="Conflict")
        ws = Workspace(name, self.roles)
        self.workspaces[name] = ws
        return ws

    def workspace(self, name: str) -> Workspace:
        ws = self.workspaces.get(name)
        if ws is None:
            raise DirectoryError(f"workspace {name!r} does not exist", status=404, code="WorkspaceNotFound")
        return ws

    def create_assignment(
        self,
        ws: Workspace,
        assignment_id: str,
        role_id: str,
        principal_id: str,
        scope: str,
        principal_type: str | None = None,
        created_by: str | None = None,
    ) -> Assignment:
        """Validate and store a role assignment exactly as PUT /roleAssignments/{id} does."""
        if not assignment_id:
            raise AssignmentError(400, "InvalidRoleAssignmentId", "The role assignment id must not be empty.")
        if not is_guid(role_id):
            raise AssignmentError(400, "InvalidRoleDefinitionId", f"The role id '{role_id}' is not a valid GUID.")
        if not is_guid(principal_id):
            raise AssignmentError(400, "InvalidPrincipalId", f"The principal id '{principal_id}' is not a valid GUID.")
        role = self.roles.get(role_id)
        if role is None:
            raise AssignmentError(400, "RoleDefinitionNotFound", f"The role definition '{role_id}' does not exist.")
        try:
            kind, _ = ws.check_scope(scope)
        except ScopeError as e:
            raise AssignmentError(400, "InvalidScope", str(e)) from None
        if TEMPLATE_BY_KIND[kind] not in role.scopes:
            raise AssignmentError(
                400,
                "RoleNotApplicableAtScope",
                f"The role '{role.name}' ({role.id}) cannot be assigned at scope '{scope}'; "
                f"it is valid at: {', '.join(role.scopes)}.",
            )
        existing = ws.assignments.find(role_id, principal_id, scope)
        if existing is not None:
            raise AssignmentError(
                409,
                "RoleAssignmentAlreadyExists",
                f"Role Assignment with roleId '{role_id}', principalId '{principal_id}' and "
                f"scope '{scope}' within workspace '{ws.name}' already exists.",
            )
        if ws.assignments.get(assignment_id) is not None:
            raise AssignmentError(
                409,
                "RoleAssignmentIdConflict",
                f"A role assignment with id '{assignment_id}' already exists in workspace "
                f"'{ws.name}' for another role, principal or scope.",
            )
        known = self.directory.get(principal_id)  # share the directory's id string (memory, 200k assignments)
        if principal_type is None and known is not None:
            # The service looks the principal up when the request names no type (az CLI recording, 2022); for
            # an id the directory does not know, no recording says what it does: it stays without a type.
            principal_type = PRINCIPAL_TYPES[known.kind]
        return ws.assignments.add(
            assignment_id, role.id, known.id if known is not None else principal_id, scope, principal_type, created_by
        )

    def grant(
        self,
        workspace: str,
        role: str,
        principal: str,
        scope: str | None = None,
        assignment_id: str | None = None,
        principal_type: str | None = None,
    ) -> Assignment:
        """A manual grant (seed or admin API): role by name or id, principal by id or name."""
        ws = self.workspace(workspace)
        role_def = self.roles.resolve(role)
        if role_def is None:
            raise AssignmentError(400, "RoleDefinitionNotFound", f"no Synapse role named or with id {role!r}")
        if is_guid(principal):
            pid = principal.lower()
            ptype = principal_type or self.principal_type(pid)
        else:
            obj = self.directory.resolve(principal, (USER, GROUP, SERVICE_PRINCIPAL))
            pid, ptype = obj.id, principal_type or PRINCIPAL_TYPES[obj.kind]
        scope = scope or ws.scope
        aid = assignment_id or stable_id("assignment", f"{ws.name}|{role_def.id}|{pid}|{scope}")
        return self.create_assignment(ws, aid, role_def.id, pid, scope, ptype)

    def summary(self) -> dict[str, object]:
        d = self.directory
        return {
            "tenant_id": self.tenant_id,
            "users": len(d.users),
            "groups": len(d.groups),
            "service_principals": len(d.service_principals),
            "workspaces": {
                n: {"assignments": len(w.assignments), "items": {k: sorted(v) for k, v in w.items.items() if v}}
                for n, w in self.workspaces.items()
            },
            "change_seq": d.changes.seq,
        }
