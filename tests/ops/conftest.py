"""Operations tests: what Argo CD, Flux/kstatus, Prometheus and a log pipeline read from the operator.

The end-to-end fixtures (`org`, `harness`) are the ones of tests/e2e, repeated here (a conftest is not
importable by name); `cluster` and `namespace` come from tests/conftest.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import Harness

from synapse_scim.sandbox import SandboxThread


@pytest.fixture
def org() -> dict[str, Any]:
    from orgs import small_org

    return small_org()


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
