"""Loading manifests for `plan`: multi-document files, directories, other kinds skipped, and errors that
name the file, the document and the field (checked against the CRD schemas in crds/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synapse_scim.review.manifests import ManifestError, load
from synapse_scim.review.preview import targets

WS = {
    "apiVersion": "synapse-scim.io/v1alpha1",
    "kind": "SynapseWorkspace",
    "metadata": {"name": "analytics"},
    "spec": {"endpoint": "https://analytics.dev.azuresynapse.net", "tenantId": "11111111-2222-3333-4444-555555555555"},
}
RB = {
    "apiVersion": "synapse-scim.io/v1alpha1",
    "kind": "SynapseRoleBinding",
    "metadata": {"name": "analysts"},
    "spec": {
        "workspaceRef": {"name": "analytics"},
        "roles": ["Synapse User"],
        "subjects": [{"kind": "Group", "name": "Analysts"}],
    },
}


def test_documents_directories_and_lists(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "ws.yaml").write_text(
        yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, WS])
    )
    (tmp_path / "a" / "b" / "list.yml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [RB]}))
    (tmp_path / "a" / "notes.txt").write_text("ignored: not a manifest suffix")
    found = load([tmp_path / "a"])
    assert [(m.kind, m.name, Path(m.source).name) for m in found] == [
        ("SynapseRoleBinding", "analysts", "list.yml#1"),
        ("SynapseWorkspace", "analytics", "ws.yaml#2"),
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda b: b["spec"].update(managmentPolicy="Observe"),
            "spec.managmentPolicy: unknown field (allowed: deletionPolicy, managementPolicy, roles, scope, subjects, "
            "suspend, workspaceRef)",
        ),
        (lambda b: b["spec"].pop("roles"), "spec.roles: required field is missing"),
        (
            lambda b: b["spec"]["subjects"][0].update(kind="Team"),
            "spec.subjects[0].kind: 'Team' is not one of ['Group', 'User', 'ServicePrincipal', 'ScimGroup']",
        ),
        (
            lambda b: b["spec"].update(managementPolicy="enforce"),
            "spec.managementPolicy: 'enforce' is not one of ['Enforce', 'Observe']",
        ),
    ],
)
def test_a_bad_binding_names_file_document_and_field(tmp_path: Path, mutate, message: str) -> None:
    bad = yaml.safe_load(yaml.safe_dump(RB))
    mutate(bad)
    path = tmp_path / "rb.yaml"
    path.write_text(yaml.safe_dump_all([WS, bad]))
    with pytest.raises(ManifestError) as err:
        load([path])
    assert str(err.value) == f"{path}#2 (SynapseRoleBinding analysts): {message}"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: synapse-scim.io/v1alpha1\nkind: [unclosed\n")
    with pytest.raises(ManifestError, match=rf"^{path}:3: YAML syntax error"):
        load([path])


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or directory"):
        load([tmp_path / "nope"])


async def test_the_same_object_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(yaml.safe_dump_all([WS, RB]))
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(RB))
    with pytest.raises(ManifestError) as err:
        await targets(load([tmp_path]), "default")
    assert str(err.value) == (
        f"{tmp_path}/two.yaml#1: SynapseRoleBinding default/analysts is also defined in {tmp_path}/one.yaml#2"
    )
