"""The `synapse-scim` command: run | plan | explain | sandbox | devcluster | demo."""

from __future__ import annotations

import argparse
import sys
import time


def _devcluster(args: argparse.Namespace) -> int:
    from .devcluster import ControlPlane
    from .devcluster.controlplane import sigterm_as_keyboard_interrupt

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


def _sandbox(argv: list[str]) -> int:
    from .sandbox.cli import main as sandbox_main

    return sandbox_main(argv)


def _run(argv: list[str]) -> int:
    from .runner import main as run_main

    return run_main(argv)


def _demo(argv: list[str]) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


def _plan(argv: list[str]) -> int:
    from .review import plan

    return plan(argv)


def _explain(argv: list[str]) -> int:
    from .review import explain

    return explain(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="synapse-scim",
        description="Keep Azure Synapse workspace RBAC in step with Microsoft Entra ID groups.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the operator (kopf) against the current cluster", add_help=False)
    sub.add_parser("plan", help="what the operator would grant, revoke or hold for these manifests (read-only)",
                   add_help=False)
    sub.add_parser("explain", help="every role a principal holds and why (binding, group chain, manual)",
                   add_help=False)
    sub.add_parser("sandbox", help="start the local Azure sandbox (Entra, Graph, Synapse)", add_help=False)
    sub.add_parser("demo", help="the demo: local control plane + sandbox + operator", add_help=False)
    dev = sub.add_parser("devcluster", help="start a local etcd + kube-apiserver until Ctrl-C")
    dev.add_argument("--kubeconfig-out", help="also write the kubeconfig to this path")

    if argv and argv[0] in ("run", "plan", "explain", "sandbox", "demo"):
        # Those subcommands own their flags.
        commands = {"run": _run, "plan": _plan, "explain": _explain, "sandbox": _sandbox, "demo": _demo}
        return commands[argv[0]](argv[1:])
    args = parser.parse_args(argv)
    return _devcluster(args)


if __name__ == "__main__":
    sys.exit(main())
