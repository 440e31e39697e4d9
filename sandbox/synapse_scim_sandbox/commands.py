"""The development commands this distribution adds to `synapse-scim` (entry points of the group
``synapse_scim.commands``): ``sandbox``, ``devcluster`` and ``demo``."""

from __future__ import annotations

import argparse
import time


def sandbox(argv: list[str]) -> int:
    """Start the local Azure sandbox (Entra, Graph, Synapse) until Ctrl-C."""
    from .cli import main

    return main(argv)


def demo(argv: list[str]) -> int:
    """The demo: a local control plane, the sandbox and the operator, with the examples."""
    from .demo import main

    return main(argv)


def devcluster(argv: list[str]) -> int:
    """Start a local etcd + kube-apiserver until Ctrl-C."""
    from .devcluster import ControlPlane
    from .devcluster.controlplane import sigterm_as_keyboard_interrupt

    parser = argparse.ArgumentParser(
        prog="synapse-scim devcluster", description="start a local etcd + kube-apiserver until Ctrl-C"
    )
    parser.add_argument("--kubeconfig-out", help="also write the kubeconfig to this path")
    args = parser.parse_args(argv)
    with sigterm_as_keyboard_interrupt():
        try:
            with ControlPlane() as cp:
                print(f"kube-apiserver {cp.server}\nKUBECONFIG={cp.kubeconfig}", flush=True)
                if args.kubeconfig_out:
                    with open(args.kubeconfig_out, "w") as f:
                        f.write(cp.kubeconfig.read_text())
                print("Ctrl-C stops it.", flush=True)
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            return 0
