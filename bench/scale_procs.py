"""The processes the scale benchmark runs and watches: the sandbox (its own process, pinned to one CPU),
the operator (`synapse-scim run`, pinned to another), and what /proc and the API server's /metrics say
about them."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from scale_model import APP, Scenario, build_seed

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# What the API server writes itself (bootstrap objects, priority-and-fairness status, and its identity
# Lease, renewed every 10 s): not the operator's. Everything else written counts as the operator's
# (it and the benchmark share the admin identity, and the benchmark writes nothing during the window).
# An operator that wrote Leases would hide among the API server's renewals: the report lists them
# (about one per 10 s is the API server's own).
APISERVER_OWN = (
    "coordination.k8s.io/leases",
    "flowcontrol.apiserver.k8s.io/",
    "apiregistration.k8s.io/",
    "networking.k8s.io/",
    "rbac.authorization.k8s.io/",
    "scheduling.k8s.io/",
)


# ------------------------------------------------------------------------------------------ CPUs
def cpu_plan() -> tuple[int | None, int | None]:
    """(sandbox CPU, operator CPU): two different CPUs when there are two, else no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ------------------------------------------------------------------------------------------ sandbox
def _sandbox_main(
    scenario: Scenario | dict[str, Any],
    latency: dict[str, float],
    page_size: int,
    log_size: int,
    cert_dir: str,
    cpu: int | None,
    conn: Any,
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from synapse_scim_sandbox import Sandbox

    async def main() -> None:
        t0 = time.perf_counter()
        seed = scenario if isinstance(scenario, dict) else build_seed(scenario)
        sandbox = Sandbox(seed, cert_dir=Path(cert_dir), latency=latency, page_size=page_size, log_size=log_size)
        load_s = time.perf_counter() - t0
        gc.collect()
        gc.freeze()  # as the CLI does: the loaded organisation is never scanned by the cyclic GC again
        async with sandbox:
            app = sandbox.client(APP)
            conn.send(
                {
                    "pid": os.getpid(),
                    "admin_url": sandbox.admin_url,
                    "ca_path": str(sandbox.ca_path),
                    "tenant_id": sandbox.tenant_id,
                    "authority_host": sandbox.authority_host,
                    "graph_url": sandbox.graph_url,
                    "workspaces": {w: sandbox.workspace_endpoint(w) for w in sandbox.state.workspaces},
                    "client_id": app.client_id,
                    "secret": app.secret,
                    "load_s": round(load_s, 2),
                }
            )
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until "stop"

    asyncio.run(main())


class SandboxProcess:
    """The sandbox seeded with a scenario (or a seed of its own: a dict), in a child process (spawned:
    no state shared with us)."""

    def __init__(
        self,
        scenario: Scenario | dict[str, Any],
        *,
        latency: dict[str, float],
        cert_dir: Path,
        cpu: int | None,
        page_size: int = 100,
        log_size: int = 50_000,
    ) -> None:
        self.args = (scenario, latency, page_size, log_size, str(cert_dir), cpu)
        self.proc: Any = None
        self.conn: Any = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> SandboxProcess:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sandbox_main, args=(*self.args, child), daemon=True)
        self.proc.start()
        if not self.conn.poll(300):
            self.proc.kill()
            raise RuntimeError("the sandbox process did not start within 300 s")
        self.info = self.conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send("stop")
        except OSError:
            pass
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# ------------------------------------------------------------------------------------------ operator
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """`synapse-scim run` for one namespace, with the environment the e2e harness gives it."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        ca_path: str,
        namespace: str,
        log_path: Path,
        cpu: int | None,
        env: dict[str, str],
        profile: Path | None = None,
        tracemalloc: Path | None = None,
        tracemalloc_frames: int = 8,
    ) -> None:
        self.metrics_port = free_port()
        environment = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "SYNAPSE_SCIM_AZURE_CA_BUNDLE": ca_path,
            "SYNAPSE_SCIM_FINALIZER_WAIT": "20s",
            **env,
        }
        for var in (
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_TOKEN_CREDENTIALS",
        ):
            environment.pop(var, None)

        def setup() -> None:
            _die_with_parent()
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        self.log = open(log_path, "ab")  # owned by the operator process; closed in stop()
        self.started = time.time()
        self.profile = profile
        self.tracemalloc = tracemalloc
        self.snapshots = 0
        # cProfile writes its file when the operator exits, SIGTERM included (kopf exits normally on it).
        python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
        # Under tracemalloc the same CLI runs in bench/traced_operator.py's process (same arguments).
        cli = (
            [
                str(Path(__file__).with_name("traced_operator.py")),
                *("--out", str(tracemalloc), "--frames", str(tracemalloc_frames), "--"),
            ]
            if tracemalloc
            else ["-m", "synapse_scim.cli"]
        )
        self.proc = subprocess.Popen(
            [
                *python,
                *cli,
                "run",
                "--namespace",
                namespace,
                "--liveness",
                "",
                "--metrics-port",
                str(self.metrics_port),
            ],
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=setup,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metrics(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                return r.read().decode()
        except (urllib.error.URLError, OSError):
            return None

    def usage(self) -> dict[str, float]:
        """Peak resident memory so far (VmHWM, MB) and CPU seconds (user + system) of the process."""
        return {"peak_rss_mb": peak_rss_mb(self.pid), "cpu_s": cpu_seconds(self.pid)}

    def snapshot(self, timeout: float = 300.0) -> Path:
        """Ask a traced operator (tracemalloc=DIR) for a snapshot now (SIGUSR1); its file once written."""
        if self.tracemalloc is None:
            raise RuntimeError("the operator is not running under tracemalloc")
        self.snapshots += 1
        path = self.tracemalloc / f"usr1-{self.snapshots}.snap"
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists():  # renamed into place once complete
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"no tracemalloc snapshot {path.name} from the operator")
            time.sleep(0.1)
        return path

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                # A traced operator writes its exit snapshot first: seconds per million live blocks.
                self.proc.wait(timeout=300 if self.tracemalloc else 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def profile_summary(path: Path, top: int = 25) -> dict[str, Any]:
    """The functions with the most own time and the most cumulative time, as text (and the .txt next
    to the .prof file, for the closing note)."""
    import io
    import pstats

    out: dict[str, Any] = {"file": str(path)}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(path), stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        out[key] = buf.getvalue().split("\n", 4)[-1]  # without the header lines
    path.with_suffix(".txt").write_text(out["tottime"] + "\n\n" + out["cumulative"])
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def rss_mb(pid: int) -> float:
    """Resident memory now (VmRSS, MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


# ------------------------------------------------------------------------------------------ API server
def apiserver_writes(api: Any) -> Counter[str]:
    """apiserver_request_total of the write verbs, keyed "VERB group/resource[/subresource]"."""
    method, url, headers, body, post = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api.call_api(method, url, headers, body, post)
    response.read()
    text = response.data.decode()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "apiserver_request_total" or labels.get("verb") not in WRITE_VERBS:
                continue
            key = f"{labels['verb']} {labels.get('group', '')}/{labels.get('resource', '')}"
            if labels.get("subresource"):
                key += "/" + labels["subresource"]
            out[key] += int(sample.value)
    return out


def operator_writes(diff: Counter[str]) -> int:
    return sum(n for key, n in diff.items() if not any(r in key for r in APISERVER_OWN))


# ------------------------------------------------------------------------------------------ machine
def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        (
            int(line.split()[1]) // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        os_name = platform.system()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_mb": mem,
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        # The machine may be shared: other work running meanwhile shows here and skews every figure.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
