"""Fixtures for the high-availability tests: the e2e harness, running several operator replicas."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.harness import Harness, running_harness
from support.orgs import small_org
from synapse_scim_sandbox.devcluster import free_port


class ReplicaHarness(Harness):
    """The e2e harness with named operator replicas (`synapse-scim run` each, leader election on)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.replicas: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}

    def start_replica(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        self.log_path = self.logs[name] = self.tmp / f"operator-{name}.log"
        self.metrics_ports[name] = free_port()
        self.start_operator(
            SYNAPSE_SCIM_LEADER_ELECTION="on",
            POD_NAME=name,
            SYNAPSE_SCIM_METRICS_PORT=str(self.metrics_ports[name]),
            **env,
        )
        assert self.operator is not None
        self.replicas[name], self.operator = self.operator, None  # wait_for must not watch a single one
        return self.replicas[name]

    def replica_log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    def operator_log(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.replica_log(n)[-3000:]}" for n in self.logs)

    def stop_operator(self) -> None:
        for proc in self.replicas.values():
            self.operator = proc
            super().stop_operator()
        self.replicas.clear()


@pytest.fixture
def replicas(cluster, namespace, tmp_path, request) -> Iterator[ReplicaHarness]:
    with running_harness(cluster, namespace, small_org(), tmp_path, request, cls=ReplicaHarness) as h:
        yield h
