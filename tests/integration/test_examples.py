"""Every manifest under examples/ is accepted by the real API server's schema as it stands."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "examples").rglob("*.yaml") if "sandbox" not in p.parts
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_server_side_validation(cluster, namespace, path):
    out = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", str(path))
    assert "(server dry run)" in out.stdout


def test_there_are_examples_of_both_kinds():
    text = "\n".join(p.read_text() for p in EXAMPLES)
    assert "kind: SynapseWorkspace" in text and text.count("kind: SynapseRoleBinding") >= 5
