"""`synapse-scim plan`: what the operator would grant, revoke or hold (removal guard) once the manifests
are applied. Exit codes follow `terraform plan -detailed-exitcode`: 0 no changes, 2 changes, 1 error
(a bad manifest, a failed read, or a binding the operator would report as not Ready)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from synapse_scim.core.model import Assignment, BindingKey, Principal, Problem, normalize_id
from synapse_scim.core.objects import approve_command
from synapse_scim.core.reasons import Action, Reason
from synapse_scim.review.chains import GroupWalker, chain_text
from synapse_scim.review.holdings import (
    Explainer,
    principal_dict,
    problems_list,
    unresolved_text,
)
from synapse_scim.review.preview import WorkspacePreview, chain_of, scim_match
from synapse_scim.review.scim_chains import counts_text, scim_dict
from synapse_scim.review.session import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    Progress,
    Session,
    arguments,
    fatal_message,
    preview_all,
    workspace_title,
)


@dataclass
class Row:
    action: Action
    principal: Principal
    role_id: str
    role: str
    scope: str
    bindings: tuple[str, ...]
    via: tuple[str, ...]  # grant: one chain per wanting binding ("ns/b: A → B → alice"); others: ()
    assignment_id: str
    # grant through pushed groups: per wanting binding, the pushed user and how it matched (JSON "scim")
    scim: tuple[dict[str, Any], ...] = ()

    def cells(self) -> list[str]:
        return [
            self.action,
            self.principal.display or self.principal.id,
            str(self.principal.type),
            self.role,
            self.scope,
            ", ".join(self.bindings) or "-",
            "; ".join(self.via) or "-",
        ]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "principal": principal_dict(self.principal),
            "role": {"id": self.role_id, "name": self.role},
            "scope": self.scope,
            "bindings": list(self.bindings),
            "via": list(self.via),
            "assignmentId": self.assignment_id,
        }
        if self.scim:  # added with ScimGroup subjects: absent from grants that come through none
            out["scim"] = list(self.scim)
        return out


ORDER = {Action.GRANT: 0, Action.REVOKE: 1, Action.HELD: 2, Action.ORPHAN: 3}


async def _plan_rows(preview: WorkspacePreview, walker: GroupWalker) -> list[Row]:
    plan = preview.plan
    assert plan is not None
    explainer = Explainer(preview, walker)
    claimants: dict[tuple[str, str], set[str]] = {}
    for s in preview.states:
        for r, sc in s.all_claims:
            claimants.setdefault((normalize_id(r), sc.strip("/").lower()), set()).add(str(s.key))
    rows: list[Row] = []
    for c in plan.creates:
        wishes = sorted(explainer.wanted.get(c.grant.key, ()), key=lambda d: d.sort_key)
        several = len({dg.binding for dg in wishes}) > 1
        chains = []
        pushed: list[dict[str, Any]] = []
        for dg in wishes:
            chain = await chain_of(preview, walker, str(dg.binding), dg.via, dg.principal)
            found = scim_match(preview, str(dg.binding), dg.via, dg.principal)
            member = found.member_text(dg.principal.display) if found else dg.principal.display
            text = chain_text(chain, member) if chain else "(direct subject)"
            chains.append(f"{dg.binding}: {text}" if several else text)
            if found is not None:
                pushed.append({"binding": str(dg.binding), **found.as_dict()})
        rows.append(
            Row(
                Action.GRANT,
                c.principal,
                c.grant.role_id,
                c.role_name,
                c.grant.scope,
                tuple(str(b) for b in c.bindings),
                tuple(dict.fromkeys(chains)),
                c.assignment_id,
                tuple({json.dumps(p, sort_keys=True): p for p in pushed}.values()),
            )
        )

    async def removal(action: Action, a: Assignment) -> Row:
        principal = await explainer.principal_of(a.principal_id, a.principal_type)
        return Row(
            action,
            principal,
            a.role_id,
            explainer.role_name(a.role_id),
            a.scope,
            tuple(sorted(claimants.get(a.grant.pair, ()))),
            (),
            a.id,
        )

    by_id = {normalize_id(a.id): a for a in preview.actual}
    rows += await asyncio.gather(  # the directory objects behind removals are looked up concurrently
        *(removal(Action.REVOKE, a) for a in plan.deletes),
        *(removal(Action.HELD, a) for a in plan.held),
        *(removal(Action.ORPHAN, by_id[i]) for i in sorted(plan.newly_orphaned) if i in by_id),
    )
    return sorted(
        rows,
        key=lambda r: (
            ORDER[r.action],
            r.role.lower(),
            r.scope.lower(),
            (r.principal.display or r.principal.id).lower(),
            r.principal.id,
        ),
    )


@dataclass
class Kept:
    """Managed grants no binding wants that an incomplete binding keeps (the planner prunes nothing in its
    roles' pairs): the former members of a ScimGroup or Group that did not resolve keep their grants."""

    binding: str
    problems: tuple[Problem, ...]
    rows: list[Row]


async def _kept(preview: WorkspacePreview, walker: GroupWalker) -> list[Kept]:
    explainer = Explainer(preview, walker)
    out: dict[str, Kept] = {}
    for binding, problems, a in explainer.held_incomplete():
        principal = await explainer.principal_of(a.principal_id, a.principal_type)
        row = Row(Action.HELD, principal, a.role_id, explainer.role_name(a.role_id), a.scope, (binding,), (), a.id)
        out.setdefault(binding, Kept(binding, problems, [])).rows.append(row)
    return list(out.values())


def _problems(preview: WorkspacePreview) -> list[dict[str, str]]:
    if preview.problem is not None:
        return [{"binding": "", "reason": preview.problem.reason, "message": preview.problem.message}]
    out = []
    for s in sorted(preview.states, key=lambda s: s.key):
        for p in s.errors:
            out.append({"binding": str(s.key), "reason": p.reason, "message": p.message})
    return out


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _counts(rows: Iterable[Row]) -> dict[Action, int]:
    counts = {k: 0 for k in ORDER}
    for r in rows:
        counts[r.action] += 1
    return counts


def _summary(counts: dict[Action, int]) -> str:
    text = (
        f"{counts[Action.GRANT]} to grant, {counts[Action.REVOKE]} to revoke, "
        f"{counts[Action.HELD]} held by the removal guard"
    )
    return text + (f", {counts[Action.ORPHAN]} to mark orphaned" if counts[Action.ORPHAN] else "")


async def plan_main(argv: list[str], stdout: TextIO | None = None) -> int:
    parser = arguments("synapse-scim plan", explain=False)
    args = parser.parse_args(argv)
    if args.prune and not args.cluster:
        parser.error("--prune needs --cluster: it plans the cluster's bindings missing from the manifests as deleted")
    out = stdout or sys.stdout
    progress = Progress()
    session = Session()
    report: list[dict[str, Any]] = []
    try:
        await preview_all(args, progress, session, "plan")
        for preview, walker in zip(session.previews, session.walkers, strict=True):
            rows: list[Row] = []
            kept: list[Kept] = []
            if preview.plan is not None and walker is not None:
                rows = await _plan_rows(preview, walker)
                kept = await _kept(preview, walker)
            report.append({"preview": preview, "rows": rows, "problems": _problems(preview), "kept": kept})
    except Exception as exc:
        message = fatal_message(exc)
        if message is None:
            raise
        progress.done()
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        progress.done()
        await session.close()
    errors = any(r["problems"] for r in report)
    changes = any(r["rows"] for r in report)
    if args.output == "json":
        out.write(json.dumps(_plan_json(report, errors, changes), indent=2, sort_keys=True) + "\n")
    else:
        _plan_text(report, out)
    return EXIT_ERROR if errors else EXIT_CHANGES if changes else EXIT_OK


def _plan_text(report: list[dict[str, Any]], out: TextIO) -> None:
    total = {k: 0 for k in ORDER}
    for item in report:
        preview: WorkspacePreview = item["preview"]
        rows: list[Row] = item["rows"]
        counts = _counts(rows)
        for k, v in counts.items():
            total[k] += v
        status = "cannot be planned" if preview.problem else (_summary(counts) if rows else "no changes")
        out.write(f"{workspace_title(preview)}: {status}\n")
        if preview.ws.spec.get("suspend"):
            out.write("  spec.suspend is true: nothing is written to this workspace\n")
        if rows:
            header = ["ACTION", "PRINCIPAL", "TYPE", "ROLE", "SCOPE", "BINDING", "VIA"]
            for line in table([header, *(r.cells() for r in rows)]):
                out.write(line + "\n")
        plan = preview.plan
        if plan is not None and plan.held and plan.hold_reason == Reason.REMOVALS_HELD:
            out.write(
                f"  {len(plan.held)} removal(s) held by the removal guard; approve after merge with:\n"
                f"    {approve_command(preview.ws.namespace, preview.ws.name, plan.plan_id)}\n"
            )
        _scim_text(preview, item["kept"], out)
        for p in item["problems"]:
            who = f"SynapseRoleBinding {p['binding']}" if p["binding"] else "workspace"
            out.write(f"  error: {who}: {p['reason']}: {p['message']}\n")
        out.write("\n")
    errors = sum(len(r["problems"]) for r in report)
    line = f"Plan: {_summary(total)}." if any(total.values()) else "No changes."
    if errors:
        line += f" {errors} error(s): the operator would not be Ready."
    out.write(line + "\n")


def _scim_text(preview: WorkspacePreview, kept: list[Kept], out: TextIO) -> None:
    """Per binding: what became of its pushed members (status.scim, and the pushed users that get
    nothing), and the grants it holds while incomplete."""
    for key, subject in sorted(preview.scim_subjects.items()):
        if subject.counts is None or (subject.problems and not subject.groups):
            continue  # no pushed group resolved: the error and the held grants below say it all
        out.write(f"  SynapseRoleBinding {key}: {counts_text(subject)}\n")
        for notice in subject.notices:
            out.write(f"    gets nothing: {notice.reason}: {notice.message}\n")
    for k in kept:
        out.write(
            f"  SynapseRoleBinding {k.binding} is incomplete, so nothing in its roles is revoked; "
            f"held: {unresolved_text(k.problems)}\n"
        )
        cells = [[r.principal.display or r.principal.id, str(r.principal.type), r.role, r.scope] for r in k.rows]
        for line in table(cells, indent="    "):
            out.write(line + "\n")


def _binding_json(
    key: BindingKey, summary: dict[str, int], preview: WorkspacePreview, kept: dict[str, Kept]
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": str(key), **summary}
    subject = preview.scim_subjects.get(key)
    if subject is not None and subject.counts is not None:  # added with ScimGroup subjects
        out["scim"] = scim_dict(subject)
    if str(key) in kept:  # added with ScimGroup subjects: what an incomplete binding keeps
        k = kept[str(key)]
        out["heldWhileIncomplete"] = {
            "problems": problems_list(k.problems),
            "assignments": [
                {
                    "principal": principal_dict(r.principal),
                    "role": {"id": r.role_id, "name": r.role},
                    "scope": r.scope,
                    "assignmentId": r.assignment_id,
                }
                for r in k.rows
            ],
        }
    return out


def _plan_json(report: list[dict[str, Any]], errors: bool, changes: bool) -> dict[str, Any]:
    workspaces = []
    for item in report:
        preview: WorkspacePreview = item["preview"]
        plan = preview.plan
        workspaces.append(
            {
                "namespace": preview.ws.namespace,
                "name": preview.ws.name,
                "workspaceName": preview.ws_name,
                "suspended": bool(preview.ws.spec.get("suspend")),
                "counts": _counts(item["rows"]),
                "changes": [r.as_dict() for r in item["rows"]],
                "holdReason": plan.hold_reason if plan else None,
                "planId": plan.plan_id if plan else None,
                "problems": item["problems"],
                "bindings": [
                    _binding_json(k, rep.summary(), preview, {kept.binding: kept for kept in item["kept"]})
                    for k, rep in sorted(plan.reports.items())
                ]
                if plan
                else [],
            }
        )
    return {"apiVersion": "synapse-scim.io/plan/v1", "errors": errors, "changes": changes, "workspaces": workspaces}


def plan(argv: list[str]) -> int:
    return asyncio.run(plan_main(argv))
