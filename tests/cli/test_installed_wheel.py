"""`plan` from a built wheel in a fresh virtual environment: what a GitOps pipeline that `pip install`s
the tool gets. No checkout on sys.path, so the CRDs must come from the package, and the development
distribution (the sandbox, the local control plane, the demo) and trustme must not come along."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import scenario
from cli_helpers import Cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the bin directory of a fresh venv with only that wheel and its dependencies)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out / "dist"), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = (out / "dist").glob("synapse_scim-*.whl")
    venv.EnvBuilder(with_pip=True).create(out / "venv")
    bin_dir = out / "venv" / "bin"
    subprocess.run([bin_dir / "pip", "install", "--quiet", str(wheel)], check=True, timeout=900)
    yield wheel, bin_dir


def test_the_wheel_carries_the_crds_and_nothing_of_the_sandbox(wheel_env: tuple[Path, Path]) -> None:
    wheel, _ = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    crds = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("synapse_scim/crds/") and n.endswith(".yaml"))
    assert crds == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert not [n for n in names if "sandbox" in n or "devcluster" in n or n.endswith("/demo.py")]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if line.startswith("Requires-Dist")
    ]
    assert requires and not [r for r in requires if "trustme" in r and "extra ==" not in r], requires


def test_plan_from_the_wheel_matches_the_checkout(wheel_env: tuple[Path, Path], cli: Cli, repo: Path) -> None:
    _, bin_dir = wheel_env
    args = ("plan", "-f", "repo", "-n", scenario.NS)
    installed = subprocess.run(
        [bin_dir / "synapse-scim", *args], cwd=cli.cwd, env=cli.env(), capture_output=True, text=True, timeout=120
    )
    checkout = cli(*args)
    assert "cannot find the CRDs" not in installed.stderr
    assert installed.returncode == 2, installed.stderr  # changes to make, as in tests/cli/test_plan.py
    assert (installed.returncode, installed.stdout) == (checkout.rc, checkout.stdout)


def test_the_development_tools_are_not_installed(wheel_env: tuple[Path, Path]) -> None:
    _, bin_dir = wheel_env
    for module in ("synapse_scim_sandbox", "trustme"):
        probe = subprocess.run([bin_dir / "python", "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr, (module, probe.stderr)
    usage = subprocess.run([bin_dir / "synapse-scim", "sandbox"], capture_output=True, text=True)
    assert usage.returncode == 2 and "invalid choice: 'sandbox'" in usage.stderr, usage.stderr
