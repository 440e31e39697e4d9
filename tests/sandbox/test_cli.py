"""`synapse-scim sandbox` as a separate process: start, read the printed endpoints and env file, call the
services with the SDKs, stop with SIGINT / SIGTERM, exit cleanly."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential
from azure.synapse.accesscontrol import AccessControlClient

from synapse_scim_sandbox import SyncAdminClient

from .conftest import ORG


class Process:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse_scim_sandbox.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def read_until(self, predicate: object, timeout: float = 60) -> list[str]:
        out: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"exited early: {out} {self.proc.stderr.read() if self.proc.stderr else ''}")
            out.append(line)
            if predicate(line):  # type: ignore[operator]
                return out

    def stop(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        return rc, self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def run() -> Iterator[type[Process]]:
    started: list[Process] = []

    class Tracked(Process):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
        for stream in (p.proc.stdout, p.proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_text_output_env_file_and_sigint(run: type[Process], tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    p = run(
        "sandbox",
        "--seed",
        str(ORG),
        "--cert-dir",
        str(tmp_path / "certs"),
        "--env-file",
        str(env_file),
        "--page-size",
        "1",
        "--latency-graph",
        "5",
    )
    lines = p.read_until(lambda line: line == "sandbox ready")
    text = "\n".join(lines)
    assert "authority host   https://127.0.0.1:" in text and "workspace        analytics: https://" in text
    assert "secret=sandbox-operator-secret" in text
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert Path(env["SSL_CERT_FILE"]) == tmp_path / "certs" / "ca.pem" == Path(env["REQUESTS_CA_BUNDLE"])
    # The operator's own setting for a private Azure CA (adapters/credentials.py: azure_ca_bundle), so
    # that `synapse-scim run` with this env file sourced trusts the sandbox.
    assert Path(env["SYNAPSE_SCIM_AZURE_CA_BUNDLE"]) == tmp_path / "certs" / "ca.pem"
    cred = ClientSecretCredential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=env["AZURE_AUTHORITY_HOST"],
        connection_verify=env["SSL_CERT_FILE"],
        disable_instance_discovery=True,
    )
    with (
        cred,
        AccessControlClient(
            cred, env["SYNAPSE_SCIM_WORKSPACE_ANALYTICS"], connection_verify=env["SSL_CERT_FILE"]
        ) as client,
    ):
        page = client.role_assignments.list_role_assignments()
        assert page.count == 1  # --page-size 1
    admin = SyncAdminClient(env["SYNAPSE_SCIM_SANDBOX_ADMIN_URL"], env["SSL_CERT_FILE"])
    assert admin.counters()["synapse.listRoleAssignments.200"] == 1
    rc, stderr = p.stop(signal.SIGINT)
    assert rc == 0 and "sandbox stopped" in stderr and "Traceback" not in stderr


def test_cli_json_and_sigterm(run: type[Process], tmp_path: Path) -> None:
    p = run("--seed", str(ORG), "--json", "--ports", "graph=0", "--cert-dir", str(tmp_path))
    info = json.loads(p.read_until(lambda line: line.startswith("{"))[-1])
    assert info["graph_url"].endswith("/v1.0") and info["workspaces"]["analytics"].startswith("https://127.0.0.1:")
    assert info["env"]["AZURE_CLIENT_SECRET"] == "sandbox-operator-secret"
    assert Path(info["ca_path"]).exists()
    assert info["env"]["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] == info["ca_path"]
    rc, stderr = p.stop(signal.SIGTERM)
    assert rc == 0 and "Traceback" not in stderr


def test_cli_bad_seed_names_the_line(tmp_path: Path) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text("users:\n  - upn: a@x.com\n    acountEnabled: false\n")
    result = subprocess.run(
        [sys.executable, "-m", "synapse_scim_sandbox.cli", "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{seed}:3: users[0].acountEnabled: unknown key" in result.stderr
