"""The CustomResourceDefinitions, shipped as package data so that an installed `synapse-scim plan`
checks manifests without a checkout.

The source of truth is the repository's top-level ``crds/`` (what the chart and kubectl apply);
these files are a copy of it (``make crds`` refreshes it, and a unit test fails when they differ).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml


def documents() -> list[dict[str, Any]]:
    """Every CRD, parsed, in file-name order."""
    out: list[dict[str, Any]] = []
    for entry in sorted(files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out.extend(d for d in yaml.safe_load_all(entry.read_text(encoding="utf-8")) if d)
    return out
