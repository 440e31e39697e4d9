"""End-to-end fixtures: the real API server (session fixture), the Azure sandbox (per test), and the
operator as its own process (`synapse-scim run`), talking to both through the real SDKs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Harness

from synapse_scim.sandbox import SandboxThread


@pytest.fixture
def org(request) -> dict[str, Any]:
    """The seed organisation; parametrize it indirectly with a number to add a group "Everyone" that big."""
    from orgs import small_org, with_big_group

    seed = small_org()
    size = getattr(request, "param", None)
    return with_big_group(seed, "Everyone", size) if size else seed


@pytest.fixture
def harness(cluster, namespace, org, tmp_path, request) -> Iterator[Harness]:
    with SandboxThread(seed=org, cert_dir=tmp_path / "sandbox") as sb:
        h = Harness(cluster, namespace, sb, tmp_path)
        try:
            yield h
        finally:
            h.stop_operator()
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                sys.stderr.write("--- operator log ---\n" + h.operator_log()[-8000:])
            h.api.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
