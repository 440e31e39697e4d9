"""A plan's writes to Synapse, in parallel within the workspace's adaptive write limit, each audited.

A write that fails is reported against the bindings that wanted it and retried by the next sync;
it never stops the other writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse_scim.adapters.workspace import Workspace, WorkspaceError
from synapse_scim.core.model import Assignment, BindingKey, Create, Plan, Problem
from synapse_scim.core.reasons import Action, Outcome
from synapse_scim.core.status import now_iso

audit_log = logging.getLogger("synapse_scim.audit")

# Revocation failures have no binding of their own (nobody wants the assignment any more).
NO_BINDING = BindingKey("", "")


# Slotted: a first sync at scenario L keeps ~11k of them per workspace until its writes are done.
@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: Action  # grant, adopt or revoke
    principal: str
    principal_id: str
    role: str
    role_id: str
    scope: str
    bindings: tuple[str, ...]
    reason: str
    outcome: str  # Outcome.DONE, Outcome.ALREADY or "failed: <Reason>"

    @property
    def failed(self) -> bool:
        return self.outcome.startswith(Outcome.FAILED)

    def as_dict(self) -> dict[str, Any]:
        # A shallow copy: every field is a str, a str enum or a tuple of str, so dataclasses.asdict's
        # recursive deep copy gave the same dict at several times the cost, once per write.
        # (Slotted: no __dict__ to copy, so the fields are read by name.)
        return {name: getattr(self, name) for name in AUDIT_FIELDS}


AUDIT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditRecord))


@dataclass
class WriteResult:
    audit: list[AuditRecord] = dataclasses.field(default_factory=list)
    creates: list[Create] = dataclasses.field(default_factory=list)  # done (created or adopted)
    deletes: list[Assignment] = dataclasses.field(default_factory=list)  # done (deleted or already gone)
    errors: dict[BindingKey, list[Problem]] = dataclasses.field(default_factory=dict)
    # assignment id -> when the PUT answered 2xx (RFC 3339 UTC), for the grant ledger; adoptions are not here
    granted_at: dict[str, str] = dataclasses.field(default_factory=dict)


def _failed(exc: WorkspaceError) -> str:
    return f"{Outcome.FAILED}: {exc.reason}"


async def execute(plan: Plan, workspace: Workspace, role_names: Mapping[str, str]) -> WriteResult:
    """Every create and delete of the plan; what was done, audited, and the problems per binding."""
    out = WriteResult()
    # The bindings' names and the reason, once per (bindings, via): a binding's thousands of creates
    # share them, and every audit record is kept until the end of the sync.
    labels: dict[tuple[tuple[BindingKey, ...], tuple[str, ...]], tuple[tuple[str, ...], str]] = {}

    def label(c: Create) -> tuple[tuple[str, ...], str]:
        found = labels.get((c.bindings, c.via))
        if found is None:
            bindings = tuple(str(b) for b in c.bindings)
            via = f" via group {' > '.join(c.via)}" if c.via else ""
            found = labels[(c.bindings, c.via)] = (bindings, f"wanted by {', '.join(bindings)}{via}")
        return found

    async def create(c: Create) -> None:
        bindings, reason = label(c)
        record = functools.partial(
            AuditRecord,
            principal=c.principal.display or c.principal.id,
            principal_id=c.principal.id,
            role=c.role_name,
            role_id=c.grant.role_id,
            scope=c.grant.scope,
            bindings=bindings,
            reason=reason,
        )
        try:
            created = await workspace.create(c.grant, str(c.principal_type))
        except WorkspaceError as exc:
            out.audit.append(record(Action.GRANT, outcome=_failed(exc)))
            for b in c.bindings:
                out.errors.setdefault(b, []).append(Problem(exc.reason, exc.message, retry_after=exc.retry_after))
            return
        out.creates.append(c)
        if created:
            out.granted_at[c.assignment_id] = now_iso()
            out.audit.append(record(Action.GRANT, outcome=Outcome.DONE))
        else:
            out.audit.append(record(Action.ADOPT, outcome=Outcome.ALREADY))

    async def delete(a: Assignment) -> None:
        record = functools.partial(
            AuditRecord,
            Action.REVOKE,
            principal=a.principal_id,
            principal_id=a.principal_id,
            role=role_names.get(a.role_id.lower(), a.role_id),
            role_id=a.role_id,
            scope=a.scope,
            bindings=(),
            reason="no binding wants it any more",
        )
        try:
            deleted = await workspace.delete(a)
        except WorkspaceError as exc:
            out.audit.append(record(outcome=_failed(exc)))
            out.errors.setdefault(NO_BINDING, []).append(Problem(exc.reason, exc.message, retry_after=exc.retry_after))
            return
        out.deletes.append(a)
        out.audit.append(record(outcome=Outcome.DONE if deleted else Outcome.ALREADY))

    # As many workers as writes may be in flight, each taking the next write when it is done: a sync
    # of tens of thousands of writes holds a few coroutines, not one suspended task per write.
    pending: deque[Callable[[], Awaitable[None]]] = deque(
        [*(functools.partial(create, c) for c in plan.creates), *(functools.partial(delete, a) for a in plan.deletes)]
    )

    async def worker() -> None:
        while pending:
            await pending.popleft()()

    await asyncio.gather(*(worker() for _ in range(min(len(pending), workspace.limit.maximum))))
    for r in out.audit:
        audit_log.info(
            "%s %s role=%r principal=%s scope=%s outcome=%s",
            r.action,
            r.principal,
            r.role,
            r.principal_id,
            r.scope,
            r.outcome,
            extra={"audit": r.as_dict()},
        )
    return out
