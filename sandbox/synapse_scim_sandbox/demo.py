"""`synapse-scim demo`: a local control plane, the Azure sandbox and the operator, with the examples.

It shows the bindings converging as a live table, then changes the directory (a new analyst, a
disabled engineer) and shows the operator following. Everything it starts stops on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from synapse_scim.adapters.kube import BINDINGS, GROUP, VERSION, WORKSPACES
from synapse_scim_sandbox.devcluster import ControlPlane
from synapse_scim_sandbox.devcluster.controlplane import sigterm_as_keyboard_interrupt

NAMESPACE = "data-platform"
SYNAPSE_USER = "2a385764-43e8-416c-9825-7b18d05a2c4b"


def _repo_file(*parts: str) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)


class Table:
    """Redraws in place on a terminal; prints only changed lines when piped."""

    def __init__(self, out: Any = sys.stdout) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last: list[str] = []

    def show(self, lines: list[str]) -> None:
        if lines == self.last:
            return
        if self.tty:
            if self.last:
                self.out.write(f"\x1b[{len(self.last)}F\x1b[J")
            self.out.write("\n".join(lines) + "\n")
        else:
            self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()
        self.last = lines


def _rows(custom: client.CustomObjectsApi, assignments: int) -> list[str]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, BINDINGS)["items"]
    lines = [f"{'BINDING':<18} {'READY':<6} {'REASON':<16} {'DESIRED':>7} {'IN SYNC':>7} {'MISSING':>7}"]
    for b in sorted(items, key=lambda i: i["metadata"]["name"]):
        status = b.get("status") or {}
        ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), {})
        s = status.get("summary") or {}
        lines.append(
            f"{b['metadata']['name']:<18} {ready.get('status', '-'):<6} {ready.get('reason', '-'):<16} "
            f"{s.get('desired', '-'):>7} {s.get('inSync', '-'):>7} {s.get('missing', '-'):>7}"
        )
    lines.append(f"role assignments in the sandbox workspace: {assignments}")
    return lines


def _watch(
    custom: client.CustomObjectsApi, count: Callable[[], int], table: Table, until: Callable[[], bool], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table.show(_rows(custom, count()))
        if until():
            return True
        time.sleep(0.5)
    return False


def _settled(custom: client.CustomObjectsApi) -> bool:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, BINDINGS)["items"]
    for b in items:
        status = b.get("status") or {}
        ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)
        if not ready or ready.get("observedGeneration") != b["metadata"].get("generation"):
            return False
        if ready["status"] != "True" and ready["reason"] not in ("DriftDetected",):
            return False
    return bool(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="synapse-scim demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each phase")
    args = parser.parse_args(argv)
    from synapse_scim_sandbox import SandboxThread  # the sandbox is only needed here and in tests

    with sigterm_as_keyboard_interrupt(), tempfile.TemporaryDirectory(prefix="synapse-scim-demo-") as tmp:
        try:
            return _run(Path(tmp), args.timeout, SandboxThread)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping everything", flush=True)
            return 130


def _run(tmp: Path, timeout: float, sandbox_cls: Any) -> int:
    say = lambda text: print(f"\n==> {text}", flush=True)  # noqa: E731
    say("starting a local Kubernetes control plane (etcd + kube-apiserver)")
    with ControlPlane() as cp:
        print(f"    {cp.server}  KUBECONFIG={cp.kubeconfig}")
        say(
            "starting the Azure sandbox (Entra token endpoint, Microsoft Graph, Synapse) from examples/sandbox/org.yaml"
        )
        with sandbox_cls(seed=_repo_file("examples", "sandbox", "org.yaml"), cert_dir=tmp / "sandbox") as sb:
            print(f"    Graph {sb.graph_url}\n    Synapse {sb.workspace_endpoint('analytics')}")
            with cp.api_client() as api:
                return _drive(cp, sb, api, tmp, timeout, say)


def _drive(
    cp: ControlPlane, sb: Any, api: client.ApiClient, tmp: Path, timeout: float, say: Callable[[str], None]
) -> int:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    app = sb.client("synapse-scim-operator")
    core.create_namespaced_secret(
        NAMESPACE,
        {
            "metadata": {"name": "synapse-sp"},
            "data": {"clientSecret": base64.b64encode((app.secret or "").encode()).decode()},
        },
    )
    say("starting the operator: synapse-scim run")
    env = {
        **os.environ,
        "KUBECONFIG": str(cp.kubeconfig),
        "SYNAPSE_SCIM_AZURE_CA_BUNDLE": str(sb.ca_path),
        "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": "2s",
        "SYNAPSE_SCIM_METRICS_PORT": "0",
    }
    log = open(tmp / "operator.log", "wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "synapse_scim.cli", "run", "-n", NAMESPACE, "--liveness", ""],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        workspace = yaml.safe_load(_repo_file("examples", "workspace.yaml").read_text())
        workspace["spec"].update(
            {
                "endpoint": sb.workspace_endpoint("analytics"),
                "workspaceName": "analytics",
                "tenantId": sb.tenant_id,
                "credential": {"clientSecret": {"clientId": app.client_id, "secretRef": {"name": "synapse-sp"}}},
                "cloud": {"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.removesuffix("/v1.0")},
            }
        )
        say(
            "kubectl apply -f examples/workspace.yaml -f examples/bindings/"
            " (the workspace, pointed at the sandbox, and five bindings)"
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, WORKSPACES, workspace)
        for path in sorted(_repo_file("examples", "bindings").glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, BINDINGS, body)
        table = Table()
        count = lambda: len(sb.admin.list_assignments("analytics"))  # noqa: E731
        started = time.monotonic()
        if not _watch(custom, count, table, lambda: _settled(custom), timeout):
            print("bindings did not settle in time; operator log:\n" + (tmp / "operator.log").read_text()[-3000:])
            return 1
        print(f"    converged in {time.monotonic() - started:.1f}s")

        say("the directory changes: heidi joins Analysts, bob (a Data Engineer) is disabled")
        directory = sb.state.directory
        heidi = str(directory.resolve("heidi@contoso.com", kinds=("user",)).id).lower()
        bob = str(directory.resolve("bob@contoso.com", kinds=("user",)).id).lower()
        sb.admin.add_member("Analysts", "heidi@contoso.com")
        sb.admin.disable_user("bob@contoso.com")
        changed_at = time.monotonic()

        def followed() -> bool:
            assignments = sb.admin.list_assignments("analytics")
            holders = {a["principalId"].lower() for a in assignments if a["roleDefinitionId"] == SYNAPSE_USER}
            bobs = [a for a in assignments if a["principalId"].lower() == bob]
            return heidi in holders and not bobs and _settled(custom)

        if not _watch(custom, count, table, followed, timeout):
            print("the operator did not follow in time; operator log:\n" + (tmp / "operator.log").read_text()[-3000:])
            return 1
        print(f"    followed the directory in {time.monotonic() - changed_at:.1f}s")
        say("done: stopping the operator, the sandbox and the control plane")
        return 0
    finally:
        if operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
        log.close()
