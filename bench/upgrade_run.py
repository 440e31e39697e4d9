"""An operator upgrade with two replicas while directory changes flow (issue 17): the previous release's
chart and code, then `helm upgrade` to this checkout's chart with a new image tag and the CRDs re-applied,
the pods rolled one at a time as the chart's RollingUpdate strategy says.

The local control plane has no kubelet (pods never run), so a small stand-in (`StandInKubelet`) runs the
Deployment's pods as local processes: it reads the Deployment from the API server and starts each pod's
container as `synapse-scim <the container's args>` with the container's env (`value` and the `fieldRef`s
metadata.name / metadata.namespace), the image's own env (HOME, PYTHONUNBUFFERED, ...), the pod's
ServiceAccount (a TokenRequest kubeconfig: the chart's RBAC, as automount would give it) and its
configMap volumes (the Azure CA bundle) written to a directory of the pod. What a process cannot share
with another on one host is remapped: each container port (health, metrics) gets a free local port, in
the args and env that name it. The image decides the code: the previous release's image tag runs the
previous release's `operator/` (extracted from git, on PYTHONPATH, with this venv's dependencies, which
did not change), the new tag this checkout's. A RollingUpdate follows the Deployment's strategy: start a
new pod, wait for its readiness probe (/healthz), SIGTERM an old one (SIGKILL after the pod's
terminationGracePeriodSeconds), until no old pod is left.

Measured and checked (the sandbox's request log and assignments, the Lease, each pod's /metrics):
- Azure requests served, by service; errors (non-2xx answers: nothing is injected);
- time without a leader: no live pod reporting synapse_scim_leader 1 (and the Lease's view: no holder,
  or a holder that is not a live pod reporting leader), after the first leader;
- no manual assignment deleted (nor missing); nothing deleted that a binding wanted throughout the
  `race_window` seconds before (the soak's rule, bench/soak.py); no duplicate assignments; no binding
  lost; after the rollout a new pod leads (within 60 s), the directory changes a few more times under it,
  then stops: the assignments and every binding's Ready within two sync intervals of the last change;
- the CRDs in the API server are this checkout's after the re-apply (done before `helm upgrade`, with
  --force-conflicts: Helm created them).

    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/upgrade_run.py [--build-image]
        [--changes-before 40] [--changes-during 20] [--changes-after 10]
        [--sync-interval 30] [--change-every 1.5] [--seed 1]
        [--out bench/results]

writes bench/results/upgrade-<date>.{json,md}; tests/chart/test_chart_upgrade.py runs a short one.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench_results import write_results
from scale_bench import source_version
from scale_procs import machine
from soak import Directory
from support.chart import fullname, service_account_kubeconfig  # tests/support, installed by `make venv`
from support.harness import RB_PLURAL, WS_PLURAL, Harness
from synapse_scim.core.model import Grant, assignment_id
from synapse_scim_sandbox import SandboxThread
from synapse_scim_sandbox.devcluster import ControlPlane

REPO = Path(__file__).resolve().parents[1]
PREVIOUS = "bac18e4"  # the previous release: main before issue 16's work
RELEASE = "synapse-scim"
NAMESPACE = "synapse-scim"
DOMAIN = "contoso.onmicrosoft.com"
SCOPE = "workspaces/analytics"
ROLES = {
    "Synapse User": "2a385764-43e8-416c-9825-7b18d05a2c4b",
    "Synapse Contributor": "7572bffe-f453-4b66-912a-46cc5ef38fda",
    "Synapse Compute Operator": "e3844cc7-4670-42cb-9349-9bdac1ee7881",
    "Synapse Administrator": "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78",
    "Synapse Artifact User": "53faaa0e-40b6-40c8-a2ff-e38f2d388875",
}
USERS = [f"u{i:02d}@{DOMAIN}" for i in range(20)]
TEAMS = ["Team A", "Team B", "Ops"]
BINDINGS = {  # name: (role, groups)
    "users": ("Synapse User", ["All Teams"]),
    "contributors": ("Synapse Contributor", ["Team B"]),
    "operators": ("Synapse Compute Operator", ["Ops"]),
}
# Created during the rollout, between its steps: a binding the leader of that moment must pick up.
LATE_BINDING = ("artifacts", ("Synapse Artifact User", ["Team A"]))
# Manual grants: one nobody wants, one a binding wants too (adopted, never owned), one a binding may
# come to want (u17 may join Team B).
MANUAL = [("Synapse Administrator", USERS[18]), ("Synapse User", USERS[0]), ("Synapse Contributor", USERS[17])]
# The chart's values for both releases (the image tag aside): two replicas, leader election, the
# release namespace watched, the sandbox's CA from a ConfigMap, a 1 s directory poll.
CA_CONFIGMAP = "azure-ca"

Key = tuple[str, str, str]  # (roleId, principalId, scope)


def upgrade_org() -> dict[str, Any]:
    return {
        "tenant": {"domain": DOMAIN},
        "apps": [{"name": "synapse-scim-operator", "secret": "operator-secret-1"}],
        "users": [{"userPrincipalName": u} for u in USERS],
        "groups": [
            {"displayName": "Team A", "members": USERS[0:5]},
            {"displayName": "Team B", "members": USERS[5:10]},
            {"displayName": "Ops", "members": USERS[10:13]},
            {"displayName": "All Teams", "members": [{"group": "Team A"}, {"group": "Team B"}]},
        ],
        "workspaces": [{"name": "analytics"}],
    }


def chart_values(namespace: str, poll: str = "1s") -> dict[str, Any]:
    return {
        "replicaCount": 2,
        "leaderElection": {"enabled": True},
        "watchNamespaces": [namespace],
        "azureCABundle": {"configMap": CA_CONFIGMAP},
        "operator": {"directoryPollInterval": poll},
    }


def extract_previous(dest: Path, commit: str = PREVIOUS) -> Path:
    """The previous release's chart, CRDs and operator package (`git archive`), under `dest`; the chart's
    `crds` symlink (-> ../../crds) resolves inside it."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "charts/synapse-scim", "crds", "operator"],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="tar")
    return dest


def previous_available(commit: str = PREVIOUS) -> bool:
    """Whether this checkout has the previous release's commit (not in a shallow clone)."""
    return (
        subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
        ).returncode
        == 0
    )


# -- the stand-in kubelet ----------------------------------------------------------------------------


@dataclass
class Runtime:
    """What an image runs here: a Python command for `synapse-scim` and its extra environment."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Pod:
    name: str
    template_hash: str
    image: str
    code: str
    proc: subprocess.Popen[bytes]
    ports: dict[int, int]  # containerPort -> local port
    readiness_url: str
    metrics_url: str | None
    log: Path
    grace: float
    started: float
    ready_at: float | None = None
    sigterm_at: float | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    killed: bool = False
    stopped_by: str = ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def summary(self) -> dict[str, Any]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.started, 2)

        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        return {
            "name": self.name,
            "image": self.image,
            "code": self.code,
            "template_hash": self.template_hash,
            "ready_after_s": rel(self.ready_at),
            "sigterm_after_s": rel(self.sigterm_at),
            "stopped_in_s": None
            if self.exited_at is None or self.sigterm_at is None
            else round(self.exited_at - self.sigterm_at, 2),
            "exit_code": self.exit_code,
            "stopped_by": self.stopped_by,
            "sigkilled": self.killed,
            "acquired_lease": "acquired Lease" in log,
            "released_lease": "released Lease" in log,
            "error_lines": [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line][:20],
        }


def template_hash(api: client.ApiClient, template: Any) -> str:
    """A stable hash of a pod template (the ReplicaSet's pod-template-hash plays this part)."""
    body = json.dumps(api.sanitize_for_serialization(template), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:10]


class StandInKubelet:
    """Runs a Deployment's pods as local processes (no kubelet here): see the module's docstring."""

    def __init__(
        self, cp: Any, namespace: str, deployment: str, runtimes: dict[str, Runtime], workdir: Path, log: Any = print
    ) -> None:
        self.cp, self.namespace, self.deployment = cp, namespace, deployment
        self.runtimes, self.workdir, self.log = runtimes, workdir, log
        self.api = cp.api_client()
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.pods: list[Pod] = []
        self.rng = random.Random(0)
        self.port_rng = random.Random()
        self.used_ports: set[int] = set()
        self.lock = threading.Lock()

    def close(self) -> None:
        self.stop_all()
        self.api.close()

    # -- reading the Deployment ----------------------------------------------------------------------

    def read(self) -> Any:
        return self.apps.read_namespaced_deployment(self.deployment, self.namespace)

    def live(self) -> list[Pod]:
        """The pods running and not terminating (what the Deployment counts)."""
        with self.lock:
            return [p for p in self.pods if p.alive and p.sigterm_at is None]

    def running(self) -> list[Pod]:
        """Every pod whose process runs, terminating ones included (a stopping leader may still act)."""
        with self.lock:
            return [p for p in self.pods if p.alive]

    def _volume_files(self, pod_dir: Path, spec: Any, container: Any) -> dict[str, Path]:
        """The configMap volumes the container mounts, written under the pod's directory:
        {mountPath: local directory}. emptyDir volumes are a directory each."""
        mounts: dict[str, Path] = {}
        volumes = {v.name: v for v in spec.volumes or []}
        for m in container.volume_mounts or []:
            local = pod_dir / "volumes" / m.name
            local.mkdir(parents=True, exist_ok=True)
            v = volumes[m.name]
            if v.config_map is not None:
                cm = self.core.read_namespaced_config_map(v.config_map.name, self.namespace)
                items = v.config_map.items or [client.V1KeyToPath(key=k, path=k) for k in cm.data or {}]
                for item in items:
                    (local / item.path).write_text(cm.data[item.key])
            elif v.secret is not None:
                raise NotImplementedError(f"secret volume {m.name}: the stand-in does not mount secrets")
            mounts[m.mount_path] = local
        return mounts

    def pod_port(self) -> int:
        """A free local port below the kernel's ephemeral range: a port from that range (free_port) may be
        handed to one of the many outgoing connections before the pod binds it (seen: EADDRINUSE)."""
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        while True:
            port = self.port_rng.randrange(10000, max(10001, low))
            if port in self.used_ports:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("0.0.0.0", port))
                except OSError:
                    continue
            self.used_ports.add(port)
            return port

    def start_pod(self, deployment: Any) -> Pod:
        template = deployment.spec.template
        spec = template.spec
        (container,) = spec.containers
        assert not container.command, "the chart sets args only (the image's entrypoint is synapse-scim)"
        runtime = self.runtimes.get(container.image)
        if runtime is None:
            raise RuntimeError(f"image {container.image} unknown to the stand-in (ErrImagePull)")
        thash = template_hash(self.api, template)
        name = f"{self.deployment}-{thash[:10]}-{''.join(self.rng.choices('bcdfghjklmnpqrstvwxz2456789', k=5))}"
        pod_dir = self.workdir / "pods" / name
        (pod_dir / "tmp").mkdir(parents=True)
        ports = {p.container_port: self.pod_port() for p in container.ports or []}
        port_names = {p.name: p.container_port for p in container.ports or []}
        mounts = self._volume_files(pod_dir, spec, container)

        def remap(value: str) -> str:
            for container_port, local in ports.items():
                value = value.replace(f"0.0.0.0:{container_port}", f"127.0.0.1:{local}")
            for mount_path, local_dir in mounts.items():
                if value.startswith(mount_path.rstrip("/") + "/"):
                    value = str(local_dir) + value[len(mount_path.rstrip("/")) :]
            return value

        fields = {"metadata.name": name, "metadata.namespace": self.namespace}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # The image's ENV (Dockerfile), with HOME and the temporary directory on the pod's emptyDir.
            "HOME": str(pod_dir / "tmp"),
            "TMPDIR": str(pod_dir / "tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **runtime.env,
        }
        for e in container.env or []:
            if e.value_from is not None:
                if e.value_from.field_ref is None or e.value_from.field_ref.field_path not in fields:
                    raise NotImplementedError(f"env {e.name}: only metadata.name/namespace fieldRefs")
                env[e.name] = fields[e.value_from.field_ref.field_path]
            else:
                env[e.name] = remap(e.value or "")
        metrics_port = int(env.get("SYNAPSE_SCIM_METRICS_PORT", "0"))
        if metrics_port:
            env["SYNAPSE_SCIM_METRICS_PORT"] = str(ports[metrics_port])
        # The pod's ServiceAccount token, as automountServiceAccountToken gives it: here a kubeconfig.
        env["KUBECONFIG"] = str(
            service_account_kubeconfig(
                self.cp, self.namespace, RELEASE, pod_dir / "kubeconfig", service_account=spec.service_account_name
            )
        )
        probe = container.readiness_probe.http_get
        probe_port = probe.port if isinstance(probe.port, int) else port_names[probe.port]
        args = [remap(a) for a in container.args]
        log_path = pod_dir / "operator.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [*runtime.argv, *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=pod_dir / "tmp"
            )
        pod = Pod(
            name=name,
            template_hash=thash,
            image=container.image,
            code=runtime.name,
            proc=proc,
            ports=ports,
            readiness_url=f"http://127.0.0.1:{ports[probe_port]}{probe.path}",
            metrics_url=f"http://127.0.0.1:{ports[metrics_port]}/metrics" if metrics_port else None,
            log=log_path,
            grace=float(spec.termination_grace_period_seconds or 30),
            started=time.time(),
        )
        with self.lock:
            self.pods.append(pod)
        self.log(f"kubelet: started {name} ({container.image}: {runtime.name} code)")
        return pod

    def ready(self, pod: Pod) -> bool:
        if pod.ready_at is not None:
            return True
        try:
            with urllib.request.urlopen(pod.readiness_url, timeout=2) as r:
                ok = r.status == 200
        except OSError:
            return False
        if ok:
            pod.ready_at = time.time()
        return ok

    def wait_ready(self, pods: list[Pod], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.ready(p) for p in pods):
            for p in pods:
                if not p.alive:
                    raise RuntimeError(f"pod {p.name} exited ({p.proc.returncode}):\n{p.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pods not ready after {timeout}s: {[p.name for p in pods if not p.ready_at]}")
            time.sleep(0.25)

    def terminate(self, pod: Pod, why: str) -> None:
        """SIGTERM now; SIGKILL after the pod's grace period (a thread watches)."""
        pod.stopped_by = why
        pod.sigterm_at = time.time()
        pod.proc.send_signal(signal.SIGTERM)
        self.log(f"kubelet: SIGTERM {pod.name}")

        def reap() -> None:
            try:
                pod.exit_code = pod.proc.wait(timeout=pod.grace)
            except subprocess.TimeoutExpired:
                pod.killed = True
                pod.proc.kill()
                pod.exit_code = pod.proc.wait()
            pod.exited_at = time.time()
            self.log(f"kubelet: {pod.name} exited {pod.exit_code}")

        threading.Thread(target=reap, daemon=True).start()

    def sync(self) -> list[Pod]:
        """Scale up to the Deployment's replicas (the first rollout: from nothing) and wait for Ready."""
        dep = self.read()
        started = [self.start_pod(dep) for _ in range(dep.spec.replicas - len(self.live()))]
        self.wait_ready(started)
        return started

    def roll(self, between_steps: Callable[[int], None] | None = None, timeout: float = 300.0) -> dict[str, Any]:
        """A RollingUpdate to the Deployment's current template, as its strategy says (maxSurge,
        maxUnavailable as integers): start new pods within the surge, wait until they are ready, stop
        old ones while the ready ones stay at least replicas - maxUnavailable; one step at a time."""
        dep = self.read()
        strategy = dep.spec.strategy
        assert strategy.type == "RollingUpdate", strategy
        replicas = dep.spec.replicas
        surge, unavailable = int(strategy.rolling_update.max_surge), int(strategy.rolling_update.max_unavailable)
        want = template_hash(self.api, dep.spec.template)
        steps = []
        deadline = time.monotonic() + timeout
        step = 0
        while True:
            live = self.live()
            new = [p for p in live if p.template_hash == want]
            old = [p for p in live if p.template_hash != want]
            if not old and len(new) >= replicas:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"rollout not done after {timeout}s")
            started = []
            while len(new) + len(started) < replicas and len(live) + len(started) < replicas + surge:
                started.append(self.start_pod(dep))
            self.wait_ready(new + started)
            ready = len(new) + len(started) + len(old)
            stop = old[: max(0, min(len(old), ready - (replicas - unavailable)))]
            if not started and not stop:
                raise RuntimeError("rollout stuck: nothing to start or stop")
            for p in stop:
                self.terminate(p, "rollout")
            step += 1
            steps.append({"step": step, "started": [p.name for p in started], "stopped": [p.name for p in stop]})
            if between_steps is not None:
                between_steps(step)
        return {"replicas": replicas, "max_surge": surge, "max_unavailable": unavailable, "steps": steps}

    def wait_stopped(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while any(p.sigterm_at is not None and p.exited_at is None for p in self.pods):
            if time.monotonic() > deadline:
                raise TimeoutError("terminated pods still running")
            time.sleep(0.2)

    def stop_all(self) -> None:
        for p in self.pods:
            if p.alive and p.sigterm_at is None:
                self.terminate(p, "teardown")
        self.wait_stopped(timeout=max((p.grace for p in self.pods), default=0) + 10)


# -- observing ---------------------------------------------------------------------------------------


def scrape_leader(url: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("synapse_scim_leader "):
            return float(line.split()[1])
    return None


@dataclass
class Sample:
    t: float
    holder: str | None
    leaders: list[str]  # live pods whose /metrics say synapse_scim_leader 1
    live: list[str]


def transitions(samples: list[Sample], origin: float) -> list[dict[str, Any]]:
    """Each change of the Lease holder or of the pods reporting leader, with its time after `origin`."""
    out: list[dict[str, Any]] = []
    last: tuple[str | None, list[str]] | None = None
    for s in samples:
        now = (s.holder, s.leaders)
        if now != last:
            out.append({"t": round(s.t - origin, 2), "lease_holder": s.holder, "metrics_leaders": s.leaders})
            last = now
    return out


def leaderless(samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    """Seconds in [start, end] with no leader, by the pods' /metrics and by the Lease (no holder, or a
    holder that is not a live pod reporting leader); the longest gap of each; samples with two leaders."""

    def spans(no_leader: Callable[[Sample], bool]) -> tuple[float, float]:
        total = longest = run = 0.0
        window = [s for s in samples if start <= s.t <= end]
        for a, b in itertools.pairwise(window):
            if no_leader(a):
                run += b.t - a.t
                total += b.t - a.t
                longest = max(longest, run)
            else:
                run = 0.0
        return round(total, 2), round(longest, 2)

    by_metrics = spans(lambda s: not s.leaders)
    by_lease = spans(lambda s: s.holder is None or s.holder not in s.leaders)
    window = [s for s in samples if start <= s.t <= end]
    return {
        "samples": len(window),
        "sample_interval_s": round((end - start) / max(1, len(window) - 1), 3),
        "without_leader_s": by_metrics[0],
        "longest_without_leader_s": by_metrics[1],
        "lease_not_held_by_a_leading_pod_s": by_lease[0],
        "longest_lease_gap_s": by_lease[1],
        "samples_with_two_leaders": sum(1 for s in window if len(s.leaders) > 1),
    }


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class UpgradeConfig:
    changes_before: int = 40  # directory changes under the previous release before `helm upgrade`
    changes_during: int = 20  # ... and after the rollout's first step (one old pod, one new)
    changes_after: int = 10  # ... and once a new pod leads, before the changes stop
    sync_interval: float = 30.0
    change_every: float = 1.5
    race_window: float = 20.0
    seed: int = 1
    build_image: bool = False
    new_tag: str = ""
    workdir: Path | None = None


class UpgradeRun:
    def __init__(self, tools: Any, cfg: UpgradeConfig, log: Any = print) -> None:
        self.tools, self.cfg, self.log = tools, cfg, log
        self.rng = random.Random(cfg.seed)
        self.dir = Directory.from_org(upgrade_org())
        self.bindings: dict[str, tuple[str, list[str]]] = dict(BINDINGS)
        self.ids: dict[str, str] = {}
        self.states: list[tuple[float, float, frozenset[Key]]] = []
        self.manual: dict[str, Key] = {}
        self.by_assignment_id: dict[str, Key] = {}
        self.violations: list[str] = []
        self.samples: list[Sample] = []
        self.seq = 0
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self.creates = self.deletes = self.deletes_racing = self.conflicts = 0
        self.changes: Counter[str] = Counter()
        self.marks: dict[str, float] = {}
        self.stop_changes = threading.Event()
        self.stop_monitor = threading.Event()
        self.h: Harness | None = None
        self.kubelet: StandInKubelet | None = None

    # -- the model (the soak's, Graph groups only) -------------------------------------------------

    def wanted(self) -> frozenset[Key]:
        return frozenset(
            (ROLES[role], self.ids[u], SCOPE)
            for role, groups in self.bindings.values()
            for g in groups
            for u in self.dir.users_of(g)
        )

    def record(self, sent: float) -> None:
        self.states.append((sent, time.time(), self.wanted()))

    def protected_throughout(self, key: Key, start: float, end: float) -> tuple[bool, bool]:
        """(wanted by every state current at some instant of [start, end], wanted by the state current
        at `end`)."""
        current = [
            wanted
            for i, (sent, _, wanted) in enumerate(self.states)
            if sent <= end and (self.states[i + 1][1] if i + 1 < len(self.states) else float("inf")) >= start
        ]
        at_end = next((w for _, answered, w in reversed(self.states) if answered <= end), self.states[0][2])
        return all(key in w for w in current), key in at_end

    def violation(self, what: str) -> None:
        self.violations.append(what)
        self.log(f"upgrade: VIOLATION: {what}")

    # -- the directory's changes -------------------------------------------------------------------

    def change(self) -> None:
        assert self.h is not None
        admin, d = self.h.sb.admin, self.dir
        kind = self.rng.choice(["add", "add", "remove", "remove", "disable", "enable"])
        sent = time.time()
        if kind == "add":
            group = self.rng.choice(TEAMS)
            user = self.rng.choice([u for u in USERS if u not in d.members[group]])
            admin.add_member(group, user)
            d.members[group].add(user)
        elif kind == "remove":
            group = self.rng.choice(TEAMS)
            members = sorted(m for m in d.members[group] if m in self.ids)
            if not members:
                return
            user = self.rng.choice(members)
            admin.remove_member(group, self.ids[user])
            d.members[group].discard(user)
        elif kind == "disable":
            if len(d.disabled) >= 3:
                return
            user = self.rng.choice([u for u in USERS if u not in d.disabled])
            admin.disable_user(user)
            d.disabled.add(user)
        else:
            if not d.disabled:
                return
            user = self.rng.choice(sorted(d.disabled))
            admin.enable_user(user)
            d.disabled.discard(user)
        self.record(sent)
        self.changes[kind] += 1

    def wait_changes(self, n: int) -> None:
        """Until the directory has changed `n` more times (the change thread makes them)."""
        target = sum(self.changes.values()) + n
        deadline = time.monotonic() + n * self.cfg.change_every * 3 + 60
        while sum(self.changes.values()) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} directory changes not made in time")
            time.sleep(0.2)

    def change_loop(self) -> None:
        while not self.stop_changes.wait(self.cfg.change_every):
            self.change()

    # -- watching ------------------------------------------------------------------------------------

    def drain_requests(self) -> None:
        assert self.h is not None
        for e in self.h.sb.admin.request_log(since=self.seq):
            self.seq = max(self.seq, e["seq"])
            if e.get("batched"):
                continue  # one round trip: the batch is counted, not what it carried
            self.requests[str(e["service"])] += 1
            status = str(e["status"])
            self.statuses[status] += 1
            ok = status.startswith("2")
            if status == "409" and e.get("operation") == "createRoleAssignment":
                self.conflicts += 1  # RoleAssignmentAlreadyExists: success to the operator (adoption)
            elif not ok:
                self.errors.append({k: e.get(k) for k in ("time", "service", "operation", "status", "path", "fault")})
            if e.get("operation") == "createRoleAssignment" and ok:
                self.creates += 1
            if e.get("operation") != "deleteRoleAssignment" or not ok:
                continue
            self.deletes += 1
            aid = e["path"].split("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
            if aid in self.manual:
                self.violation(f"manual assignment {aid} {self.manual[aid]} deleted at {e['time']:.3f}")
                continue
            key = self.by_assignment_id.get(aid)
            if key is None:
                self.violation(f"deleted an assignment the run cannot account for: {e['path']}")
                continue
            throughout, at_end = self.protected_throughout(key, e["time"] - self.cfg.race_window, e["time"])
            if throughout:
                self.violation(
                    f"deleted {key} at {e['time']:.3f}, wanted throughout the {self.cfg.race_window:g}s before"
                )
            elif at_end:
                self.deletes_racing += 1  # wanted again when deleted: a read from before the change

    def check_assignments(self) -> set[Key]:
        assert self.h is not None
        listed = self.h.assignments()
        keys = Counter((a["roleDefinitionId"], a["principalId"].lower(), a["scope"]) for a in listed)
        for key, n in keys.items():
            if n > 1:
                self.violation(f"duplicate assignment {key} x{n}")
        ids = {a["id"].lower() for a in listed}
        for aid, key in self.manual.items():
            if aid not in ids:
                self.violation(f"manual assignment {aid} {key} missing")
        return set(keys)

    def lease_holder(self, coordination: client.CoordinationV1Api) -> str | None:
        try:
            return coordination.read_namespaced_lease(fullname(RELEASE), NAMESPACE).spec.holder_identity
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def monitor_loop(self) -> None:
        assert self.kubelet is not None and self.h is not None
        with self.h.cluster.api_client() as api:
            coordination = client.CoordinationV1Api(api)
            last_drain = 0.0
            while not self.stop_monitor.wait(0.2):
                running = self.kubelet.running()
                leaders = [p.name for p in running if p.metrics_url and scrape_leader(p.metrics_url) == 1.0]
                holder = self.lease_holder(coordination)
                self.samples.append(Sample(time.time(), holder, leaders, [p.name for p in running]))
                if time.monotonic() - last_drain > 1.0:
                    self.drain_requests()
                    last_drain = time.monotonic()

    # -- convergence ---------------------------------------------------------------------------------

    def differences(self) -> list[str]:
        assert self.h is not None
        out = []
        listed = self.check_assignments()
        want = set(self.wanted()) | set(self.manual.values())
        if listed != want:
            out.append(f"missing {sorted(want - listed)}, unexpected {sorted(listed - want)}")
        for plural, names in ((RB_PLURAL, list(self.bindings)), (WS_PLURAL, ["analytics"])):
            for name in names:
                obj = self.h.get(plural, name)
                if obj is None:
                    out.append(f"{plural}/{name} missing")
                    continue
                c = self.h.condition(plural, name)
                if not c or c["status"] != "True" or c.get("observedGeneration") != obj["metadata"]["generation"]:
                    out.append(f"{plural}/{name} not Ready: {c}")
        return out

    def await_convergence(self, what: str, limit: float) -> float | None:
        since = time.monotonic()
        while diff := self.differences():
            if time.monotonic() - since > limit:
                self.violation(f"not converged {limit:g}s {what}: " + "; ".join(diff))
                return None
            time.sleep(0.25)
        return round(time.monotonic() - since, 2)

    # -- steps ---------------------------------------------------------------------------------------

    def await_new_leader(self, pods: set[str], timeout: float) -> float | None:
        """Seconds until the Lease holder is one of `pods` and its /metrics say leader 1 (the monitor's
        samples); a violation past `timeout`."""
        since = time.monotonic()
        while not (
            self.samples and self.samples[-1].holder in pods and self.samples[-1].leaders == [self.samples[-1].holder]
        ):
            if time.monotonic() - since > timeout:
                self.violation(f"no new pod of {sorted(pods)} leads {timeout:g}s after the rollout")
                return None
            time.sleep(0.2)
        return round(time.monotonic() - since, 2)

    def mark(self, name: str) -> float:
        self.marks[name] = time.time()
        self.log(f"upgrade: {name}")
        return self.marks[name]

    def build_image(self, tag: str) -> dict[str, str]:
        """hack/build-image.sh with the new tag (the image is built; the pods still run as processes).
        The image build's cache is the default one (it locks it), not SYNAPSE_SCIM_CACHE's."""
        env = {k: v for k, v in os.environ.items() if k != "SYNAPSE_SCIM_CACHE"}
        env["SYNAPSE_SCIM_IMAGE"] = tag
        failures = []
        for _ in range(2):  # once it exited 141 (SIGPIPE) for no reason it would say; a second try built it
            started = time.monotonic()
            done = subprocess.run(
                ["nice", "-n", "10", str(REPO / "hack" / "build-image.sh")], env=env, capture_output=True, text=True
            )
            if done.returncode == 0:
                info = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
                info["WALL_SECONDS"] = f"{time.monotonic() - started:.0f}"
                info["FAILED_TRIES"] = str(len(failures))
                if failures:
                    info["FAILURE"] = failures[0][-400:]
                return info
            failures.append(f"exit {done.returncode}: {done.stderr[-2000:]}")
        raise RuntimeError("hack/build-image.sh failed:\n" + "\n".join(failures))

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        base = cfg.workdir or Path(tempfile.mkdtemp(prefix="synapse-scim-upgrade-"))
        try:
            return self._in(base)
        finally:
            if cfg.workdir is None:
                shutil.rmtree(base, ignore_errors=True)

    def _in(self, base: Path) -> dict[str, Any]:
        cfg = self.cfg
        new_tag = cfg.new_tag or f"0.1.0-{source_version().split()[0]}"
        report: dict[str, Any] = {"previous": PREVIOUS, "new_image_tag": new_tag}
        if cfg.build_image:
            self.log(f"upgrade: building the image synapse-scim:{new_tag}")
            report["image_build"] = self.build_image(f"synapse-scim:{new_tag}")
        prev = extract_previous(base / "previous")
        report["crds_changed_since_previous"] = bool(
            subprocess.run(
                ["git", "-C", str(REPO), "diff", "--quiet", PREVIOUS, "--", "crds"], capture_output=True
            ).returncode
        )
        runtimes = {
            # The previous release's image (chart appVersion 0.1.0, no tag set): its own operator/.
            "synapse-scim:0.1.0": Runtime(
                f"previous ({PREVIOUS})",
                [sys.executable, "-m", "synapse_scim.cli"],
                {"PYTHONPATH": str(prev / "operator")},
            ),
            f"synapse-scim:{new_tag}": Runtime(
                f"this checkout ({source_version()})", [sys.executable, "-m", "synapse_scim.cli"]
            ),
        }
        report["code_paths"] = {
            image: subprocess.run(
                [*rt.argv[:1], "-c", "import synapse_scim; print(synapse_scim.__file__)"],
                env={**os.environ, **rt.env},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for image, rt in runtimes.items()
        }
        with (
            ControlPlane(tools=self.tools, workdir=base / "cp", crds=False) as cp,
            SandboxThread(seed=upgrade_org(), cert_dir=base / "sandbox", log_size=200_000) as sb,
        ):
            cp.kubectl("create", "namespace", NAMESPACE)
            h = self.h = Harness(cp, NAMESPACE, sb, base)
            cp.kubectl("create", "configmap", CA_CONFIGMAP, "-n", NAMESPACE, f"--from-file=ca.crt={sb.ca_path}")
            values = base / "values.yaml"
            values.write_text(yaml.safe_dump(chart_values(NAMESPACE)))
            self.kubelet = StandInKubelet(cp, NAMESPACE, fullname(RELEASE), runtimes, base, self.log)
            monitor = threading.Thread(target=self.monitor_loop, daemon=True)
            changes = threading.Thread(target=self.change_loop, daemon=True)
            try:
                report.update(self._run(cp, h, prev, values, new_tag, monitor, changes))
            finally:
                self.stop_changes.set()
                self.stop_monitor.set()
                if monitor.is_alive():
                    monitor.join()
                if changes.is_alive():
                    changes.join()
                self.kubelet.close()
                report["pods"] = [p.summary() for p in self.kubelet.pods]
                h.api.close()
        return report

    def _run(
        self,
        cp: Any,
        h: Harness,
        prev: Path,
        values: Path,
        new_tag: str,
        monitor: threading.Thread,
        changes: threading.Thread,
    ) -> dict[str, Any]:
        assert self.kubelet is not None
        cfg = self.cfg
        out: dict[str, Any] = {}
        # 1. The previous release: its chart, CRDs included (helm installs crds/ on install).
        self.mark("helm install (previous release)")
        cp.helm("install", RELEASE, str(prev / "charts" / "synapse-scim"), "-n", NAMESPACE, "-f", str(values))
        out["installed_crds_match_previous"] = self.crds_match(prev / "crds")
        self.kubelet.sync()
        monitor.start()
        for u in USERS:
            self.ids[u] = h.user_id(u)
        for role_id in ROLES.values():
            for u in USERS:
                key = (role_id, self.ids[u], SCOPE)
                self.by_assignment_id[assignment_id(Grant(*key)).lower()] = key
        for role, user in MANUAL:
            a = h.sb.admin.add_assignment(
                "analytics", role, self.ids[user], id=str(uuid.UUID(int=self.rng.getrandbits(128)))
            )
            self.manual[a["id"].lower()] = (a["roleDefinitionId"], a["principalId"].lower(), a["scope"])
        self.record(time.time())
        h.workspace(syncInterval=f"{cfg.sync_interval:g}s", removalGuard={"maxRemovals": 1000, "maxPercent": 100})
        for name, (role, groups) in BINDINGS.items():
            h.binding(name, [role], [{"kind": "Group", "name": g} for g in groups])
        out["first_convergence_s"] = self.await_convergence("after the install", 120.0)
        self.mark("changes flowing")
        changes.start()
        self.wait_changes(cfg.changes_before)  # the previous release at work while the directory changes
        # 2. The upgrade: the new CRDs first (the old pods keep running with them), then the chart with
        # the new image tag (helm upgrade does not touch crds/), then the rollout.
        # What `--reuse-values` (the README's SCIM step uses it) and `--reset-then-reuse-values` would do,
        # without -f: dry runs, recorded.
        for flag in ("--reuse-values", "--reset-then-reuse-values"):
            probe = cp.helm(
                "upgrade",
                RELEASE,
                str(REPO / "charts" / "synapse-scim"),
                "-n",
                NAMESPACE,
                flag,
                "--set",
                f"image.tag={new_tag}",
                "--dry-run",
                check=False,
            )
            out[flag.strip("-").replace("-", "_") + "_dry_run"] = {
                "exit": probe.returncode,
                "stderr": probe.stderr.strip()[-600:],
            }
        out["changed_crd_apply_dry_run"] = self.changed_crd_dry_runs(cp, h.tmp)
        self.mark("CRDs re-applied")
        # --force-conflicts: Helm created the CRDs (field manager "helm"); a server-side apply that changes a
        # field of theirs is refused as a conflict without it (once CRDs differ between releases).
        applied = cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        self.mark("helm upgrade")
        cp.helm(
            "upgrade",
            RELEASE,
            str(REPO / "charts" / "synapse-scim"),
            "-n",
            NAMESPACE,
            "-f",
            str(values),
            "--set",
            f"image.tag={new_tag}",
        )
        out["crds_apply"] = applied.stdout.strip().splitlines()
        out["deployment_image"] = self.kubelet.read().spec.template.spec.containers[0].image

        def between(step: int) -> None:
            if step == 1:
                # A binding made while the Lease moves from the previous release to this one.
                name, (role, groups) = LATE_BINDING
                self.bindings[name] = (role, groups)
                self.record(time.time())
                h.binding(name, [role], [{"kind": "Group", "name": g} for g in groups])
                self.wait_changes(cfg.changes_during)  # a new pod and an old one side by side, under changes

        self.mark("rollout")
        out["rollout"] = self.kubelet.roll(between)
        self.kubelet.wait_stopped()
        self.mark("rollout done")
        # The new release takes the Lease (changes still flowing), then leads through a few more changes.
        new_pods = {p.name for p in self.kubelet.live()}
        out["new_leader_after_rollout_s"] = self.await_new_leader(new_pods, timeout=60.0)
        self.mark("new release leads")
        self.wait_changes(cfg.changes_after)
        self.stop_changes.set()
        changes.join()
        self.mark("last change")
        out["convergence_after_upgrade_s"] = self.await_convergence(
            "after the rollout and the last change", 2 * cfg.sync_interval
        )
        self.mark("converged")
        # From the last change itself (the changes stop up to change_every after it).
        out["converged_after_last_change_s"] = round(self.marks["converged"] - self.states[-1][0], 2)
        self.stop_monitor.set()
        monitor.join()
        self.drain_requests()
        self.check_assignments()
        for name in self.bindings:
            if h.get(RB_PLURAL, name) is None:
                self.violation(f"binding {name} lost")
        last = self.samples[-1]
        out["leader_at_end"] = {"lease_holder": last.holder, "metrics_leaders": last.leaders}
        out["leader_at_end_is_a_new_pod"] = last.holder in new_pods and last.leaders == [last.holder]
        out["crds_match_this_checkout"] = self.crds_match(REPO / "crds")
        first_leader = next((s.t for s in self.samples if s.leaders), self.marks["rollout"])
        out["leadership_whole_run"] = leaderless(self.samples, first_leader, self.marks["converged"])
        out["leadership_rollout"] = leaderless(self.samples, self.marks["rollout"], self.marks["new release leads"])
        out["leadership_transitions"] = transitions(self.samples, self.marks["helm install (previous release)"])
        return out

    def changed_crd_dry_runs(self, cp: Any, tmp: Path) -> dict[str, Any]:
        """Why --force-conflicts: this checkout's SynapseWorkspace CRD with one description changed (as a
        release that changes its CRDs would), applied server-side as a server dry run, without and with
        it. The CRDs of this release and the previous one are the same, so the real apply proves nothing
        about conflicts; nothing is changed here."""
        crd = yaml.safe_load((REPO / "crds" / "synapse-scim.io_synapseworkspaces.yaml").read_text())
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] += " (changed)"
        path = tmp / "changed-crd.yaml"
        path.write_text(yaml.safe_dump(crd))
        result = {}
        for name, flags in (("without_force", []), ("with_force_conflicts", ["--force-conflicts"])):
            done = cp.kubectl("apply", "--server-side", *flags, "--dry-run=server", "-f", str(path), check=False)
            result[name] = {"exit": done.returncode, "stderr": (done.stderr.strip().splitlines() or [""])[0]}
        return result

    def crds_match(self, directory: Path) -> bool:
        """Whether every CRD of `directory` is in the API server with the same spec.versions (schemas,
        printer columns, subresources) and names."""
        assert self.h is not None
        ext = client.ApiextensionsV1Api(self.h.api)
        for path in sorted(directory.glob("*.yaml")):
            want = yaml.safe_load(path.read_text())
            # Raw JSON: the client's models drop the fields they do not know.
            raw = ext.read_custom_resource_definition(want["metadata"]["name"], _preload_content=False)
            got = json.loads(raw.data)
            for v_want, v_got in zip(want["spec"]["versions"], got["spec"]["versions"], strict=True):
                if v_want["schema"] != v_got["schema"] or v_want["name"] != v_got["name"]:
                    return False
        return True

    def summary_counts(self) -> dict[str, Any]:
        return {
            "azure_requests": sum(self.requests.values()),
            "azure_requests_by_service": dict(self.requests),
            "statuses": dict(self.statuses),
            "errors": len(self.errors),
            "creates_answered_409_already_exists": self.conflicts,
            "error_samples": self.errors[:20],
            "creates": self.creates,
            "deletes": self.deletes,
            "deletes_racing_a_change": self.deletes_racing,
            "directory_changes": sum(self.changes.values()),
            "directory_changes_by_kind": dict(self.changes),
            "violations": self.violations,
            "marks": {k: round(v - self.marks["helm install (previous release)"], 2) for k, v in self.marks.items()},
        }


def markdown(report: dict[str, Any]) -> str:
    c, lw, lr = report["counts"], report["leadership_whole_run"], report["leadership_rollout"]
    m, prev, end = report["machine"], report["previous"], report["leader_at_end"]

    def dry_run_exit(probe: dict[str, Any]) -> str:
        return "applies" if probe["exit"] == 0 else "refused: " + probe["stderr"]

    def dry_run(key: str) -> str:
        probe = report.get(key) or {"exit": None, "stderr": "not tried"}
        return "works" if probe["exit"] == 0 else "fails: " + (probe["stderr"].splitlines() or [""])[-1]

    rows = [
        ("Azure requests served (login, Graph, Synapse)", f"{c['azure_requests']} {c['azure_requests_by_service']}"),
        ("errors (non-2xx answers; none injected)", c["errors"]),
        ("creates answered 409 RoleAssignmentAlreadyExists (adopted)", c["creates_answered_409_already_exists"]),
        ("assignments created / deleted", f"{c['creates']} / {c['deletes']}"),
        ("deletes racing a directory change (allowed)", c["deletes_racing_a_change"]),
        ("directory changes during the run", f"{c['directory_changes']} {c['directory_changes_by_kind']}"),
        (
            "time without a leader, rollout until a new pod leads (pods' /metrics)",
            f"{lr['without_leader_s']} s (longest {lr['longest_without_leader_s']} s)",
        ),
        (
            "time the Lease was not held by a leading pod, rollout",
            f"{lr['lease_not_held_by_a_leading_pod_s']} s (longest {lr['longest_lease_gap_s']} s)",
        ),
        ("time without a leader, whole run after the first leader", f"{lw['without_leader_s']} s"),
        ("samples with two pods reporting leader", f"{lw['samples_with_two_leaders']} of {lw['samples']}"),
        (
            f"convergence after the rollout and the last change (limit 2 x {report['config']['sync_interval']:g} s)",
            f"{report['converged_after_last_change_s']} s after the last change "
            f"({report['convergence_after_upgrade_s']} s after the changes stopped)",
        ),
        ("a new pod leading after the last old pod stopped", f"{report['new_leader_after_rollout_s']} s"),
        ("leader at the end", f"{end['lease_holder']} (a new pod: {report['leader_at_end_is_a_new_pod']})"),
        (
            "CRDs in the API server = this checkout's",
            f"{report['crds_match_this_checkout']} (changed since {prev}: {report['crds_changed_since_previous']})",
        ),
        ("first convergence after the install (previous release)", f"{report['first_convergence_s']} s"),
        ("`helm upgrade --reuse-values` (dry run, no -f)", dry_run("reuse_values_dry_run")),
        ("`helm upgrade --reset-then-reuse-values` (dry run, no -f)", dry_run("reset_then_reuse_values_dry_run")),
        (
            "a changed CRD applied server-side over Helm's (dry run): without / with --force-conflicts",
            f"{dry_run_exit(report['changed_crd_apply_dry_run']['without_force'])} / "
            f"{dry_run_exit(report['changed_crd_apply_dry_run']['with_force_conflicts'])}",
        ),
        ("violations", len(c["violations"])),
    ]
    lines = [
        f"# Operator upgrade with two replicas ({report['date']})",
        "",
        f"Previous release {prev} (chart and code) -> this checkout {report['source']} (chart, image tag "
        f"`{report['new_image_tag']}`), CRDs re-applied with `kubectl apply --server-side --force-conflicts`.",
        f"Machine: {m['cpus']} CPUs {m['cpu']}, load {m['load_average']}. Command: `{report['command']}`",
        "",
        "The pods ran as processes started by a stand-in kubelet (the local control plane has none): each "
        "pod's args, env and ServiceAccount come from the Deployment in the API server; the image tag picks the code.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "## Pods",
        "",
        "| pod | code | ready after | SIGTERM after (by) | stopped in | exit | acquired / released Lease | ERRORs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in report["pods"]:
        lines.append(
            f"| {p['name']} | {p['code']} | {p['ready_after_s']} s | {p['sigterm_after_s']} s ({p['stopped_by']}) | "
            f"{p['stopped_in_s']} s | "
            f"{p['exit_code']} | {p['acquired_lease']} / {p['released_lease']} | {len(p['error_lines'])} |"
        )
    lines += ["", "## Timeline (seconds after `helm install`)", ""]
    lines += [f"- {k}: {v}" for k, v in c["marks"].items()]
    lines += ["", "## Leadership (Lease holder, pods whose /metrics say leader 1)", ""]
    lines += [f"- {t['t']} s: {t['lease_holder']} {t['metrics_leaders']}" for t in report["leadership_transitions"]]
    if report.get("image_build"):
        b = report["image_build"]
        lines += [
            "",
            f"Image built: {b.get('IMAGE')} id {b.get('IMAGE_ID')} in {b.get('WALL_SECONDS')} s "
            "(the pods still ran as processes).",
        ]
    if c["violations"]:
        lines += ["", "## Violations", "", *[f"- {v}" for v in c["violations"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes-before", type=int, default=40, help="directory changes before the upgrade")
    ap.add_argument("--changes-during", type=int, default=20, help="... and after the rollout's first step")
    ap.add_argument("--changes-after", type=int, default=10, help="... and once a new pod leads")
    ap.add_argument("--sync-interval", type=float, default=30.0)
    ap.add_argument("--change-every", type=float, default=1.5)
    ap.add_argument("--race-window", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build-image", action="store_true", help="hack/build-image.sh under the new tag first")
    ap.add_argument("--tag", default="", help="the new image tag (default 0.1.0-<commit>)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    from synapse_scim_sandbox.devcluster import find_tools

    if not previous_available():
        print(f"upgrade: commit {PREVIOUS} not in this checkout (shallow clone?)", file=sys.stderr)
        return 2
    cfg = UpgradeConfig(
        changes_before=args.changes_before,
        changes_during=args.changes_during,
        changes_after=args.changes_after,
        sync_interval=args.sync_interval,
        change_every=args.change_every,
        race_window=args.race_window,
        seed=args.seed,
        build_image=args.build_image,
        new_tag=args.tag,
    )
    started = time.time()
    run = UpgradeRun(find_tools(), cfg)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "source": source_version(),
        "command": " ".join(["python bench/upgrade_run.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": {k: v for k, v in vars(cfg).items() if k != "workdir"},
        **run.run(),
    }
    report["counts"] = run.summary_counts()
    report["wall_s"] = round(time.time() - started, 1)
    stem = write_results(args.out, "upgrade", report, markdown(report))
    print(markdown(report))
    print(f"wrote {stem}.json and .md")
    return 1 if run.violations else 0


if __name__ == "__main__":
    sys.exit(main())
