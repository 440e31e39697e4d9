"""The operator of the image, as the e2e harness's operator process.

    python operator_in_image.py CONTAINER ENTRYPOINT_JSON OPERATOR_ARGS...

`Harness.start_operator(command=[python, this file, container, entrypoint])` starts it with the host's
environment for the operator (KUBECONFIG and SYNAPSE_SCIM_AZURE_CA_BUNDLE are files on the host) and
appends `run --namespace NS ...`. This turns that into `buildah run` of the image's working container:
the two files are handed in read-only (owned by the image's user, as a Kubernetes secret volume with
fsGroup would be), the operator's SYNAPSE_SCIM_* settings become --env, and the network is the host's
(the API server and the sandbox listen on 127.0.0.1). `buildah run` ignores the image's ENTRYPOINT, so
the caller passes it: the command run is exactly ENTRYPOINT + the harness's arguments.

SIGTERM/SIGINT go to the operator itself: `buildah run` would SIGKILL it, and the point of stopping is
the operator's own graceful shutdown.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGE_UID = 10001
IN_CONTAINER = "/config"
FILES = {"KUBECONFIG": "kubeconfig", "SYNAPSE_SCIM_AZURE_CA_BUNDLE": "azure-ca.pem"}
HOST_ONLY = {"SYNAPSE_SCIM_TOOLS", "SYNAPSE_SCIM_CACHE", "SYNAPSE_SCIM_EXISTING_CLUSTER"}
PR_SET_PDEATHSIG = 1


def buildah_command(
    container: str, entrypoint: list[str], args: list[str], environ: dict[str, str], staging: Path
) -> list[str]:
    volumes: list[str] = []
    env: dict[str, str] = {}
    for var, name in FILES.items():
        host = environ.get(var)
        if not host:
            continue
        copy = staging / name
        shutil.copyfile(host, copy)
        os.chown(copy, IMAGE_UID, IMAGE_UID)
        copy.chmod(0o400)
        volumes += ["--volume", f"{copy}:{IN_CONTAINER}/{name}:ro"]
        env[var] = f"{IN_CONTAINER}/{name}"
    for var, value in sorted(environ.items()):
        if var.startswith("SYNAPSE_SCIM_") and var not in HOST_ONLY and var not in env:
            env[var] = value
    return [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        *volumes,
        *(f"--env={k}={v}" for k, v in env.items()),
        container,
        "--",
        *entrypoint,
        *args,
    ]


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str]) -> int:
    container, entrypoint, args = argv[0], json.loads(argv[1]), argv[2:]
    with tempfile.TemporaryDirectory(prefix="synapse-scim-image-") as tmp:
        staging = Path(tmp)
        staging.chmod(0o755)
        proc = subprocess.Popen(
            buildah_command(container, entrypoint, args, dict(os.environ), staging), preexec_fn=_die_with_parent
        )

        def forward(signum: int, _frame: object) -> None:
            # The operator: whatever runs below buildah's own (re-executed) processes.
            targets = [p for p in descendants(proc.pid) if "buildah" not in comm(p)]
            for pid in targets or [proc.pid]:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
