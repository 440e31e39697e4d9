"""A real local Kubernetes control plane: etcd + kube-apiserver on free loopback ports.

Started the way controller-runtime's envtest starts one (private CA, serving certificate, admin client
certificate, service-account signing keys, RBAC authorization), so CRD validation, admission, RBAC,
TokenRequest and status subresources are the real thing. Nothing outlives it: the processes are
stopped on exit, die with their parent even if it is SIGKILLed (PR_SET_PDEATHSIG), and the temporary
directory is removed.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from .crds import install_crds
from .pki import PKIFiles, write_pki
from .tools import Tools, find_tools

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the Python process that started the control
    # plane dies by any means (even SIGKILL), the kernel kills the child too. SIGKILL rather than
    # SIGTERM: nobody is left to wait for a graceful shutdown, and the data is throw-away.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControlPlaneError(RuntimeError):
    pass


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    user: str = "admin",
) -> Path:
    """A self-contained kubeconfig (certificates embedded) for `server`."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    creds: dict[str, str] = {}
    if cert and key:
        creds = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    if token:
        creds["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "synapse-scim-dev", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "synapse-scim-dev", "context": {"cluster": "synapse-scim-dev", "user": user}}],
        "current-context": "synapse-scim-dev",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver in a temporary directory. Use as a context manager.

    With ``controller_manager=True`` also a kube-controller-manager running only the namespace
    controller and the garbage collector, so that `kubectl delete namespace` and ownerReferences
    behave as in a cluster (without it a deleted namespace stays Terminating for ever)."""

    # The controllers a test may want; not "*": no nodes, pods or service accounts here.
    CONTROLLERS = ("namespace-controller", "garbage-collector-controller")

    def __init__(
        self,
        tools: Tools | None = None,
        *,
        workdir: Path | None = None,
        start_timeout: float = 90.0,
        crds: bool = True,
        controller_manager: bool = False,
    ) -> None:
        self.tools = tools or find_tools()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="synapse-scim-cp-"))
        self.start_timeout = start_timeout
        self.with_crds = crds
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None
        self.with_controller_manager = controller_manager
        self.controller_manager: subprocess.Popen[bytes] | None = None
        self.pki: PKIFiles | None = None
        self.server = ""
        self.kubeconfig = self.workdir / "kubeconfig"
        self.etcd_url = ""
        self._commands: dict[str, list[str]] = {}  # component -> the command it was started with

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        restarted = name in self._commands
        self._commands[name] = args
        out = open(self.workdir / f"{name}.log", "ab" if restarted else "wb")
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            cwd=self.workdir,
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / "pki"
        certs.mkdir(exist_ok=True)
        self.pki = write_pki(certs)
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        etcd_url = self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.etcd = self._spawn(
            "etcd",
            [
                str(self.tools.etcd),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",  # a test store: durability is not wanted, speed is
                "--log-level",
                "warn",
            ],
        )
        self.server = f"https://127.0.0.1:{api_port}"
        self.apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.tools.kube_apiserver),
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--endpoint-reconciler-type",
                "none",  # loopback cannot be the kubernetes Service endpoint
                "--secure-port",
                str(api_port),
                "--cert-dir",
                str(certs),
                "--tls-cert-file",
                str(self.pki.serving_cert),
                "--tls-private-key-file",
                str(self.pki.serving_key),
                "--client-ca-file",
                str(self.pki.ca_cert),
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file",
                str(self.pki.sa_public_key),
                "--service-account-signing-key-file",
                str(self.pki.sa_private_key),
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--authorization-mode",
                "RBAC",
                "--allow-privileged=true",
                "--disable-admission-plugins",
                "ServiceAccount",  # no controller-manager to mint SA tokens
                "--v",
                "1",
            ],
        )
        write_kubeconfig(self.kubeconfig, self.server, self.pki.ca_cert, self.pki.admin_cert, self.pki.admin_key)
        self._wait_ready()
        if self.with_crds:
            with self.api_client() as api:
                install_crds(api)
        if self.with_controller_manager:
            self.start_controller_manager()

    def start_controller_manager(self) -> None:
        """kube-controller-manager with the namespace controller and the garbage collector, as the
        admin (no ServiceAccount credentials: the token controller is not running), serving nothing."""
        kcm = self.tools.kube_controller_manager
        if kcm is None:
            raise ControlPlaneError(
                "kube-controller-manager not found: hack/build-tools.sh builds it (a KUBEBUILDER_ASSETS "
                "directory does not ship it)"
            )
        self.controller_manager = self._spawn(
            "kube-controller-manager",
            [
                str(kcm),
                "--kubeconfig",
                str(self.kubeconfig),
                "--controllers",
                ",".join(self.CONTROLLERS),
                "--leader-elect=false",
                "--secure-port",
                "0",  # no metrics or health endpoint: nothing reads them, and no port to collide
                "--use-service-account-credentials=false",
                "--concurrent-namespace-syncs",
                "5",
                "--v",
                "1",
            ],
        )
        # It has no endpoint to poll: give it a moment to fail on a bad flag, else trust it (the tests
        # that use it poll for its effects).
        try:
            code = self.controller_manager.wait(1.0)
        except subprocess.TimeoutExpired:
            return
        raise ControlPlaneError(
            f"kube-controller-manager exited with {code}:\n{self.log_tail('kube-controller-manager')}"
        )

    def _wait_ready(self) -> None:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in (("etcd", self.etcd), ("kube-apiserver", self.apiserver)):
                if proc is not None and proc.poll() is not None:
                    raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {self.start_timeout}s ({last}):\n{self.log_tail('kube-apiserver')}"
        )

    # -- faults (bench/soak.py): the components are our processes, so they can be killed and paused ----

    _ATTRIBUTES = {"etcd": "etcd", "kube-apiserver": "apiserver", "kube-controller-manager": "controller_manager"}

    def process(self, component: str) -> subprocess.Popen[bytes]:
        proc = getattr(self, self._ATTRIBUTES[component])
        if proc is None:
            raise ControlPlaneError(f"{component} is not running")
        return proc

    def kill(self, component: str) -> None:
        """SIGKILL: no shutdown, in-flight requests and watches cut."""
        proc = self.process(component)
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused process dies on SIGKILL too, but reap it promptly
            proc.kill()
        proc.wait()

    def restart(self, component: str) -> None:
        """Start `component` again with its first command (same ports, data, certificates); waits
        until the API server is ready (or etcd healthy)."""
        proc = self.process(component)
        if proc.poll() is None:
            raise ControlPlaneError(f"{component} is still running")
        setattr(self, self._ATTRIBUTES[component], self._spawn(component, self._commands[component]))
        if component == "kube-apiserver":
            self._wait_ready()
        elif component == "etcd":
            self._wait_etcd()

    def pause(self, component: str) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a stalled node, a GC pause)."""
        self.process(component).send_signal(signal.SIGSTOP)

    def resume(self, component: str) -> None:
        self.process(component).send_signal(signal.SIGCONT)

    def _etcd(self, path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{self.etcd_url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return dict(json.load(resp))

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (what the API server does every five
        minutes): a watch resumed from an older resourceVersion then ends with 410 Gone. Returns the
        revision."""
        header = self._etcd("/v3/maintenance/status", {}).get("header") or {}
        revision = int(header["revision"])  # type: ignore[index]
        self._etcd("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def _wait_etcd(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                    if json.load(resp).get("health") == "true":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise ControlPlaneError(f"etcd not healthy after {self.start_timeout}s:\n{self.log_tail('etcd')}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        # Its clients first, so that none spends its shutdown retrying a vanished etcd or API server.
        self._terminate(self.controller_manager)
        self._terminate(self.apiserver)
        self._terminate(self.etcd)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self.etcd, self.apiserver, self.controller_manager) if p is not None]

    # -- clients ---------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            self.tools.kubectl, ["--kubeconfig", str(kubeconfig or self.kubeconfig), *args], check=check, input=input
        )

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        return new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.tools.helm is None:
            raise ControlPlaneError("helm is not available; run `make tools`")
        return run_tool(
            self.tools.helm,
            ["--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            env_extra=helm_env(self.workdir),
        )


def helm_env(base: Path) -> dict[str, str]:
    # Helm keeps caches and repository config under $HOME by default; a run must not touch the user's.
    helm_dir = base / "helm"
    return {
        "HELM_CACHE_HOME": str(helm_dir / "cache"),
        "HELM_CONFIG_HOME": str(helm_dir / "config"),
        "HELM_DATA_HOME": str(helm_dir / "data"),
    }


def run_tool(
    binary: Path,
    args: list[str],
    *,
    check: bool = True,
    input: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, input=input, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt():
    """Let SIGTERM unwind the stack like Ctrl-C does, so every `with ControlPlane()` cleans up."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ExistingCluster:
    """The same interface as ControlPlane, for a cluster the user already runs (kind, k3d, ...)."""

    def __init__(self, kubeconfig: str | os.PathLike[str], tools: Tools | None = None, crds: bool = True) -> None:
        self.tools = tools or find_tools()
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(tempfile.mkdtemp(prefix="synapse-scim-existing-"))
        with self.api_client() as api:
            self.server = api.configuration.host
            if crds:
                install_crds(api)

    def __enter__(self) -> ExistingCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    pids: list[int] = []
    api_client = ControlPlane.api_client
    kubectl = ControlPlane.kubectl
    helm = ControlPlane.helm
