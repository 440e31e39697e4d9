"""What the plan/explain tests drive: the command as its own process (real exit codes, stdout and stderr,
environment of its own) and golden outputs under tests/cli/golden (SYNAPSE_SCIM_UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synapse_scim_sandbox import SandboxThread

GOLDEN = Path(__file__).parent / "golden"


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class Cli:
    def __init__(self, sb: SandboxThread, cwd: Path) -> None:
        self.sb = sb
        self.cwd = cwd

    def env(self, identity: bool = True) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AZURE_") and k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "KUBECONFIG")
        }
        env["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] = str(self.sb.ca_path)
        if identity:  # the SDKs' default chain: EnvironmentCredential
            app = self.sb.client("synapse-scim-operator")
            env.update(AZURE_CLIENT_ID=app.client_id, AZURE_CLIENT_SECRET=app.secret, AZURE_TENANT_ID=self.sb.tenant_id)
        return env

    def __call__(self, *args: str, identity: bool = True, **popen: Any) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "synapse_scim.cli", *args],
            cwd=self.cwd,
            env=self.env(identity),
            capture_output=True,
            text=True,
            timeout=120,
            **popen,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_golden(name: str, text: str, replace: dict[str, str] | None = None) -> None:
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    path = GOLDEN / name
    if os.environ.get("SYNAPSE_SCIM_UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run with SYNAPSE_SCIM_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"output differs from {path} (SYNAPSE_SCIM_UPDATE_GOLDEN=1 rewrites it)"


def writes(sb: SandboxThread) -> dict[str, int]:
    """Requests that would change a workspace (any status)."""
    return {k: v for k, v in sb.admin.counters().items() if "createRoleAssignment" in k or "deleteRoleAssignment" in k}
