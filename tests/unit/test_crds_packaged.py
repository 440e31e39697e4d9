"""The CRDs the wheel ships (package data) are exactly the repository's crds/, the source of truth."""

from __future__ import annotations

from pathlib import Path

import yaml

from synapse_scim import crds

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_crds_are_a_copy_of_crds_dir() -> None:
    source = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    packaged = {p.name: p.read_bytes() for p in sorted((ROOT / "operator/synapse_scim/crds").glob("*.yaml"))}
    assert source, "crds/ holds the CRDs"
    assert packaged == source, "operator/synapse_scim/crds differs from crds/: run `make crds`"


def test_documents_parses_every_packaged_crd() -> None:
    kinds = {d["spec"]["names"]["kind"] for d in crds.documents()}
    sources = [d for p in (ROOT / "crds").glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    expected = {d["spec"]["names"]["kind"] for d in sources}
    assert (
        kinds
        == expected
        == {"SynapseWorkspace", "SynapseRoleBinding", "ScimProvider", "ScimUser", "ScimGroup", "ScimGroupMembers"}
    )
