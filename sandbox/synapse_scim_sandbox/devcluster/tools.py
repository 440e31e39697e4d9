"""Where the Kubernetes tools come from: the project's cache, KUBEBUILDER_ASSETS, or PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("kube-apiserver", "etcd", "kubectl")


class ToolsNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Tools:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    helm: Path | None
    # Built with the others by hack/build-tools.sh; optional, as helm is: only the tests that need the
    # namespace controller or the garbage collector start it (ControlPlane(controller_manager=True)).
    kube_controller_manager: Path | None = None

    @property
    def directory(self) -> Path:
        return self.kubectl.parent


def _from_dir(directory: Path) -> Tools | None:
    if all((directory / name).is_file() and os.access(directory / name, os.X_OK) for name in REQUIRED):
        helm = directory / "helm"
        return Tools(
            kube_apiserver=directory / "kube-apiserver",
            etcd=directory / "etcd",
            kubectl=directory / "kubectl",
            helm=helm if helm.is_file() else shutil.which("helm") and Path(shutil.which("helm") or ""),
            kube_controller_manager=_optional(directory, "kube-controller-manager"),
        )
    return None


def _optional(directory: Path, name: str) -> Path | None:
    path = directory / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    return Path(found) if found else None


def _build_script() -> Path | None:
    # In a source checkout this package lives in <repo>/sandbox/synapse_scim_sandbox/devcluster.
    script = Path(__file__).resolve().parents[3] / "hack" / "build-tools.sh"
    return script if script.is_file() else None


def find_tools() -> Tools:
    """Locate kube-apiserver, etcd, kubectl (and helm).

    Order: $SYNAPSE_SCIM_TOOLS (what `make` exports), $KUBEBUILDER_ASSETS (envtest convention),
    the source checkout's hack/build-tools.sh (builds into the cache once), then PATH.
    """
    for env in ("SYNAPSE_SCIM_TOOLS", "KUBEBUILDER_ASSETS"):
        value = os.environ.get(env)
        if value:
            tools = _from_dir(Path(value))
            if tools:
                return tools
            if env == "SYNAPSE_SCIM_TOOLS":
                raise ToolsNotFound(f"{env}={value} does not hold {', '.join(REQUIRED)}")
    script = _build_script()
    if script:
        out = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout.strip()
        tools = _from_dir(Path(out.splitlines()[-1]))
        if tools:
            return tools
    found = {name: shutil.which(name) for name in REQUIRED}
    if all(found.values()):
        return _from_dir(Path(found["kube-apiserver"] or "").parent) or Tools(
            kube_apiserver=Path(found["kube-apiserver"] or ""),
            etcd=Path(found["etcd"] or ""),
            kubectl=Path(found["kubectl"] or ""),
            helm=Path(shutil.which("helm")) if shutil.which("helm") else None,
        )
    missing = ", ".join(name for name, path in found.items() if not path)
    raise ToolsNotFound(
        f"cannot find {missing}: run `make tools` in a source checkout, or set SYNAPSE_SCIM_TOOLS or "
        "KUBEBUILDER_ASSETS to a directory holding kube-apiserver, etcd and kubectl"
    )
