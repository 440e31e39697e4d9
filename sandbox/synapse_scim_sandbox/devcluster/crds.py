"""Install the project's CRDs into a cluster and wait until they are Established."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim.crds import documents


def load_crds(directory: Path | None = None) -> list[dict]:
    """The CRDs of ``directory``, or those the installed synapse-scim package ships."""
    if directory is None:
        return documents()
    docs: list[dict] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def install_crds(api: client.ApiClient, crds: Iterable[dict] | None = None, timeout: float = 60.0) -> list[str]:
    ext = client.ApiextensionsV1Api(api)
    names = []
    for crd in crds if crds is not None else load_crds():
        name = crd["metadata"]["name"]
        names.append(name)
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current.metadata.resource_version}}
            ext.replace_custom_resource_definition(name, crd)
    wait_established(ext, names, timeout)
    return names


def wait_established(ext: client.ApiextensionsV1Api, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in list(pending):
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established after {timeout}s: {sorted(pending)}")
        time.sleep(0.1)
