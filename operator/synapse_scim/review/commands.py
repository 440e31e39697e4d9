"""`synapse-scim plan` and `synapse-scim explain`: read-only views from the operator's own reads and planner.

plan: what the operator would grant, revoke or hold (removal guard) once the manifests are applied.
Exit codes follow `terraform plan -detailed-exitcode`: 0 no changes, 2 changes, 1 error (a bad
manifest, a failed read, or a binding the operator would report as not Ready).
explain: every role a principal holds and why, or every holder of one role at one scope.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.directory import DirectoryError
from synapse_scim.adapters.kube import Kube, kubeconfig_client
from synapse_scim.core.model import Assignment, Principal, normalize_id
from synapse_scim.core.objects import APPROVE_ANNOTATION
from synapse_scim.core.reasons import Action, Reason
from synapse_scim.review.chains import GroupWalker, chain_text
from synapse_scim.review.explain import (
    Cause,
    CauseKind,
    Explainer,
    Holding,
    ScopeError,
    find_principal,
    parse_scope,
    principal_dict,
)
from synapse_scim.review.manifests import ManifestError, load
from synapse_scim.review.preview import Target, WorkspacePreview, chain_of, connections, preview_target, targets

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


class Progress:
    """One self-overwriting line on stderr, only when stderr is a terminal (quiet when piped)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _parser(prog: str, explain: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    if explain:
        p.add_argument(
            "principal", nargs="?", help="user (UPN or id), service principal (name, appId or id) or group (name or id)"
        )
        p.add_argument("--role", help="with --scope: list every holder of this role (by name)")
        p.add_argument(
            "--scope",
            default="workspace",
            help="workspace (default), bigDataPool/NAME, integrationRuntime/NAME, linkedService/NAME, "
            "credential/NAME, scopePool/NAME, or a full workspaces/... path",
        )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="PATH",
        help="manifest file or directory (recursive); repeatable",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="also read the cluster (kubeconfig): its workspaces, bindings and credential Secrets",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("-n", "--namespace", default="default", help="namespace of manifests that name none")
    if not explain:
        p.add_argument(
            "--prune",
            action="store_true",
            help="with --cluster: plan the cluster's bindings missing from the manifests as deleted "
            "(as Argo CD or Flux with pruning would)",
        )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return p


def _kube(args: argparse.Namespace) -> Kube | None:
    if not args.cluster:
        return None
    return Kube(kubeconfig_client(args.kubeconfig, args.context))


async def _targets(args: argparse.Namespace, kube: Kube | None) -> list[Target]:
    manifests = load(args.filename)
    if not manifests and kube is None:
        raise ManifestError(
            "no SynapseWorkspace or SynapseRoleBinding in "
            + (", ".join(args.filename) or "the arguments: give -f PATH or --cluster")
        )
    if not manifests and kube is not None:
        # Only the cluster: every workspace of the namespace as it is now.
        out = []
        for ws in sorted(await kube.list_workspaces(args.namespace), key=lambda w: w["metadata"]["name"]):
            bindings = await kube.list_bindings(args.namespace, ws["metadata"]["name"])
            out.append(Target(body=ws, bindings=sorted(bindings, key=lambda b: b["metadata"]["name"])))
        return out
    return await targets(manifests, args.namespace, kube, prune=getattr(args, "prune", False))


@dataclass
class Session:
    """The previews of every target, and what is open behind them (closed by ``close``)."""

    previews: list[WorkspacePreview] = field(default_factory=list)
    walkers: list[GroupWalker | None] = field(default_factory=list)
    conns: Connections | None = None
    kube: Kube | None = None

    async def close(self) -> None:
        if self.conns is not None:
            await self.conns.close()
        if self.kube is not None:
            self.kube.close()


async def _preview_all(args: argparse.Namespace, progress: Progress, session: Session) -> None:
    session.kube = _kube(args)
    found = await _targets(args, session.kube)
    session.conns = connections(session.kube)
    for i, target in enumerate(found, start=1):
        progress.show(f"reading {target.key[0]}/{target.key[1]} ({i}/{len(found)})")
        preview, clients = await preview_target(session.conns, target, session.kube)
        session.previews.append(preview)
        session.walkers.append(GroupWalker(clients.directory) if clients else None)


def _fatal(exc: Exception) -> str | None:
    """The one-line message of a failure that stops the command, or None for a bug (traceback)."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    if isinstance(exc, (ManifestError, ScopeError)):
        return str(exc)
    if isinstance(exc, DirectoryError):
        return f"{exc.reason}: {exc.message}"
    if isinstance(exc, ConfigException):
        return f"--cluster: cannot load the kubeconfig: {exc}"
    if isinstance(exc, ApiException):
        return f"--cluster: the API server answered {exc.status} {exc.reason}"
    return None


# -- plan ---------------------------------------------------------------------------------------------


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
        return {
            "action": self.action,
            "principal": principal_dict(self.principal),
            "role": {"id": self.role_id, "name": self.role},
            "scope": self.scope,
            "bindings": list(self.bindings),
            "via": list(self.via),
            "assignmentId": self.assignment_id,
        }


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
        for dg in wishes:
            chain = await chain_of(preview, walker, str(dg.binding), dg.via, dg.principal)
            text = chain_text(chain, dg.principal.display) if chain else "(direct subject)"
            chains.append(f"{dg.binding}: {text}" if several else text)
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


def _problems(preview: WorkspacePreview) -> list[dict[str, str]]:
    if preview.problem is not None:
        return [{"binding": "", "reason": preview.problem.reason, "message": preview.problem.message}]
    out = []
    for s in sorted(preview.states, key=lambda s: s.key):
        for p in s.errors:
            out.append({"binding": str(s.key), "reason": p.reason, "message": p.message})
    return out


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
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
    parser = _parser("synapse-scim plan", explain=False)
    args = parser.parse_args(argv)
    if args.prune and not args.cluster:
        parser.error("--prune needs --cluster: it plans the cluster's bindings missing from the manifests as deleted")
    out = stdout or sys.stdout
    progress = Progress()
    session = Session()
    report: list[dict[str, Any]] = []
    try:
        await _preview_all(args, progress, session)
        for preview, walker in zip(session.previews, session.walkers, strict=True):
            rows = await _plan_rows(preview, walker) if preview.plan is not None and walker else []
            report.append({"preview": preview, "rows": rows, "problems": _problems(preview)})
    except Exception as exc:
        message = _fatal(exc)
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


def _ws_title(preview: WorkspacePreview) -> str:
    title = f"SynapseWorkspace {preview.ws.namespace}/{preview.ws.name}"
    return title + (f" (workspace {preview.ws_name})" if preview.ws_name else "")


def _plan_text(report: list[dict[str, Any]], out: TextIO) -> None:
    total = {k: 0 for k in ORDER}
    for item in report:
        preview: WorkspacePreview = item["preview"]
        rows: list[Row] = item["rows"]
        counts = _counts(rows)
        for k, v in counts.items():
            total[k] += v
        status = "cannot be planned" if preview.problem else (_summary(counts) if rows else "no changes")
        out.write(f"{_ws_title(preview)}: {status}\n")
        if preview.ws.spec.get("suspend"):
            out.write("  spec.suspend is true: nothing is written to this workspace\n")
        if rows:
            header = ["ACTION", "PRINCIPAL", "TYPE", "ROLE", "SCOPE", "BINDING", "VIA"]
            for line in _table([header, *(r.cells() for r in rows)]):
                out.write(line + "\n")
        plan = preview.plan
        if plan is not None and plan.held and plan.hold_reason == Reason.REMOVALS_HELD:
            out.write(
                f"  {len(plan.held)} removal(s) held by the removal guard; approve after merge with:\n"
                f"    kubectl annotate synapseworkspace {preview.ws.name} -n {preview.ws.namespace} "
                f"{APPROVE_ANNOTATION}={plan.plan_id} --overwrite\n"
            )
        for p in item["problems"]:
            who = f"SynapseRoleBinding {p['binding']}" if p["binding"] else "workspace"
            out.write(f"  error: {who}: {p['reason']}: {p['message']}\n")
        out.write("\n")
    errors = sum(len(r["problems"]) for r in report)
    line = f"Plan: {_summary(total)}." if any(total.values()) else "No changes."
    if errors:
        line += f" {errors} error(s): the operator would not be Ready."
    out.write(line + "\n")


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
                "bindings": [{"name": str(k), **rep.summary()} for k, rep in sorted(plan.reports.items())]
                if plan
                else [],
            }
        )
    return {"apiVersion": "synapse-scim.io/plan/v1", "errors": errors, "changes": changes, "workspaces": workspaces}


# -- explain ------------------------------------------------------------------------------------------


def _reason_text(r: Cause, principal: Principal) -> str:
    if r.kind is CauseKind.BINDING:
        chain = chain_text(r.chain, principal.display) if r.chain else f"{principal.display} (direct subject)"
        return f"wanted by SynapseRoleBinding {r.binding} ({r.mode}): {chain}"
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
    for r in h.reasons:
        out.write(f"    {_reason_text(r, h.principal)}\n")


async def explain_main(argv: list[str], stdout: TextIO | None = None) -> int:
    parser = _parser("synapse-scim explain", explain=True)
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
        await _preview_all(args, progress, session)
        for preview, walker in zip(session.previews, session.walkers, strict=True):
            item: dict[str, Any] = {"preview": preview, "holdings": [], "error": None}
            results.append(item)
            if preview.problem is not None or walker is None or preview.plan is None:
                item["error"] = f"{preview.problem.reason}: {preview.problem.message}" if preview.problem else ""
                continue
            explainer = Explainer(preview, walker)
            progress.show(f"explaining in {preview.ws.namespace}/{preview.ws.name}")
            try:
                if args.principal:
                    found, enabled = await find_principal(walker.directory, walker, args.principal)
                    subject = subject or found
                    disabled = disabled or not enabled
                    item["holdings"] = await explainer.of_principal(found)
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
        message = _fatal(exc)
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
    for item in results:
        preview: WorkspacePreview = item["preview"]
        title = _ws_title(preview)
        if args.role and "scope" in item:
            title += f": role {args.role} at {item['scope']}"
        out.write(title + "\n")
        if item["error"]:
            out.write(f"  error: {item['error']}\n\n")
            continue
        if not item["holdings"]:
            out.write("  nothing held or wanted here\n")
        for h in item["holdings"]:
            _holding_text(h, subject if args.principal else None, out)
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
            }
            for r in results
        ],
    }


def plan(argv: list[str]) -> int:
    return asyncio.run(plan_main(argv))


def explain(argv: list[str]) -> int:
    return asyncio.run(explain_main(argv))
