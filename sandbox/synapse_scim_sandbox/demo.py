"""`synapse-scim demo`: a local control plane, the Azure sandbox and the operator, with the examples.

It shows the bindings converging as a live table, then changes the directory (a new analyst, a
disabled engineer) and shows the operator following. Then an identity provider pushes over SCIM
(examples/scim/: a ScimProvider and a binding on the pushed group "Data Stewards"): a user matching an
Entra account joins the group and gets the role within about a second; deactivated, it loses it.
Everything it starts stops on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client

from synapse_scim.adapters.kube import BINDINGS, GROUP, VERSION, WORKSPACES
from synapse_scim_sandbox.devcluster import ControlPlane
from synapse_scim_sandbox.devcluster.controlplane import sigterm_as_keyboard_interrupt

NAMESPACE = "data-platform"
SYNAPSE_USER = "2a385764-43e8-416c-9825-7b18d05a2c4b"
MONITORING_OPERATOR = "8f9b2195-5b12-4a7c-af30-8f1f46197650"  # the role of examples/scim/data-stewards.yaml
PUSHED_USER = "frank@contoso.com"  # an Entra user of examples/sandbox/org.yaml, pushed by "Okta" as userName
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


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
    lines = [f"{'BINDING':<18} {'READY':<6} {'REASON':<18} {'DESIRED':>7} {'IN SYNC':>7} {'MISSING':>7}"]
    for b in sorted(items, key=lambda i: i["metadata"]["name"]):
        status = b.get("status") or {}
        ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), {})
        s = status.get("summary") or {}
        lines.append(
            f"{b['metadata']['name']:<18} {ready.get('status', '-'):<6} {ready.get('reason', '-'):<18} "
            f"{s.get('desired', '-'):>7} {s.get('inSync', '-'):>7} {s.get('missing', '-'):>7}"
        )
    lines.append(f"role assignments in the sandbox workspace: {assignments}")
    return lines


def _watch(
    custom: client.CustomObjectsApi,
    count: Callable[[], int],
    table: Table,
    until: Callable[[], bool],
    timeout: float,
    interval: float = 0.5,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table.show(_rows(custom, count()))
        if until():
            return True
        time.sleep(interval)
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


class ScimClient:
    """What an identity provider does to the operator's SCIM endpoint: bearer token, TLS, JSON bodies."""

    def __init__(self, base_url: str, token: str, ca_path: Path) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.prefix = parts.hostname or "127.0.0.1", parts.port or 443, parts.path
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        self.context = ssl.create_default_context(cafile=str(ca_path))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.context)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, self.prefix + path, body=payload, headers=self.headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, (json.loads(raw) if raw else None)

    def send(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's body; anything but a success is the demo's failure."""
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"SCIM {method} {path}: {status} {answer}")
        return answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    # The SCIM endpoint's certificate: the sandbox's server certificate (valid for 127.0.0.1, issued by
    # the sandbox's CA, which the SCIM client below trusts).
    scim_tls, scim_port = tmp / "scim-tls", _free_port()
    scim_tls.mkdir()
    shutil.copyfile(tmp / "sandbox" / "server.pem", scim_tls / "tls.crt")
    shutil.copyfile(tmp / "sandbox" / "server-key.pem", scim_tls / "tls.key")
    say(f"starting the operator: synapse-scim run, with its SCIM endpoint on https://127.0.0.1:{scim_port}")
    env = {
        **os.environ,
        "KUBECONFIG": str(cp.kubeconfig),
        "SYNAPSE_SCIM_AZURE_CA_BUNDLE": str(sb.ca_path),
        "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": "2s",
        "SYNAPSE_SCIM_METRICS_PORT": "0",
        "SYNAPSE_SCIM_SCIM_PORT": str(scim_port),
        "SYNAPSE_SCIM_SCIM_HOST": "127.0.0.1",
        "SYNAPSE_SCIM_SCIM_TLS_DIR": str(scim_tls),
        "SYNAPSE_SCIM_SCIM_BASE_URL": f"https://127.0.0.1:{scim_port}",
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
        if not _scim_scene(core, custom, sb, count, table, timeout, say):
            print(
                "the SCIM scene did not complete in time; operator log:\n" + (tmp / "operator.log").read_text()[-3000:]
            )
            return 1
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


def _scim_scene(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    sb: Any,
    count: Callable[[], int],
    table: Table,
    timeout: float,
    say: Callable[[str], None],
) -> bool:
    """Okta's push: a ScimProvider and a binding on a pushed group; a pushed user that is an Entra user
    joins the group (granted), then is deactivated (revoked). The times are the sandbox's log times of
    the create and the delete, from the SCIM response."""
    say(
        "an identity provider pushes over SCIM: kubectl apply -f examples/scim/ (ScimProvider okta, its token"
        ' Secret, binding okta-data-stewards on the pushed group "Data Stewards")'
    )
    token = secrets.token_hex(32)
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "okta-scim-token"}, "stringData": {"token": token}})
    for path in sorted(_repo_file("examples", "scim").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        plural = "scimproviders" if body["kind"] == "ScimProvider" else BINDINGS
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)
    deadline = time.monotonic() + timeout
    endpoint = ""
    while not endpoint and time.monotonic() < deadline:
        provider = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "scimproviders", "okta")
        endpoint = str((provider.get("status") or {}).get("endpoint") or "")
        time.sleep(0.2)
    if not endpoint:
        return False
    print(f"    ScimProvider okta serves {endpoint} (Bearer: the token in Secret okta-scim-token)")
    scim = ScimClient(endpoint, token, sb.ca_path)
    while scim.call("GET", "/ServiceProviderConfig")[0] != 200:  # the provider's objects are loading
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)

    say(f'Okta pushes {PUSHED_USER} (POST /Users) and adds him to "Data Stewards" (POST /Groups, PATCH members)')
    name = PUSHED_USER.split("@")[0].capitalize()
    user = scim.send(
        "POST",
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": PUSHED_USER,
            "externalId": "00u1frank0demo",
            "name": {"givenName": name, "familyName": "Fischer"},
            "displayName": f"{name} Fischer",
            "emails": [{"primary": True, "value": PUSHED_USER, "type": "work"}],
            "active": True,
        },
    )
    group = scim.send(
        "POST",
        "/Groups",
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Data Stewards", "members": []},
    )
    principal = str(sb.state.directory.resolve(PUSHED_USER, kinds=("user",)).id).lower()

    def held() -> list[dict[str, Any]]:
        return [
            a
            for a in sb.admin.list_assignments("analytics")
            if a["principalId"].lower() == principal and a["roleDefinitionId"] == MONITORING_OPERATOR
        ]

    log_seq = max((e["seq"] for e in sb.admin.request_log(service="synapse")), default=0)
    add = {"op": "add", "path": "members", "value": [{"value": user["id"], "display": PUSHED_USER}]}
    scim.send("PATCH", f"/Groups/{group['id']}", {"schemas": [PATCH_OP], "Operations": [add]})
    answered = time.time()
    if not _watch(custom, count, table, lambda: bool(held()), timeout, interval=0.1):
        return False
    assignment = held()[0]["id"]
    print(
        f"    granted {_since(sb, 'createRoleAssignment', assignment, log_seq, answered):.2f}s after the SCIM response"
    )
    if not _watch(custom, count, table, lambda: _settled(custom), timeout):
        return False

    say(f"Okta deactivates {PUSHED_USER} (PATCH active=false): his pushed role goes")
    log_seq = max((e["seq"] for e in sb.admin.request_log(service="synapse", since=log_seq)), default=log_seq)
    deactivate = {"op": "replace", "value": {"active": False}}
    scim.send("PATCH", f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [deactivate]})
    answered = time.time()
    if not _watch(custom, count, table, lambda: not held(), timeout, interval=0.1):
        return False
    print(
        f"    revoked {_since(sb, 'deleteRoleAssignment', assignment, log_seq, answered):.2f}s after the SCIM response"
    )
    return _watch(custom, count, table, lambda: _settled(custom), timeout)


def _since(sb: Any, operation: str, assignment: str, seq: int, answered: float) -> float:
    """Seconds from `answered` to the sandbox's log time of the write of `assignment` (now if not logged)."""
    for e in sb.admin.request_log(service="synapse", operation=operation, since=seq):
        if e["params"].get("roleAssignmentId") == assignment and str(e["status"]).startswith("2"):
            return float(e["time"]) - answered
    return time.time() - answered
