"""What `plan` and `explain` share: their arguments, the targets they read, the previews and
connections they hold open, progress on a terminal, and the one-line messages of fatal errors."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TextIO

from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.directory import DirectoryError
from synapse_scim.adapters.kube import Kube, kubeconfig_client
from synapse_scim.reads.scim_reads import ClusterScimSource, NoScimSource, ScimSource
from synapse_scim.review.chains import GroupWalker
from synapse_scim.review.holdings import (
    ScopeError,
)
from synapse_scim.review.manifests import ManifestError, load
from synapse_scim.review.preview import Target, WorkspacePreview, connections, preview_target, targets

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


def arguments(prog: str, explain: bool) -> argparse.ArgumentParser:
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


def cluster_client(args: argparse.Namespace) -> Kube | None:
    if not args.cluster:
        return None
    return Kube(kubeconfig_client(args.kubeconfig, args.context))


async def read_targets(args: argparse.Namespace, kube: Kube | None) -> list[Target]:
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
    scim: ScimSource | None = None

    async def close(self) -> None:
        if isinstance(self.scim, ClusterScimSource):
            self.scim.close()  # stops its watches before the client they use is closed
        if self.conns is not None:
            await self.conns.close()
        if self.kube is not None:
            self.kube.close()


def scim_source(command: str, kube: Kube | None) -> ScimSource:
    """Where the pushed groups of ScimGroup subjects are read: the cluster's ScimProvider, ScimUser and
    ScimGroup objects with --cluster (the SCIM endpoint writes them there); without it, nowhere, and the
    subjects are unresolved (ScimProviderNotFound) with a message that says so."""
    if kube is not None:
        return ClusterScimSource(kube.custom)
    return NoScimSource(
        f"{command} without --cluster cannot read the groups identity providers pushed (ScimGroup objects in "
        "the cluster): use --cluster"
    )


async def preview_all(args: argparse.Namespace, progress: Progress, session: Session, command: str) -> None:
    session.kube = cluster_client(args)
    found = await read_targets(args, session.kube)
    session.conns = connections(session.kube)
    session.scim = scim_source(command, session.kube)
    for i, target in enumerate(found, start=1):
        progress.show(f"reading {target.key[0]}/{target.key[1]} ({i}/{len(found)})")
        preview, clients = await preview_target(session.conns, target, session.kube, scim_source=session.scim)
        session.previews.append(preview)
        session.walkers.append(GroupWalker(clients.directory) if clients else None)


def fatal_message(exc: Exception) -> str | None:
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


def workspace_title(preview: WorkspacePreview) -> str:
    title = f"SynapseWorkspace {preview.ws.namespace}/{preview.ws.name}"
    return title + (f" (workspace {preview.ws_name})" if preview.ws_name else "")
