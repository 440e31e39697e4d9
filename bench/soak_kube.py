"""The soak's Kubernetes side (bench/soak.py): replicas under leader election, faults of the control plane,
and the Lease's history that proves who wrote what.

- `Replicas`: N `synapse-scim run` processes with leader election on (the chart's production mode), each
  named by POD_NAME (which its Synapse requests carry in their user agent), with its own metrics and SCIM
  ports; killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT), restarted as a kubelet would.
- `KubeFaults`: episodes against the real control plane, each in a thread of its own so that the soak
  keeps acting meanwhile: the API server SIGKILLed and restarted, the API server paused (SIGSTOP) for a
  while, etcd SIGKILLed and restarted, and etcd compacted then the API server restarted so that every
  watch resumed from an older resourceVersion ends with 410 Gone.
- `LeaseTimeline`: the Lease polled every 0.25 s (holder, acquire and renew times): which replica held it
  when, how long no live replica led, and whether any Synapse write (the sandbox's request log) came from
  a replica that did not hold the Lease when it arrived.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

LEASE = "synapse-scim"


@dataclass
class Episode:
    """One fault: what, when (wall clock), how long, and how long until the operator acted again."""

    kind: str
    started: float
    ended: float | None = None
    recovered: float | None = None  # wall clock
    detail: str = ""
    # A leader's kill or pause is measured from its start (the takeover); the others from their end.
    from_start: bool = False

    @property
    def recovery_s(self) -> float | None:
        since = self.started if self.from_start else self.ended
        if self.recovered is None or since is None:
            return None
        return round(max(0.0, self.recovered - since), 2)

    def row(self, t0: float) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at_s": round(self.started - t0, 1),
            "lasted_s": round(self.ended - self.started, 1) if self.ended is not None else None,
            "recovery_s": self.recovery_s,
            "detail": self.detail,
        }


class Replicas:
    """The operator's replicas, as processes the soak owns."""

    def __init__(self, h: Any, names: list[str], env: Callable[[str], dict[str, str]]) -> None:
        self.h, self.names, self.env = h, names, env
        self.procs: dict[str, subprocess.Popen[bytes] | None] = dict.fromkeys(names)
        self.paused: dict[str, float] = {}  # name -> when to resume (monotonic)
        self.lease_lost_exits = 0

    def start(self, name: str) -> None:
        self.h.log_path = self.h.tmp / f"operator-{name}.log"
        self.h.start_operator(**self.env(name))
        self.procs[name], self.h.operator = self.h.operator, None

    def alive(self, name: str) -> bool:
        proc = self.procs[name]
        return proc is not None and proc.poll() is None

    def kill(self, name: str) -> bool:
        proc = self.procs[name]
        if proc is None or proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.paused.pop(name, None)
        return True

    def pause(self, name: str, until: float) -> None:
        proc = self.procs[name]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGSTOP)
            self.paused[name] = until

    def resume_due(self, now: float) -> list[str]:
        due = [n for n, at in self.paused.items() if now >= at]
        for name in due:
            del self.paused[name]
            proc = self.procs[name]
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        return due

    def exited(self) -> list[tuple[str, int]]:
        """Replicas that ended (name, return code); forgotten, so that `start` brings them back."""
        out = []
        for name, proc in self.procs.items():
            if proc is not None and proc.poll() is not None:
                out.append((name, proc.returncode))
                self.procs[name] = None
        return out

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc is None:
                continue
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.procs[name] = None

    def logs(self) -> dict[str, str]:
        return {n: (self.h.tmp / f"operator-{n}.log").read_text(errors="replace") for n in self.names}


@dataclass
class Sample:
    at: float  # wall clock
    holder: str | None
    acquired: float | None
    renewed: float | None
    duration: float


@dataclass
class LeaseTimeline:
    """The Lease as polled; what the write proof and the leaderless time are computed from."""

    coordination: client.CoordinationV1Api
    namespace: str
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="lease-timeline", daemon=True)

    def start(self) -> LeaseTimeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            try:
                lease = self.coordination.read_namespaced_lease(LEASE, self.namespace, _request_timeout=2)
            except Exception:  # the API server down or paused: no sample
                self.errors += 1
                continue
            spec = lease.spec
            self.samples.append(
                Sample(
                    time.time(),
                    spec.holder_identity,
                    _ts(spec.acquire_time),
                    _ts(spec.renew_time),
                    float(spec.lease_duration_seconds or 15),
                )
            )

    def current(self) -> str | None:
        return self.samples[-1].holder if self.samples else None

    def acquisitions(self) -> list[tuple[float, str]]:
        """(acquire time, holder) of every tenure seen, in order."""
        out: list[tuple[float, str]] = []
        for s in self.samples:
            if s.holder and s.acquired is not None and (not out or out[-1] != (s.acquired, s.holder)):
                out.append((s.acquired, s.holder))
        return sorted(set(out))

    def renewals(self, holder: str) -> list[float]:
        return sorted({s.renewed for s in self.samples if s.holder == holder and s.renewed is not None})

    def check_writes(self, writes: list[dict[str, Any]]) -> list[str]:
        """Every Synapse write (PUT or DELETE, from the sandbox's request log) must come from the replica
        that held the Lease when the write arrived, within the lease duration of its last renewal."""
        tenures = self.acquisitions()
        out = []
        for e in writes:
            replica = replica_of(e)
            if replica is None:
                out.append(f"a write without a replica's name: {e['method']} {e['path']}")
                continue
            arrived = e["time"] - e.get("duration_ms", 0) / 1000
            held = [h for a, h in tenures if a <= arrived]
            holder = held[-1] if held else None
            if holder != replica:
                out.append(
                    f"{replica} wrote {e['method']} {e['path']} ({e['status']}) at {arrived:.3f} while "
                    f"{holder} held the Lease"
                )
                continue
            renewed = [r for r in self.renewals(replica) if r <= arrived]
            duration = max((s.duration for s in self.samples), default=15.0)
            if renewed and arrived > renewed[-1] + duration:
                out.append(
                    f"{replica} wrote {e['method']} {e['path']} at {arrived:.3f}, {arrived - renewed[-1]:.1f} s "
                    "after its last renewal: its Lease had expired"
                )
        return out

    def leaderless(self, alive: Callable[[str, float], bool] | None = None) -> tuple[float, float]:
        """(total, longest) seconds in which no sample showed a holder whose Lease was current."""
        total = longest = run = 0.0
        prev: Sample | None = None
        for s in self.samples:
            led = bool(s.holder) and s.renewed is not None and s.at <= s.renewed + s.duration
            if prev is not None:
                gap = s.at - prev.at
                if not led:
                    run += gap
                    total += gap
                    longest = max(longest, run)
                else:
                    run = 0.0
            prev = s
        return round(total, 1), round(longest, 1)


def replica_of(entry: dict[str, Any]) -> str | None:
    agent = (entry.get("headers") or {}).get("user-agent", "")
    for part in agent.split():
        if part.startswith("pod/"):
            return part[4:]
    return None


def _ts(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class KubeFaults:
    """Faults of the control plane (a devcluster ControlPlane), one episode at a time, each in a thread."""

    KINDS = ("apiserver_kill", "apiserver_pause", "etcd_kill", "watch_expired")

    def __init__(self, cluster: Any, rng: Any, pause: tuple[float, float] = (30.0, 60.0), log: Any = print) -> None:
        self.cluster, self.rng, self.pause_range, self.log = cluster, rng, pause, log
        self.episodes: list[Episode] = []
        self.errors: list[str] = []
        self._queue: queue.Queue[tuple[Episode, float]] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        # One worker that never ends: the control plane's processes are started with PR_SET_PDEATHSIG,
        # which fires when the *thread* that started them ends, so a thread per episode would kill the
        # API server it had just restarted.
        threading.Thread(target=self._work, name="kube-faults", daemon=True).start()

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def start(self, kind: str | None = None) -> Episode:
        if kind is None:  # every kind once first (in a random order), then at random
            unused = [k for k in self.KINDS if not any(e.kind == k for e in self.episodes)]
            kind = self.rng.choice(unused or list(self.KINDS))
        # Drawn here, from the soak's RNG, so that a seed replays the same faults.
        hold = self.rng.uniform(*self.pause_range) if kind == "apiserver_pause" else self.rng.uniform(0.5, 5.0)
        episode = Episode(kind, time.time())
        self.episodes.append(episode)
        self._idle.clear()
        self._queue.put((episode, hold))
        return episode

    def wait(self, timeout: float = 180.0) -> None:
        self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            episode, hold = self._queue.get()
            try:
                self._run(episode, hold)
            finally:
                if self._queue.empty():
                    self._idle.set()

    def _run(self, episode: Episode, hold: float) -> None:
        cp = self.cluster
        try:
            if episode.kind == "apiserver_kill":
                cp.kill("kube-apiserver")
                time.sleep(hold)
                cp.restart("kube-apiserver")
            elif episode.kind == "apiserver_pause":
                cp.pause("kube-apiserver")
                time.sleep(hold)
                cp.resume("kube-apiserver")
            elif episode.kind == "etcd_kill":
                cp.kill("etcd")
                time.sleep(hold)
                cp.restart("etcd")
            elif episode.kind == "watch_expired":
                revision = cp.compact_etcd()
                cp.kill("kube-apiserver")
                cp.restart("kube-apiserver")
                episode.detail = f"etcd compacted at revision {revision}"
            episode.detail = episode.detail or f"{hold:.1f} s"
        except Exception as exc:  # reported: a fault that could not be made or undone
            self.errors.append(f"{episode.kind}: {exc!r}")
            self.log(f"soak: fault {episode.kind} failed: {exc!r}")
        finally:
            episode.ended = time.time()
