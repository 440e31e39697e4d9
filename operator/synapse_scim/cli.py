"""The `synapse-scim` command: run | plan | explain | report, plus the commands of installed plugins.

Plugins are entry points of the group ``synapse_scim.commands``: each names a function taking the
command's own arguments and returning an exit code. The development distribution in ``sandbox/``
(`synapse-scim-sandbox`) adds ``sandbox``, ``devcluster`` and ``demo`` this way; the product itself
(the wheel, the image) ships none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

PLUGIN_GROUP = "synapse_scim.commands"


def _run(argv: list[str]) -> int:
    from synapse_scim.controller.run import main as run_main

    return run_main(argv)


def _plan(argv: list[str]) -> int:
    from synapse_scim.review.plan import plan

    return plan(argv)


def _report(argv: list[str]) -> int:
    from synapse_scim.review.report import report

    return report(argv)


def _explain(argv: list[str]) -> int:
    from synapse_scim.review.explain import explain

    return explain(argv)


BUILTIN: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "run": (_run, "run the operator (kopf) against the current cluster"),
    "plan": (_plan, "what the operator would grant, revoke or hold for these manifests (read-only)"),
    "explain": (_explain, "every role a principal holds and why (binding, group chain, manual)"),
    "report": (_report, "access review: every role assignment of every workspace and why (HTML, CSV, JSON)"),
}


Command = Callable[[list[str]], int]


def plugins() -> dict[str, Callable[[], Command]]:
    """Commands that installed distributions add: a loader each, called only when the command runs."""
    found: dict[str, Callable[[], Command]] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name not in BUILTIN:
            found[ep.name] = ep.load
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = plugins()
    if argv and argv[0] in BUILTIN:
        return BUILTIN[argv[0]][0](argv[1:])  # each command owns its flags
    if argv and argv[0] in extra:
        return int(extra[argv[0]]()(argv[1:]))
    parser = argparse.ArgumentParser(
        prog="synapse-scim",
        description="Keep Azure Synapse workspace RBAC in step with your identity provider's groups.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in BUILTIN.items():
        sub.add_parser(name, help=help_text, add_help=False)
    for name, load in extra.items():
        doc = (load().__doc__ or "").strip().splitlines()
        sub.add_parser(name, help=doc[0] if doc else f"(plugin command {name})", add_help=False)
    parser.parse_args(argv)  # exits with usage: the command was missing or unknown
    return 2


if __name__ == "__main__":
    sys.exit(main())
