"""Fixtures for `synapse-scim plan` / `explain`: the sandbox seeded with tests/cli/scenario.py, a GitOps
repository of manifests pointed at it, and the command runner (cli_helpers.Cli)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import scenario
from cli_helpers import Cli

from synapse_scim_sandbox import SandboxThread


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[SandboxThread]:
    with SandboxThread(seed=scenario.org(), cert_dir=tmp_path / "sandbox") as sandbox:
        scenario.seed_history(sandbox)
        yield sandbox


@pytest.fixture
def repo(sb: SandboxThread, tmp_path: Path) -> Path:
    return scenario.write_repo(sb, tmp_path)


@pytest.fixture
def cli(sb: SandboxThread, tmp_path: Path) -> Cli:
    return Cli(sb, tmp_path)
