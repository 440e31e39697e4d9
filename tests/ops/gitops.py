"""What Flux and Argo CD make of our objects, computed by their own libraries, and the promise of
docs/gitops.md to compare it with.

`evaluate` runs hack/gitops-health (built from the Go module proxy by hack/build-gitops-health.sh and
cached; SYNAPSE_SCIM_GITOPS_HEALTH names a binary to use instead): for each object,
sigs.k8s.io/cli-utils kstatus (Flux) and health/argocd/<group>/<Kind>/health.lua under gopher-lua as
Argo CD's util/lua runs an argocd-cm health customisation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argo_health import HEALTH

ROOT = Path(__file__).resolve().parents[2]
GITOPS_DOC = ROOT / "docs" / "gitops.md"
README = ROOT / "README.md"
# States that are not a reason: the row keys of docs/gitops.md for them.
NOT_SEEN = "not looked at yet"
STALE = "spec changed, not seen yet"
DELETING = "being deleted"


def build() -> Path:
    given = os.environ.get("SYNAPSE_SCIM_GITOPS_HEALTH")
    if given:
        return Path(given)
    proc = subprocess.run(
        [str(ROOT / "hack" / "build-gitops-health.sh")], capture_output=True, text=True, check=False, timeout=900
    )
    assert proc.returncode == 0, f"hack/build-gitops-health.sh failed:\n{proc.stderr}"
    return Path(proc.stdout.strip())


def evaluate(tool: Path, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(tool), "-health-dir", str(HEALTH)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    assert len(results) == len(objects)
    return results


def state(obj: dict[str, Any]) -> str:
    """The row of docs/gitops.md an object falls in."""
    meta, status = obj["metadata"], obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return DELETING
    ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)
    if ready is None:
        return NOT_SEEN
    if status.get("observedGeneration") != meta.get("generation"):
        return STALE
    return str(ready["reason"])


def kubectl_wait_ready(obj: dict[str, Any]) -> str:
    """What `kubectl wait --for=condition=Ready` does with the object: met only by Ready=True of the
    object's generation (the condition's observedGeneration, else status.observedGeneration)."""
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)
    if ready is None or ready["status"] != "True":
        return "waits"
    observed = ready.get("observedGeneration", status.get("observedGeneration"))
    return "returns" if observed == obj["metadata"].get("generation") else "waits"


@dataclass(frozen=True)
class Promise:
    keys: tuple[str, ...]  # the reasons (or states) of the row
    kstatus: str
    argocd: str
    kubectl_wait: str
    in_operator_run: bool


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after `heading`."""
    rest = text[text.index(heading) :]
    lines = [ln for ln in rest.splitlines() if ln.startswith("|")]
    start = rest.splitlines().index(lines[0])
    rows = []
    for ln in rest.splitlines()[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append(_cells(ln))
    return rows


def promises() -> dict[str, Promise]:
    """docs/gitops.md's table "What each state reads as", by reason or state."""
    out: dict[str, Promise] = {}
    for cells in _table(GITOPS_DOC.read_text(), "## What each state reads as"):
        keys = tuple(re.findall(r"`([^`]+)`", cells[0])) or (cells[0].strip("*_ "),)
        plain = [re.sub(r"[*`]", "", c).split()[0] if c else "" for c in cells]
        p = Promise(keys, plain[2], plain[3], plain[4], cells[5].lower().startswith("yes"))
        for k in keys:
            assert k not in out, f"docs/gitops.md: {k} has two rows"
            out[k] = p
    return out


def readme_reasons() -> dict[str, str]:
    """The README's reason table: reason -> its "On" cell (binding, workspace, both, ...), for the
    rows about SynapseWorkspace and SynapseRoleBinding: the kinds Flux and Argo CD health-check
    (a ScimProvider row, e.g. its own `SecretNotFound`, is not theirs)."""
    out: dict[str, str] = {}
    for cells in _table(README.read_text(), "## Troubleshooting: condition reasons"):
        if not kinds_of(cells[1]):
            continue
        for reason in re.findall(r"`([A-Za-z]+)`", cells[0]):
            out[reason] = cells[1]
    return out


def kinds_of(on: str) -> tuple[str, ...]:
    words = set(re.findall(r"[a-z]+", on))
    kinds = []
    if words & {"binding", "bindings", "both"}:
        kinds.append("SynapseRoleBinding")
    if words & {"workspace", "both"}:
        kinds.append("SynapseWorkspace")
    return tuple(kinds)
