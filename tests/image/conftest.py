"""The operator's container image, built once per session by hack/build-image.sh (buildah, no Docker).

- `image` (session): the build's facts (name, id, size, storage driver) and its OCI config.
- `rootfs` (session): the image's root filesystem, mounted read-write from a throwaway working
  container (tests only read it).
- `image_harness`: the end-to-end Harness (support.harness) with a fresh sandbox, for the image's
  operator.

Needs root (rootful buildah storage, debootstrap). SYNAPSE_SCIM_SKIP_IMAGE=1 skips these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_build import BUILD_SCRIPT, Image

from support.harness import Harness, running_harness
from support.orgs import small_org


def _skip_reason() -> str | None:
    if os.environ.get("SYNAPSE_SCIM_SKIP_IMAGE", "").lower() in ("1", "true", "yes"):
        return "SYNAPSE_SCIM_SKIP_IMAGE is set"
    if os.geteuid() != 0:
        return "building the image needs root (rootful buildah, debootstrap)"
    return None


@pytest.fixture(scope="session")
def image() -> Image:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"hack/build-image.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}", pytrace=False)
    info = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    info = {k: v.strip("'") for k, v in info.items()}
    print(
        f"\nimage {info['IMAGE']} id {info['IMAGE_ID'][:12]} size {info['SIZE']} ({info['SIZE_BYTES']} bytes), "
        f"storage {info['STORAGE_DRIVER']}, base {info['BASE_SECONDS']}s + bud {info['BUILD_SECONDS']}s"
    )
    img = Image(
        name=info["IMAGE"],
        id=info["IMAGE_ID"],
        size=info["SIZE"],
        size_bytes=int(info["SIZE_BYTES"]),
        storage_driver=info["STORAGE_DRIVER"],
        info=info,
        inspect={},
    )
    img.inspect = json.loads(img.buildah("inspect", "--type", "image", img.name).stdout)
    return img


@pytest.fixture(scope="session")
def container(image: Image) -> Iterator[str]:
    """A working container of the image, for `buildah run` and `buildah mount` (never written to)."""
    name = image.container()
    try:
        yield name
    finally:
        image.remove(name)


@pytest.fixture(scope="session")
def rootfs(image: Image, container: str) -> Path:
    return Path(image.buildah("mount", container).stdout.strip())


@pytest.fixture
def image_harness(cluster, namespace, tmp_path, request) -> Iterator[Harness]:
    with running_harness(cluster, namespace, small_org(), tmp_path, request) as h:
        yield h
