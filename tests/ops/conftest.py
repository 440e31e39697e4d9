"""Fixtures of the ops layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitops import build


@pytest.fixture(scope="session")
def gitops_tool() -> Path:
    """hack/gitops-health: kstatus (Flux) and the Argo CD health Lua under gopher-lua, built from the
    Go module proxy once and cached (hack/build-gitops-health.sh)."""
    return build()
