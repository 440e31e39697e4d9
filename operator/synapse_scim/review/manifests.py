"""SynapseWorkspace and SynapseRoleBinding manifests from files (a GitOps repository), checked as the API
server would check them, so that `synapse-scim plan` fails on a bad manifest before anyone applies it.

Files are YAML, several documents each; directories are read recursively (``*.yaml``, ``*.yml``,
``*.json``). Documents of other kinds (Secrets, Kustomizations, ...) are skipped. Each document is
validated against the openAPIV3Schema of its CRD (shipped with the package), unknown fields included (kubectl's strict
field validation rejects those too); CEL rules are left to the API server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from synapse_scim import crds
from synapse_scim.adapters.kube import GROUP, VERSION

API_VERSION = f"{GROUP}/{VERSION}"
KINDS = ("SynapseWorkspace", "SynapseRoleBinding")
SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the document and the field."""


@dataclass(frozen=True)
class Manifest:
    source: str  # "path#document", documents counted from 1
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind"))

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or directory")


def _crd_schemas() -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for crd in crds.documents():
        kind = crd["spec"]["names"]["kind"]
        version = next(v for v in crd["spec"]["versions"] if v["name"] == VERSION)
        schemas[kind] = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return schemas


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Unknown fields become errors: the API server prunes them silently, kubectl apply refuses them."""
    if "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for sub in (schema.get("properties") or {}).values():
        _strict(sub)
    if isinstance(schema.get("items"), dict):
        _strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        _strict(schema["additionalProperties"])
    return schema


@cache
def _validators() -> dict[str, jsonschema.Draft4Validator]:
    # openAPIV3Schema is (for what the CRDs use) the JSON Schema draft 4 vocabulary.
    return {kind: jsonschema.Draft4Validator(schema) for kind, schema in _crd_schemas().items()}


def _field(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = set(schema.get("properties") or {})
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            path = f"{path}.{extra[0]}" if path else extra[0]
            return f"{path}: unknown field (allowed: {', '.join(sorted(allowed))})"
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else ""
        return f"{path + '.' if path else ''}{missing}: required field is missing"
    return f"{path or '(document)'}: {error.message}"


def validate(manifest: Manifest) -> None:
    """Raise ManifestError naming file, document and field if the manifest is not a valid object of its kind."""
    body = manifest.body
    meta = body.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        raise ManifestError(f"{manifest.source}: metadata.name: required field is missing")
    if body.get("apiVersion") != API_VERSION:
        raise ManifestError(f"{manifest.source}: apiVersion: expected {API_VERSION!r}, got {body.get('apiVersion')!r}")
    validator = _validators()[manifest.kind]
    errors = sorted(validator.iter_errors(body), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise ManifestError(f"{manifest.source} ({manifest.kind} {meta['name']}): {_field(first)}{more}")


def load(paths: Iterable[str | Path]) -> list[Manifest]:
    """Every SynapseWorkspace and SynapseRoleBinding document under ``paths``, validated."""
    found: list[Manifest] = []
    for path in _files(paths):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ManifestError(f"{where}: YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read: {exc}") from None
        for index, doc in enumerate(docs, start=1):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                candidates = [d for d in doc["items"] if isinstance(d, dict)]
            else:
                candidates = [doc]
            for body in candidates:
                if body.get("kind") not in KINDS or not str(body.get("apiVersion", "")).startswith(f"{GROUP}/"):
                    continue  # Secrets, Kustomizations and the like are not ours to plan
                manifest = Manifest(source=f"{path}#{index}", body=body)
                validate(manifest)
                found.append(manifest)
    return found
