"""Synapse workspaces: built-in role definitions, RBAC scopes, workspace items and role assignments.

Role assignments are kept in insertion order by a sequence number; list filters (roleId, principalId,
scope) use per-value indexes of sorted sequence numbers, so a page costs O(log n + page) when one
filter is given. The scope filter matches the scope and the scopes that enclose it, as the real one does.
The continuation token is the last sequence number returned, which keeps paging stable while
assignments are added or deleted between pages.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

from .directory import lower

#: Scope item kinds, in the order the service lists them in GET /rbacScopes.
SCOPE_KINDS: tuple[str, ...] = ("bigDataPools", "scopePools", "integrationRuntimes", "linkedServices", "credentials")
_ITEM_PLACEHOLDER = {
    "bigDataPools": "bigDataPoolName",
    "scopePools": "scopePoolName",
    "integrationRuntimes": "integrationRuntimeName",
    "linkedServices": "linkedServiceName",
    "credentials": "credentialName",
}
WORKSPACE_TEMPLATE = "workspaces/{workspaceName}"
#: Scope templates as GET /rbacScopes returns them.
SCOPE_TEMPLATES: tuple[str, ...] = (
    WORKSPACE_TEMPLATE,
    *(f"{WORKSPACE_TEMPLATE}/{k}/{{{_ITEM_PLACEHOLDER[k]}}}" for k in SCOPE_KINDS),
)
TEMPLATE_BY_KIND: dict[str | None, str] = {None: WORKSPACE_TEMPLATE} | dict(
    zip(SCOPE_KINDS, SCOPE_TEMPLATES[1:], strict=True)
)

SYNAPSE_ADMINISTRATOR = "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78"
READ_ACTION = "Microsoft.Synapse/workspaces/read"
WRITE_ASSIGNMENT_ACTION = "Microsoft.Synapse/workspaces/roleAssignments/write"
DELETE_ASSIGNMENT_ACTION = "Microsoft.Synapse/workspaces/roleAssignments/delete"

#: Access levels a client (app registration) can be given on a workspace, see `Workspace.allows`.
ACCESS_LEVELS = ("admin", "reader", "none", "rbac")


class ScopeError(ValueError):
    """A scope string that is malformed, names another workspace or an item that does not exist."""


@dataclass(frozen=True, slots=True)
class RoleDefinition:
    id: str
    name: str
    description: str
    scopes: tuple[str, ...]
    data_actions: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "isBuiltIn": True,
            "description": self.description,
            "permissions": [
                {"actions": [], "notActions": [], "dataActions": list(self.data_actions), "notDataActions": []}
            ],
            "scopes": list(self.scopes),
            "availabilityStatus": "Available",
        }


def load_builtin_roles() -> tuple[RoleDefinition, ...]:
    data = resources.files("synapse_scim_sandbox") / "data"
    roles = json.loads((data / "builtin-roles.json").read_text(encoding="utf-8"))
    perms = json.loads((data / "role-permissions.json").read_text(encoding="utf-8"))
    out = []
    for r in roles:
        p = perms.get(r["id"], {})
        out.append(
            RoleDefinition(
                r["id"],
                r["name"],
                p.get("description", r["name"]),
                tuple(r["scopes"]),
                tuple(p.get("dataActions", (READ_ACTION,))),
            )
        )
    return tuple(out)


class Roles:
    def __init__(self, roles: tuple[RoleDefinition, ...]) -> None:
        self.all = roles
        self._by_id = {r.id: r for r in roles}
        self._by_name = {r.name.casefold(): r for r in roles}
        # The docs spell one role "Synapse Apache Spark Administrator"; accept both.
        spark = self._by_name.get("apache spark administrator")
        if spark is not None:
            self._by_name.setdefault("synapse apache spark administrator", spark)

    def get(self, role_id: str) -> RoleDefinition | None:
        return self._by_id.get(role_id.lower())

    def resolve(self, ref: str) -> RoleDefinition | None:
        """A role by id or by (case-insensitive) name."""
        return self.get(ref) or self._by_name.get(ref.casefold())


def parse_scope(scope: str) -> tuple[str, str | None, str | None]:
    """`workspaces/{ws}[/{kind}/{item}]` -> (ws, kind, item); ScopeError if malformed."""
    parts = scope.split("/")
    if len(parts) not in (2, 4) or parts[0] != "workspaces" or not all(parts):
        raise ScopeError(
            f"The scope '{scope}' is not valid. Expected 'workspaces/{{workspaceName}}' or "
            f"'workspaces/{{workspaceName}}/{{itemType}}/{{itemName}}'."
        )
    if len(parts) == 2:
        return parts[1], None, None
    if parts[2] not in SCOPE_KINDS:
        raise ScopeError(
            f"The scope '{scope}' is not valid. Unknown item type '{parts[2]}'; expected one of "
            f"{', '.join(SCOPE_KINDS)}."
        )
    return parts[1], parts[2], parts[3]


def enclosing_scopes(scope: str) -> tuple[str, ...]:
    """`scope` and its prefixes of whole path segments: `workspaces/w/bigDataPools/p2` is enclosed by
    `workspaces/w` but not by `workspaces/w/bigDataPools/p`, a prefix of its text only."""
    parts = scope.split("/")
    return tuple("/".join(parts[:n]) for n in range(len(parts), 0, -1))


@dataclass(slots=True)
class Assignment:
    seq: int
    id: str
    role_id: str
    principal_id: str
    scope: str
    principal_type: str | None = None
    created_by: str | None = None  # client id of the caller, None for seeded / admin-made grants

    def to_json(self) -> dict[str, str]:
        out = {"id": self.id, "roleDefinitionId": self.role_id, "principalId": self.principal_id, "scope": self.scope}
        if self.principal_type is not None:
            out["principalType"] = self.principal_type
        return out


def _seq(a: Assignment) -> int:
    return a.seq


class AssignmentStore:
    """Assignments in insertion (sequence) order, with per-role, per-principal and per-scope lists that are
    kept sorted by sequence number (appends; deletes find their place by bisection)."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._all: list[Assignment] = []
        self._by_id: dict[str, Assignment] = {}
        self._by_triple: dict[tuple[str, str, str], Assignment] = {}
        self._by_role: dict[str, list[Assignment]] = {}
        self._by_principal: dict[str, list[Assignment]] = {}
        self._by_scope: dict[str, list[Assignment]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def get(self, assignment_id: str) -> Assignment | None:
        return self._by_id.get(assignment_id.lower())

    def find(self, role_id: str, principal_id: str, scope: str) -> Assignment | None:
        return self._by_triple.get((role_id.lower(), principal_id.lower(), scope))

    def add(
        self,
        assignment_id: str,
        role_id: str,
        principal_id: str,
        scope: str,
        principal_type: str | None = None,
        created_by: str | None = None,
    ) -> Assignment:
        """Insert; the caller has checked id and (role, principal, scope) are free. Pass canonical (shared)
        strings for role, principal and scope where possible: 200k assignments share a few of each."""
        role, principal = lower(role_id), lower(principal_id)
        role = self._by_role[role][0].role_id if role in self._by_role else role
        principal = self._by_principal[principal][0].principal_id if principal in self._by_principal else principal
        scope = self._by_scope[scope][0].scope if scope in self._by_scope else scope
        a = Assignment(next(self._seq), assignment_id, role, principal, scope, principal_type, created_by)
        self._all.append(a)
        self._by_id[lower(assignment_id)] = a
        self._by_triple[(role, principal, scope)] = a
        self._by_role.setdefault(role, []).append(a)
        self._by_principal.setdefault(principal, []).append(a)
        self._by_scope.setdefault(scope, []).append(a)
        return a

    @staticmethod
    def _drop(items: list[Assignment], a: Assignment) -> None:
        del items[bisect.bisect_left(items, a.seq, key=_seq)]

    def _drop_from(self, index: dict[str, list[Assignment]], key: str, a: Assignment) -> None:
        items = index[key]
        self._drop(items, a)
        if not items:
            del index[key]

    def remove(self, assignment_id: str) -> Assignment | None:
        a = self._by_id.pop(assignment_id.lower(), None)
        if a is None:
            return None
        self._drop(self._all, a)
        del self._by_triple[(a.role_id, a.principal_id, a.scope)]
        self._drop_from(self._by_role, a.role_id, a)
        self._drop_from(self._by_principal, a.principal_id, a)
        self._drop_from(self._by_scope, a.scope, a)
        return a

    def __iter__(self) -> Iterator[Assignment]:
        return iter(list(self._all))

    def of_principals(self, principal_ids: set[str]) -> Iterator[Assignment]:
        for pid in principal_ids:
            yield from self._by_principal.get(pid, ())

    def page(
        self,
        *,
        role_id: str | None = None,
        principal_id: str | None = None,
        scope: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> tuple[list[Assignment], int | None]:
        """Up to `limit` assignments with seq > `after` that match every given filter: role and principal
        exactly, scope at `scope` or at a scope that encloses it (the real service lists the workspace's
        assignments when asked for a pool's, recorded by the az CLI tests).

        Returns (items, next_after) where next_after is None when nothing matches beyond the page."""
        role = role_id.lower() if role_id is not None else None
        principal = principal_id.lower() if principal_id is not None else None
        scopes = frozenset(enclosing_scopes(scope)) if scope is not None else None
        # Each filter offers sorted runs that hold every assignment it can match; walk the smallest offer.
        offers: list[list[list[Assignment]]] = [[self._all]]
        if role is not None:
            offers.append([self._by_role.get(role, [])])
        if principal is not None:
            offers.append([self._by_principal.get(principal, [])])
        if scopes is not None:
            offers.append([self._by_scope[s] for s in scopes if s in self._by_scope])
        runs = min(offers, key=lambda offer: sum(map(len, offer)))
        out: list[Assignment] = []
        for a in _merged_after(runs, after):
            if (
                (role is not None and a.role_id != role)
                or (principal is not None and a.principal_id != principal)
                or (scopes is not None and a.scope not in scopes)
            ):
                continue
            if len(out) == limit:
                return out, out[-1].seq
            out.append(a)
        return out, None


def _merged_after(runs: list[list[Assignment]], after: int) -> Iterable[Assignment]:
    """The assignments of sorted `runs` with seq > `after`, in seq order (bisection, no scan of the skipped)."""

    def tail(items: list[Assignment]) -> Iterator[Assignment]:
        for i in range(bisect.bisect_right(items, after, key=_seq), len(items)):
            yield items[i]

    if len(runs) == 1:
        return tail(runs[0])
    return heapq.merge(*map(tail, runs), key=_seq)


class Workspace:
    def __init__(self, name: str, roles: Roles) -> None:
        self.name = name
        self.roles = roles
        self.items: dict[str, set[str]] = {k: set() for k in SCOPE_KINDS}
        self.assignments = AssignmentStore()
        self.access: dict[str, str] = {}  # client id -> level; missing = default_access
        self.default_access = "admin"

    @property
    def scope(self) -> str:
        return f"workspaces/{self.name}"

    def check_scope(self, scope: str) -> tuple[str | None, str | None]:
        """Validate a concrete scope of this workspace -> (kind, item)."""
        ws, kind, item = parse_scope(scope)
        if ws != self.name:
            raise ScopeError(f"The scope '{scope}' does not belong to workspace '{self.name}'.")
        if kind is not None and item not in self.items[kind]:
            raise ScopeError(f"The scope '{scope}' is not valid: workspace '{self.name}' has no {kind} named '{item}'.")
        return kind, item

    def covering_scopes(self, scope: str) -> tuple[str, ...]:
        """The scopes whose assignments apply at `scope` (itself and the workspace)."""
        return (scope,) if scope == self.scope else (scope, self.scope)

    def level(self, client_id: str) -> str:
        return self.access.get(client_id.lower(), self.default_access)

    def role_allows(self, principal_ids: set[str], action: str, scope: str) -> Assignment | None:
        """An assignment that grants `action` at `scope` to one of `principal_ids`, if any."""
        covering = set(self.covering_scopes(scope))
        for a in self.assignments.of_principals(principal_ids):
            if a.scope in covering:
                role = self.roles.get(a.role_id)
                if role is not None and action in role.data_actions:
                    return a
        return None
