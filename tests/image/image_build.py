"""The image under test: what hack/build-image.sh reports, and buildah with the build's storage driver."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-image.sh"


@dataclass
class Image:
    name: str
    id: str
    size: str
    size_bytes: int
    storage_driver: str
    info: dict[str, str]
    inspect: dict[str, Any] = field(repr=False)

    @property
    def config(self) -> dict[str, Any]:
        return self.inspect["OCIv1"]["config"]

    def buildah(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "STORAGE_DRIVER": self.storage_driver}
        return subprocess.run(["buildah", *args], env=env, capture_output=True, text=True, check=check, timeout=timeout)

    def container(self) -> str:
        name = f"synapse-scim-test-{uuid.uuid4().hex[:8]}"
        self.buildah("from", "--pull=never", "--name", name, self.name)
        return name

    def remove(self, container: str) -> None:
        self.buildah("rm", container, check=False)
