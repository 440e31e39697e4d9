"""The root of every test layer: the shared fixtures (support/fixtures.py, loaded as a plugin) and the
`cluster` marker, derived from what each test asks for so that it cannot drift:

    pytest -m "not cluster"   everything that needs neither the control plane nor helm (no tools built)
    pytest -m cluster         the rest
"""

from __future__ import annotations

import pytest

pytest_plugins = ["support.fixtures"]

# The fixture every test that needs the Kubernetes tools reaches, directly or through `cluster`
# (the control plane) or `helm` (support/fixtures.py).
KUBE_TOOLS = "kube_tools"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if KUBE_TOOLS in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
