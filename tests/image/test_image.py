"""The container image: what it holds, who it runs as, that it runs on a read-only root, that the build's
certificate authority stayed out of it, and that its operator gets a binding Ready."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from image_build import ROOT, Image

UID = 10001
ENTRYPOINT = ["/opt/venv/bin/synapse-scim"]
CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
WRAPPER = Path(__file__).with_name("operator_in_image.py")
BUILD_CA = Path(os.environ.get("SYNAPSE_SCIM_BUILD_CA", "/etc/ssl/certs/ca-certificates.crt"))
PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
# Anything that compiles, or the headers to compile against.
BUILD_TOOLS = {
    "gcc",
    "gcc-12",
    "cpp",
    "cpp-12",
    "g++",
    "g++-12",
    "clang",
    "build-essential",
    "binutils",
    "libc6-dev",
    "linux-libc-dev",
    "python3-dev",
    "python3.11-dev",
    "libpython3.11-dev",
    "make",
}


def certs(data: bytes) -> set[bytes]:
    """The certificates of a PEM bundle, as their base64 bodies without line breaks."""
    return {b"".join(m.split()) for m in PEM.findall(data)}


def installed_packages(rootfs: Path) -> dict[str, str]:
    packages, name = {}, None
    for line in (rootfs / "var/lib/dpkg/status").read_text().splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Status: ") and name and line.endswith(" installed"):
            packages[name] = ""
        elif line.startswith("Version: ") and name in packages:
            packages[name] = line.split(": ", 1)[1]
    return packages


def test_image_is_built_from_the_local_bookworm_slim(image: Image, rootfs: Path):
    print(f"\nimage size: {image.size} ({image.size_bytes} bytes)")
    assert image.size_bytes < 900 * 1024 * 1024, f"image grew to {image.size}"
    os_release = (rootfs / "etc/os-release").read_text()
    assert "VERSION_CODENAME=bookworm" in os_release
    assert not any((rootfs / "usr/share/man").glob("*/*")), "slim: no man pages"
    labels = image.config["Labels"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.title"] == "synapse-scim"
    assert labels["org.opencontainers.image.base.name"] == "debian:bookworm-slim"
    assert image.name.endswith(f"synapse-scim:{version}")


def test_runs_as_10001_with_entrypoint_synapse_scim_and_cmd_run(image: Image, container: str):
    cfg = image.config
    assert cfg["User"] == f"{UID}:{UID}"
    assert cfg["Entrypoint"] == ENTRYPOINT
    assert cfg["Cmd"] == ["run"], "ENTRYPOINT + CMD = `synapse-scim run`; a pod's args replace CMD"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # `buildah run` runs as the configured user; it ignores ENTRYPOINT, so run it as a runtime would.
    ids = image.buildah("run", "--isolation", "chroot", container, "--", "sh", "-c", "id -u; id -g").stdout.split()
    assert ids == [str(UID), str(UID)]
    out = image.buildah("run", "--isolation", "chroot", container, "--", *cfg["Entrypoint"], *cfg["Cmd"], "--help")
    assert "usage: synapse-scim run" in out.stdout


def test_only_debians_python3_and_no_compilers(image: Image, rootfs: Path):
    packages = installed_packages(rootfs)
    assert packages["python3"].startswith("3.11"), "the venv's python links to bookworm's 3.11"
    assert not BUILD_TOOLS & packages.keys(), f"build tools in the image: {sorted(BUILD_TOOLS & packages.keys())}"
    assert "python3-venv" not in packages and "python3-pip" not in packages
    for path in ("usr/bin/gcc", "usr/bin/cc", "usr/bin/c++", "usr/bin/ld", "usr/include/python3.11/Python.h"):
        assert not (rootfs / path).exists(), path
    assert not list((rootfs / "usr/bin").glob("*-linux-gnu-gcc*"))
    assert os.readlink(rootfs / "opt/venv/bin/python3") == "/usr/bin/python3"
    assert os.readlink(rootfs / "usr/bin/python3") == "python3.11"
    assert not (rootfs / "opt/venv/bin/pip").exists(), "pip is only needed to build"


def test_the_build_ca_is_in_no_layer_and_the_bundle_is_debians(image: Image, rootfs: Path, tmp_path: Path):
    assert not (rootfs / "run/secrets").exists()
    debian = set()
    for crt in (rootfs / "usr/share/ca-certificates").rglob("*.crt"):
        debian |= certs(crt.read_bytes())
    bundle = certs((rootfs / "etc/ssl/certs/ca-certificates.crt").read_bytes())
    assert len(bundle) > 100 and bundle <= debian, "the image trusts Debian's certificates and no others"
    # What the build was handed beyond the public roots (this machine's own CA, if it has one) is in no
    # layer, nor in the image's config or history. Public roots: Debian's (the host's and the image's
    # package versions differ) and certifi's inside the image.
    public = debian | certs(b"".join(p.read_bytes() for p in (rootfs / "opt/venv").rglob("certifi/*.pem")))
    for crt in Path("/usr/share/ca-certificates").rglob("*.crt"):
        public |= certs(crt.read_bytes())
    extra = certs(BUILD_CA.read_bytes()) - public if BUILD_CA.exists() else set()
    print(f"\nbuild CA bundle {BUILD_CA}: {len(extra)} certificate(s) of this machine's own")
    assert not extra & bundle
    if not extra:
        return
    markers = {body[len(body) // 2 : len(body) // 2 + 48] for body in extra}
    out = tmp_path / "oci"
    image.buildah("push", "--disable-compression", "--quiet", image.name, f"dir:{out}", timeout=600)
    pattern = re.compile(b"|".join(re.escape(m) for m in markers))
    blobs = [p for p in out.iterdir() if p.is_file()]
    assert len(blobs) >= 3
    for blob in blobs:
        with blob.open("rb") as f:
            tail = b""
            while chunk := f.read(16 << 20):
                # Base64 lines of a PEM are 64 characters: a 48-character piece may span a line break.
                text = (tail + chunk).replace(b"\n", b"")
                assert not pattern.search(text), f"the build's CA is in {blob.name}"
                tail = chunk[-128:]


def test_help_and_imports_on_a_read_only_root(image: Image, rootfs: Path, tmp_path: Path):
    """As in a pod with readOnlyRootFilesystem: the image's root mounted read-only, a tmpfs on /tmp,
    uid 10001, the image's environment; all bytecode is already there."""
    env = image.config["Env"]
    check = (
        "import os, sys, kopf, msgraph, kubernetes.client\n"
        "import synapse_scim.controller.run, synapse_scim.controller.handlers\n"
        "mods = [m for m in list(sys.modules.values()) if (getattr(m, '__spec__', None) and m.__spec__.origin\n"
        "        and m.__spec__.origin.endswith('.py'))]\n"
        "missing = [m.__name__ for m in mods if not (m.__spec__.cached and os.path.exists(m.__spec__.cached))]\n"
        "print(len(mods), 'modules', missing[:5])\n"
        "sys.exit(1 if missing else 0)\n"
    )
    mnt = tmp_path / "root"
    mnt.mkdir()
    script = (
        f"set -e; mount --bind {shlex.quote(str(rootfs))} {mnt}; mount -o remount,bind,ro {mnt}\n"
        f"mount -t proc proc {mnt}/proc; mount --rbind /dev {mnt}/dev; mount -t tmpfs -o mode=1777 tmpfs {mnt}/tmp\n"
        f'exec chroot --userspec={UID}:{UID} {mnt} /usr/bin/env -i {" ".join(map(shlex.quote, env))} "$@"\n'
    )

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )

    probe = run("sh", "-c", "touch /opt/venv/probe")
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe
    ids = run("id", "-u")
    assert ids.stdout.strip() == str(UID), ids
    help_ = run(*image.config["Entrypoint"], "--help")
    assert help_.returncode == 0 and "usage: synapse-scim" in help_.stdout, help_
    imports = run("python3", "-c", check)
    assert imports.returncode == 0, imports
    print(f"\nread-only root: {imports.stdout.strip()}")


def test_only_the_product_is_in_the_image(image: Image, rootfs: Path):
    """The development distribution (sandbox emulators, devcluster, demo) and its trustme stay out."""
    site = next((rootfs / "opt/venv/lib").glob("python3*/site-packages"))
    installed = {p.name.lower() for p in site.iterdir()}
    assert "synapse_scim" in installed
    assert not [n for n in installed if n.startswith(("synapse_scim_sandbox", "trustme"))], sorted(installed)
    shipped = {p.relative_to(site / "synapse_scim").as_posix() for p in (site / "synapse_scim").rglob("*.py")}
    assert "controller/handlers.py" in shipped and "crds/__init__.py" in shipped
    assert not [f for f in shipped if f.split("/")[0] in ("sandbox", "devcluster") or f == "demo.py"], shipped
    assert sorted(p.name for p in (site / "synapse_scim/crds").glob("*.yaml")) == sorted(
        p.name for p in (Path(__file__).resolve().parents[2] / "crds").glob("*.yaml")
    )
    assert not list(rootfs.glob("opt/venv/bin/*sandbox*"))


def test_the_operator_from_the_image_gets_a_binding_ready(image: Image, image_harness):
    from support.harness import RB_PLURAL, WS_PLURAL
    from support.orgs import upn

    h = image_harness
    ctr = image.container()
    try:
        command = [sys.executable, str(WRAPPER), ctr, json.dumps(image.config["Entrypoint"])]
        env = {"SYNAPSE_SCIM_METRICS_PORT": "0", "STORAGE_DRIVER": image.storage_driver}
        h.start_operator(command=command, **env)
        h.workspace()
        h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
        obj = h.wait_condition(RB_PLURAL, "analysts", timeout=120)
        held = {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == CONTRIBUTOR}
        assert held == {h.user_id(upn("erin")), h.user_id(upn("frank"))}
        assert obj["status"]["summary"]["inSync"] == 2
        assert h.wait_condition(WS_PLURAL, "analytics")["status"]["reachable"] is True
        operator = h.operator
        h.stop_operator()
        assert operator is not None and operator.returncode == 0, "SIGTERM reaches the operator: a clean exit"
    finally:
        h.stop_operator()
        image.remove(ctr)
