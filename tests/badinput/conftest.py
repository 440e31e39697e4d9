"""The bad-input catalogue: one operator, one sandbox and one namespace per module, a sandbox
workspace per case (so no case can disturb another), and each case's own objects in the cluster.

The end-to-end Harness (support.harness) drives everything; `cluster` comes from support.fixtures.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from catalogue import bad_input_org

from support.harness import Harness
from support.kube import new_namespace
from synapse_scim_sandbox import SandboxThread


@pytest.fixture(scope="module")
def module_namespace(cluster) -> Iterator[str]:
    with new_namespace(cluster, "bad") as name:
        yield name


@pytest.fixture(scope="module")
def bad(cluster, module_namespace, tmp_path_factory, request) -> Iterator[Harness]:
    """The module's running operator against a sandbox with a workspace for each name in the module's
    WORKSPACES list; the operator's log tail is printed if any test of the module failed."""
    tmp = tmp_path_factory.mktemp("badinput")
    env = getattr(request.module, "OPERATOR_ENV", {})
    with SandboxThread(seed=bad_input_org(request.module.WORKSPACES), cert_dir=tmp / "sandbox") as sb:
        h = Harness(cluster, module_namespace, sb, tmp)
        h.start_operator(**env)
        try:
            yield h
        finally:
            h.stop_operator()
            if request.session.testsfailed:
                sys.stderr.write("--- operator log ---\n" + h.operator_log()[-8000:])
            h.api.close()
