"""`synapse-scim explain`: every role a principal holds and why, or every holder of one role at one scope."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from synapse_scim.adapters.directory import DirectoryError
from synapse_scim.core.model import Principal
from synapse_scim.core.reasons import Reason
from synapse_scim.review.chains import chain_text
from synapse_scim.review.holdings import (
    Cause,
    CauseKind,
    Explainer,
    Holding,
    find_principal,
    parse_scope,
    principal_dict,
    unresolved_text,
)
from synapse_scim.review.preview import WorkspacePreview
from synapse_scim.review.scim_chains import PushedUser, pushed_users
from synapse_scim.review.session import (
    EXIT_ERROR,
    EXIT_OK,
    Progress,
    Session,
    arguments,
    fatal_message,
    preview_all,
    workspace_title,
)


def _reason_text(r: Cause, principal: Principal, wanted: bool = False) -> str:
    """One cause as a line; ``wanted``: a binding wants the same grant (it is among the causes too)."""
    if r.kind is CauseKind.BINDING:
        member = r.scim.member_text(principal.display) if r.scim else principal.display
        chain = chain_text(r.chain, member) if r.chain else f"{principal.display} (direct subject)"
        return f"wanted by SynapseRoleBinding {r.binding} ({r.mode}): {chain}"
    if r.kind is CauseKind.UNWANTED and r.binding:
        return (
            f"managed by the operator and no binding wants it any more, but SynapseRoleBinding {r.binding} is "
            f"incomplete ({unresolved_text(r.held_by)}): nothing in its roles is revoked until it resolves"
        )
    if wanted and r.kind is CauseKind.MANUAL:
        return (
            "manual: the assignment was made by someone else, and the operator never removes it: "
            "it stays when no binding wants it any more"
        )
    if wanted and r.kind is CauseKind.ORPHANED:
        return (
            "orphaned: left by a binding deleted with deletionPolicy Orphan; treated as manual, "
            "so it stays when no binding wants it any more"
        )
    return {
        CauseKind.MANUAL: "manual: not managed by any binding (the operator reports it, never removes it)",
        CauseKind.ORPHANED: "orphaned: left by a binding deleted with deletionPolicy Orphan; treated as manual",
        CauseKind.UNWANTED: "managed by the operator, but no binding wants it any more",
    }[r.kind]


def _holding_text(h: Holding, subject: Principal | None, out: TextIO) -> None:
    if subject is None:  # explain --role: the title names role and scope, each line a holder
        out.write(f"  {h.principal.display} ({h.principal.type} {h.principal.id}): {h.status}\n")
    else:
        through = (
            f" through group {h.principal.display} ({chain_text(h.through, subject.display)})" if h.through else ""
        )
        out.write(f"  {h.role} at {h.scope}: {h.status}{through}\n")
    wanted = any(r.kind is CauseKind.BINDING for r in h.reasons)
    for r in h.reasons:
        out.write(f"    {_reason_text(r, h.principal, wanted)}\n")


async def explain_main(argv: list[str], stdout: TextIO | None = None) -> int:
    parser = arguments("synapse-scim explain", explain=True)
    args = parser.parse_args(argv)
    if bool(args.principal) == bool(args.role):
        parser.error("give either a PRINCIPAL or --role NAME [--scope SCOPE]")
    out = stdout or sys.stdout
    progress = Progress()
    session = Session()
    results: list[dict[str, Any]] = []
    subject: Principal | None = None
    disabled = False
    try:
        await preview_all(args, progress, session, "explain")
        for preview, walker in zip(session.previews, session.walkers, strict=True):
            item: dict[str, Any] = {"preview": preview, "holdings": [], "error": None, "pushed": []}
            results.append(item)
            if preview.problem is not None or walker is None or preview.plan is None:
                item["error"] = f"{preview.problem.reason}: {preview.problem.message}" if preview.problem else ""
                continue
            explainer = Explainer(preview, walker)
            progress.show(f"explaining in {preview.ws.namespace}/{preview.ws.name}")
            try:
                if args.principal:
                    try:
                        found, enabled = await find_principal(walker.directory, walker, args.principal)
                    except DirectoryError as exc:
                        # Not in the directory, but perhaps a pushed member of a bound ScimGroup that
                        # matches no account: say so rather than only "not found".
                        item["pushed"] = pushed_users(preview.scim, preview.scim_subjects, args.principal)
                        if exc.reason != Reason.SUBJECT_NOT_FOUND or not item["pushed"]:
                            raise
                        continue
                    subject = subject or found
                    disabled = disabled or not enabled
                    item["holdings"] = await explainer.of_principal(found)
                    item["pushed"] = pushed_users(preview.scim, preview.scim_subjects, args.principal, found.id)
                    continue
                role = preview.roles.get(args.role)
                if role is None:
                    item["error"] = f"RoleNotFound: no role {args.role!r} in workspace {preview.ws_name}"
                    continue
                item["scope"] = parse_scope(args.scope, preview.ws_name)
                item["holdings"] = await explainer.of_role(role.id, item["scope"])
            except DirectoryError as exc:  # this workspace's directory: the others may still answer
                item["error"] = f"{exc.reason}: {exc.message}"
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
    if args.output == "json":
        doc = _explain_json(args, subject, results)
        if subject is not None:
            doc["principal"]["accountEnabled"] = not disabled
        out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        _explain_text(args, subject, disabled, results, out)
    return EXIT_ERROR if any(r["error"] for r in results) or not results else EXIT_OK


def _explain_text(
    args: argparse.Namespace, subject: Principal | None, disabled: bool, results: list[dict[str, Any]], out: TextIO
) -> None:
    if subject is not None:
        note = ": disabled in the directory, so no binding gives it a role" if disabled else ""
        out.write(f"{subject.display} ({subject.type} {subject.id}){note}\n\n")
    elif args.principal and any(item["pushed"] for item in results):
        out.write(f"{args.principal}: not in the directory; a user an identity provider pushed\n\n")
    for item in results:
        preview: WorkspacePreview = item["preview"]
        title = workspace_title(preview)
        if args.role and "scope" in item:
            title += f": role {args.role} at {item['scope']}"
        out.write(title + "\n")
        if item["error"]:
            out.write(f"  error: {item['error']}\n\n")
            continue
        pushed: list[PushedUser] = item["pushed"]
        if not item["holdings"]:
            out.write("  nothing held or wanted here\n")
        for h in item["holdings"]:
            _holding_text(h, subject if args.principal else None, out)
        for p in pushed:
            out.write(f"  {p.text()}\n")
            if "message" in (d := p.as_dict()):
                out.write(f"    {d['reason']}: {d['message']}\n")
        out.write("\n")


def _explain_json(args: argparse.Namespace, subject: Principal | None, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "synapse-scim.io/explain/v1",
        "principal": principal_dict(subject) if subject else None,
        "role": args.role,
        "workspaces": [
            {
                "namespace": r["preview"].ws.namespace,
                "name": r["preview"].ws.name,
                "workspaceName": r["preview"].ws_name,
                "scope": r.get("scope"),
                "error": r["error"] or None,
                "assignments": [h.as_dict() for h in r["holdings"]],
                # added with ScimGroup subjects: pushed users that are the principal and get nothing
                **({"pushedUsers": [p.as_dict() for p in r["pushed"]]} if r["pushed"] else {}),
            }
            for r in results
        ],
    }


def explain(argv: list[str]) -> int:
    return asyncio.run(explain_main(argv))
