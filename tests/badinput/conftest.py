"""The bad-input catalogue: one operator, one sandbox and one namespace per module, a sandbox
workspace per case (so no case can disturb another), and each case's own objects in the cluster.

The end-to-end Harness (tests/e2e/harness.py) drives everything; `cluster` comes from tests/conftest.py.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from catalogue import bad_input_org
from harness import Harness

from synapse_scim_sandbox import SandboxThread


@pytest.fixture(scope="module")
def module_namespace(cluster) -> Iterator[str]:
    name = f"bad-{uuid.uuid4().hex[:10]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            core.delete_namespace(name)


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
