"""A local Kubernetes control plane for the demo and the tests (real etcd and kube-apiserver)."""

from .controlplane import ControlPlane, ControlPlaneError, ExistingCluster, free_port, run_tool, write_kubeconfig
from .crds import install_crds, load_crds
from .tools import Tools, ToolsNotFound, find_tools

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "ExistingCluster",
    "Tools",
    "ToolsNotFound",
    "find_tools",
    "free_port",
    "install_crds",
    "load_crds",
    "run_tool",
    "write_kubeconfig",
]
