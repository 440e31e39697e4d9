"""`synapse-scim report`: the access review. Every role assignment of every workspace, with why it is
there (the binding and group chain, manual, orphaned, pending removal or held by the removal guard),
as a self-contained HTML page, CSV or JSON, stamped with its time and a SHA-256 digest of its rows.

It reads what `plan` reads (the operator's adapters and planner, through review/preview.py) and writes
nothing. The causes come from review/holdings.py (Explainer), so `report` and `explain` agree.

Grant time: Synapse's role-assignment API has no creation time. The operator records the time of each
grant it made (its PUT answered 2xx) in its grant ledger, the ConfigMaps ``<workspace>-grants-<0..f>`` in
the workspace's namespace (adapters/grant_ledger.py). With ``--cluster`` the report reads them and fills
``granted``; an assignment the ledger has no entry for (granted by hand, adopted on a 409, granted before
the ledger existed, or a ledger write that failed: it is best-effort, the audit log on logger
``synapse_scim.audit`` is the complete trail), and every row from manifests alone, says
``unknown (not recorded)``.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kubernetes.client.exceptions import ApiException
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from synapse_scim.adapters.directory import DirectoryError, directory_error
from synapse_scim.adapters.grant_ledger import read_ledger
from synapse_scim.adapters.kube import Kube
from synapse_scim.core.matching import LookupAttribute
from synapse_scim.core.model import Principal, PrincipalType, normalize_id
from synapse_scim.core.objects import APPROVE_ANNOTATION
from synapse_scim.review.chains import GroupWalker, chain_text
from synapse_scim.review.holdings import CauseKind, Explainer, Holding, HoldingStatus
from synapse_scim.review.preview import WorkspacePreview
from synapse_scim.review.session import (
    EXIT_ERROR,
    EXIT_OK,
    Progress,
    Session,
    arguments,
    fatal_message,
    preview_all,
)

API_VERSION = "synapse-scim.io/report/v1"
GRANTED_UNKNOWN = "unknown (not recorded)"
GRANT_TIME = (
    "Synapse records no creation time; the operator records the time of each grant it made in its grant "
    "ledger (ConfigMaps <workspace>-grants-<0..f>), read with --cluster; otherwise: " + GRANTED_UNKNOWN
)
# Roles that can change access or reach every artifact: called out in the summary.
PRIVILEGED = ("Synapse Administrator", "Synapse SQL Administrator", "Synapse Apache Spark Administrator")


class Status:
    """A row's justification, the first that applies in this order."""

    HELD = "held by the guard"  # the operator would revoke it, the removal guard holds it (plan id)
    PENDING = "pending removal"  # the operator's next sync revokes it
    MANUAL = "manual"  # not the operator's: reported, never removed (a binding may want it too)
    ORPHANED = "orphaned"  # left by a binding deleted with deletionPolicy Orphan (status.orphanedAssignments)
    MANAGED = "managed"  # a binding wants it
    KEPT = "kept: binding incomplete"  # no binding wants it, but one that claims the pair is incomplete
    UNWANTED = "unwanted"  # the operator's, no binding wants it (and no revocation planned, e.g. Observe)

    ALL = (MANAGED, MANUAL, ORPHANED, PENDING, HELD, KEPT, UNWANTED)


@dataclass(frozen=True)
class Approval:
    """Who Kubernetes says last set the approval annotation: the field manager (a program such as
    ``kubectl-annotate`` or ``kubectl-client-side-apply``, a person's name only when they passed
    --field-manager), the operation and its time, from the SynapseWorkspace's managedFields."""

    value: str
    manager: str | None
    operation: str | None
    time: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "manager": self.manager, "operation": self.operation, "time": self.time}

    def text(self, plan_id: str | None = None) -> str:
        """``plan_id``: the plan the row's removal belongs to; an approval of another plan says so."""
        stale = (
            f" (not plan {plan_id}: a changed plan needs a new approval)" if plan_id and plan_id != self.value else ""
        )
        if self.manager is None:
            return f"approved {self.value}{stale} (field manager not recorded)"
        return f"approved {self.value}{stale} by field manager {self.manager} ({self.operation}, {self.time})"


def approval_of(body: dict[str, Any] | None) -> Approval | None:
    """The approval annotation of a SynapseWorkspace and the manager that last set it (managedFields:
    the entry that owns ``f:metadata.f:annotations.f:<annotation>``, the latest by time if several)."""
    if not body:
        return None
    meta = body.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(APPROVE_ANNOTATION)
    if value is None:
        return None
    owners = [
        entry
        for entry in meta.get("managedFields") or ()
        if f"f:{APPROVE_ANNOTATION}"
        in (((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {})
    ]
    if not owners:
        return Approval(str(value), None, None, None)
    last = max(owners, key=lambda e: str(e.get("time") or ""))
    return Approval(str(value), last.get("manager"), last.get("operation"), last.get("time"))


@dataclass
class ReportRow:
    namespace: str
    workspace: str  # the SynapseWorkspace object's name
    workspace_name: str  # the Synapse workspace
    principal: Principal
    role_id: str
    role: str
    scope: str
    status: str
    assignment_id: str
    bindings: tuple[str, ...] = ()  # "ns/name (mode)" of every binding that wants it
    via: tuple[str, ...] = ()  # one chain per wanting binding: "Data Engineers → Spark Team → carol"
    plan_id: str | None = None
    approval: Approval | None = None
    granted: str | None = None  # when the operator granted it, from its grant ledger (--cluster; see the module)
    held_by: tuple[str, ...] = ()  # KEPT: the incomplete bindings
    app_id: str | None = None  # a service principal's appId (its application's client id)

    def sort_key(self) -> tuple[str, ...]:
        return (
            self.namespace,
            self.workspace,
            self.role.lower(),
            self.scope.lower(),
            self.principal.display.lower(),
            self.principal.id,
            self.assignment_id,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "workspace": {"namespace": self.namespace, "name": self.workspace, "workspaceName": self.workspace_name},
            "principal": {
                "id": self.principal.id,
                "type": str(self.principal.type),
                "display": self.principal.display,
                **({"appId": self.app_id} if self.app_id else {}),
            },
            "role": {"id": self.role_id, "name": self.role},
            "scope": self.scope,
            "status": self.status,
            "bindings": list(self.bindings),
            "via": list(self.via),
            "heldBy": list(self.held_by),
            "planId": self.plan_id,
            "approval": self.approval.as_dict() if self.approval else None,
            "granted": self.granted,
            "assignmentId": self.assignment_id,
        }


CSV_COLUMNS = (
    "namespace",
    "workspace",
    "workspaceName",
    "principal",
    "principalType",
    "principalId",
    "appId",
    "role",
    "roleId",
    "scope",
    "status",
    "bindings",
    "via",
    "planId",
    "approvedBy",
    "granted",
    "assignmentId",
)


def csv_cells(row: ReportRow) -> list[str]:
    return [
        row.namespace,
        row.workspace,
        row.workspace_name,
        row.principal.display,
        str(row.principal.type),
        row.principal.id,
        row.app_id or "",
        row.role,
        row.role_id,
        row.scope,
        row.status,
        "; ".join(row.bindings or row.held_by),
        "; ".join(row.via),
        row.plan_id or "",
        row.approval.text(row.plan_id) if row.approval else "",
        row.granted or GRANTED_UNKNOWN,
        row.assignment_id,
    ]


@dataclass
class WorkspaceResult:
    namespace: str
    name: str
    workspace_name: str
    error: str | None = None
    plan_id: str | None = None
    approval: Approval | None = None
    rows: list[ReportRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "workspaceName": self.workspace_name,
            "error": self.error,
            "planId": self.plan_id,
            "approval": self.approval.as_dict() if self.approval else None,
            "assignments": len(self.rows),
        }


@dataclass
class Report:
    generated_at: str
    workspaces: list[WorkspaceResult]

    @property
    def rows(self) -> list[ReportRow]:
        return [r for w in self.workspaces for r in w.rows]

    def digest(self) -> str:
        """SHA-256 of the rows' canonical form (sorted keys, no whitespace, UTF-8), without the timestamp:
        two reports of the same access have the same digest, whenever they were made."""
        h = hashlib.sha256()
        h.update(b"[")
        for i, row in enumerate(self.rows):
            if i:
                h.update(b",")
            h.update(json.dumps(row.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"]")
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        rows = self.rows
        by_status = Counter(r.status for r in rows)
        per_principal: Counter[tuple[str, str, str]] = Counter(
            (r.principal.id, r.principal.display, str(r.principal.type)) for r in rows
        )
        privileged = [r for r in rows if r.role in PRIVILEGED]
        return {
            "assignments": len(rows),
            "principals": len(per_principal),
            "byStatus": {s: by_status.get(s, 0) for s in Status.ALL},
            "byWorkspace": [
                {
                    "namespace": w.namespace,
                    "name": w.name,
                    "workspaceName": w.workspace_name,
                    "assignments": len(w.rows),
                    "byRole": dict(sorted(Counter(r.role for r in w.rows).items())),
                    "byStatus": {s: n for s in Status.ALL if (n := sum(1 for r in w.rows if r.status == s))},
                }
                for w in self.workspaces
            ],
            "topPrincipals": [
                {"id": pid, "display": display, "type": kind, "roles": n}
                for (pid, display, kind), n in sorted(
                    per_principal.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0])
                )[:10]
            ],
            "privileged": {
                "roles": list(PRIVILEGED),
                "assignments": len(privileged),
                "byRole": dict(sorted(Counter(r.role for r in privileged).items())),
                "manual": sum(1 for r in privileged if r.status == Status.MANUAL),
            },
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "AccessReport",
            "generatedAt": self.generated_at,
            "digest": {"algorithm": "sha256", "value": self.digest(), "over": "assignments (canonical JSON)"},
            "grantTime": GRANT_TIME,
            "summary": self.summary(),
            "workspaces": [w.as_dict() for w in self.workspaces],
            "assignments": [r.as_dict() for r in self.rows],
        }


def status_of(h: Holding) -> str:
    kinds = {c.kind for c in h.reasons}
    if h.status is HoldingStatus.REVOCATION_HELD:
        return Status.HELD
    if h.status is HoldingStatus.TO_REVOKE:
        return Status.PENDING
    if CauseKind.MANUAL in kinds:
        return Status.MANUAL
    if CauseKind.ORPHANED in kinds:
        return Status.ORPHANED
    if CauseKind.BINDING in kinds:
        return Status.MANAGED
    if any(c.kind is CauseKind.UNWANTED and c.binding for c in h.reasons):
        return Status.KEPT
    return Status.UNWANTED


async def name_principals(explainer: Explainer, walker: GroupWalker, preview: WorkspacePreview) -> None:
    """Name every principal that holds an assignment: those a binding wants are known from the plan;
    users are read in Graph JSON batches (Directory.find_accounts by id), the rest one by one (cached).
    Adds them to ``explainer.principals`` so each holding is named without another read."""
    unknown: dict[str, str | None] = {}
    for a in preview.actual:
        pid = normalize_id(a.principal_id)
        if pid not in explainer.principals:
            unknown.setdefault(pid, a.principal_type)
    users = [pid for pid, kind in unknown.items() if kind == "User"]
    if users:
        found = await walker.directory.find_accounts({(LookupAttribute.ID, pid) for pid in users})
        for (_, pid), accounts in found.items():
            if accounts:
                explainer.principals[pid] = accounts[0].principal
    rest = [(pid, kind) for pid, kind in unknown.items() if pid not in explainer.principals]
    named = await asyncio.gather(*(walker.object(pid) for pid, _ in rest))
    for (pid, kind), principal in zip(rest, named, strict=True):
        # An assignment can outlive its principal: keep the id, say what Synapse said it was.
        explainer.principals[pid] = principal or Principal(pid, PrincipalType(kind or PrincipalType.USER), pid)


async def app_ids(walker: GroupWalker, ids: set[str]) -> dict[str, str]:
    """The appId of each service principal (its object id -> appId), read by id, at most 8 at a time;
    one the directory no longer has is left out."""
    sem = asyncio.Semaphore(8)
    directory = walker.directory

    async def one(sp_id: str) -> tuple[str, str | None]:
        info = directory.client.service_principals.by_service_principal_id(sp_id).to_get_request_information()
        async with sem:
            try:
                found = await directory.get_json(info)
            except ODataError as exc:
                if exc.response_status_code == 404:
                    return sp_id, None
                raise directory_error(exc, f"service principal {sp_id}") from exc
        return sp_id, str(found.get("appId") or "") or None

    return {k: v for k, v in await asyncio.gather(*(one(i) for i in sorted(ids))) if v}


async def workspace_rows(
    preview: WorkspacePreview, walker: GroupWalker, approval: Approval | None
) -> tuple[list[ReportRow], str | None]:
    explainer = Explainer(preview, walker)
    await name_principals(explainer, walker, preview)
    plan = preview.plan
    assert plan is not None
    rows: list[ReportRow] = []
    for a in preview.actual:
        principal = await explainer.principal_of(a.principal_id, a.principal_type)
        h = await explainer.holding(principal, a.grant.key, a)
        status = status_of(h)
        wanting = [c for c in h.reasons if c.kind is CauseKind.BINDING]
        removal = status in (Status.HELD, Status.PENDING)
        rows.append(
            ReportRow(
                namespace=preview.ws.namespace,
                workspace=preview.ws.name,
                workspace_name=preview.ws_name,
                principal=principal,
                role_id=normalize_id(a.role_id),
                role=h.role,
                scope=a.scope,
                status=status,
                assignment_id=normalize_id(a.id),
                bindings=tuple(f"{c.binding} ({c.mode})" for c in wanting),
                via=tuple(
                    chain_text(c.chain, c.scim.member_text(principal.display) if c.scim else principal.display)
                    for c in wanting
                    if c.chain
                ),
                plan_id=plan.plan_id if removal and plan.plan_id else None,
                approval=approval if status == Status.HELD or (removal and approval) else None,
                held_by=tuple(c.binding for c in h.reasons if c.kind is CauseKind.UNWANTED and c.binding),
            )
        )
    sps = {r.principal.id for r in rows if r.principal.type is PrincipalType.SERVICE_PRINCIPAL}
    if sps:
        found = await app_ids(walker, sps)
        for r in rows:
            r.app_id = found.get(r.principal.id)
    return sorted(rows, key=ReportRow.sort_key), plan.plan_id


async def build(session: Session, progress: Progress, now: dt.datetime | None = None) -> Report:
    results: list[WorkspaceResult] = []
    for preview, walker in zip(session.previews, session.walkers, strict=True):
        w = WorkspaceResult(preview.ws.namespace, preview.ws.name, preview.ws_name)
        results.append(w)
        if preview.problem is not None or walker is None or preview.plan is None:
            w.error = f"{preview.problem.reason}: {preview.problem.message}" if preview.problem else "not read"
            continue
        progress.show(f"justifying {len(preview.actual)} assignments of {w.namespace}/{w.name}")
        if preview.ws.approved_plan_id is not None:
            body = await _cluster_body(session.kube, w.namespace, w.name)
            w.approval = approval_of(body) or Approval(preview.ws.approved_plan_id, None, None, None)
        try:
            w.rows, w.plan_id = await workspace_rows(preview, walker, w.approval)
        except DirectoryError as exc:
            w.error = f"{exc.reason}: {exc.message}"
        if session.kube is not None and w.rows:
            granted = await _grant_times(session.kube, w.namespace, w.name)
            for row in w.rows:
                row.granted = granted.get(row.assignment_id)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Report(stamp, results)


async def _cluster_body(kube: Kube | None, namespace: str, name: str) -> dict[str, Any] | None:
    """The workspace as the cluster has it (with managedFields); None without --cluster."""
    return await kube.get_workspace(namespace, name) if kube is not None else None


async def _grant_times(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    """The operator's grant ledger of a workspace (assignment id -> time). One that cannot be read
    (e.g. 403: the reader may not get ConfigMaps) leaves every time unknown, with a warning."""
    try:
        return await read_ledger(kube, namespace, name)
    except ApiException as exc:
        print(
            f"warning: SynapseWorkspace {namespace}/{name}: cannot read its grant ledger (ConfigMaps "
            f"{name}-grants-<0..f>: {exc.status} {exc.reason}); grant times are {GRANTED_UNKNOWN}",
            file=sys.stderr,
        )
        return {}


def safe_cell(value: str) -> str:
    """A spreadsheet must not run a cell as a formula: prefix = + - @ (and tab, CR) with a quote."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)  # RFC 4180: CRLF, "" escapes
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow([safe_cell(c) for c in csv_cells(row)])
    return buf.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def report_main(argv: list[str], stdout: TextIO | None = None) -> int:
    parser = arguments("synapse-scim report", explain=False, outputs=("html", "csv", "json"), prune=False)
    parser.description = "Every role assignment of every workspace and why it is there (read-only)."
    parser.add_argument("--out", metavar="FILE", help="write the report to FILE (default: stdout)")
    args = parser.parse_args(argv)
    progress = Progress()
    session = Session()
    try:
        await preview_all(args, progress, session, "report")
        report = await build(session, progress)
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
    if args.output == "html":
        from synapse_scim.review.report_html import render_html

        text = render_html(report)
    else:
        text = render_csv(report) if args.output == "csv" else render_json(report)
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, text, encoding="utf-8", newline="")
        print(
            f"{args.out}: {len(report.rows)} assignment(s) in {len(report.workspaces)} workspace(s), "
            f"generated {report.generated_at}, sha256 {report.digest()}",
            file=sys.stderr,
        )
    else:
        (stdout or sys.stdout).write(text)
    for w in report.workspaces:
        if w.error:
            print(f"error: SynapseWorkspace {w.namespace}/{w.name}: {w.error}", file=sys.stderr)
    return EXIT_ERROR if any(w.error for w in report.workspaces) or not report.workspaces else EXIT_OK


def report(argv: list[str]) -> int:
    return asyncio.run(report_main(argv))
