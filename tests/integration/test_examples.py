"""The examples as users are told to use them:

- every manifest under examples/ is accepted by the real API server's schema as it stands;
- `synapse-scim plan -f examples/` reads the whole directory: one definition of each object (an
  alternative of the same object would make plan refuse the directory), every binding's workspace
  among them;
- against the sandbox seeded with examples/sandbox/org.yaml (the examples' endpoints pointed at it,
  as `synapse-scim demo` does), that plan exits 0 or 2, not 1 (without scim/, whose pushed group only
  `plan --cluster` can read).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.sandbox import OPERATOR, ORG
from synapse_scim.review.manifests import load
from synapse_scim.review.preview import targets
from synapse_scim_sandbox import SandboxThread

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
# flux/ and argocd/ hold Flux's and Argo CD's kinds, whose CRDs this cluster does not have: they are
# checked by tests/ops/test_gitops_examples.py (and `plan` skips them).
NOT_OURS = {"sandbox", "flux", "argocd"}
EXAMPLES = sorted(p for p in EXAMPLES_DIR.rglob("*.yaml") if not NOT_OURS & set(p.relative_to(EXAMPLES_DIR).parts))
NAMESPACE = "data-platform"  # the README's and the demo's


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.relative_to(EXAMPLES_DIR).as_posix() for p in EXAMPLES])
def test_example_passes_server_side_validation(cluster, namespace, path):
    out = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", str(path))
    assert "(server dry run)" in out.stdout


def test_there_are_examples_of_both_kinds():
    text = "\n".join(p.read_text() for p in EXAMPLES)
    assert "kind: SynapseWorkspace" in text and text.count("kind: SynapseRoleBinding") >= 5


async def test_plan_reads_the_examples_directory():
    manifests = load([EXAMPLES_DIR])
    assert sum(m.kind == "SynapseRoleBinding" for m in manifests) >= 5
    found = await targets(manifests, NAMESPACE)  # no cluster: only the manifests
    assert ("data-platform", "analytics") in {t.key for t in found}
    analytics = next(t for t in found if t.key == (NAMESPACE, "analytics"))
    assert len(analytics.bindings) >= 5


def _pointed_at(sb: SandboxThread, tree: Path) -> None:
    """Each SynapseWorkspace of the copied examples reaches the sandbox's workspace of its name (the
    demo's rewrite; plan without --cluster uses the environment's identity, not spec.credential)."""
    for path in tree.rglob("*.yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        workspaces = [d for d in docs if isinstance(d, dict) and d.get("kind") == "SynapseWorkspace"]
        for ws in workspaces:
            name = ws["metadata"]["name"]
            ws["spec"].update(
                endpoint=sb.workspace_endpoint(name),
                workspaceName=name,
                tenantId=sb.tenant_id,
                cloud={"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.removesuffix("/v1.0")},
            )
        if workspaces:
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_plan_of_the_examples_against_the_sandbox_succeeds(tmp_path):
    with SandboxThread(seed=ORG, cert_dir=tmp_path / "sandbox") as sb:
        tree = tmp_path / "examples"
        # scim/'s binding names a group an identity provider pushes: only `plan --cluster` knows pushed
        # groups (without it the subject is unresolved, an error); the demo applies it to a cluster.
        shutil.copytree(EXAMPLES_DIR, tree, ignore=lambda d, names: ["scim"] if Path(d) == EXAMPLES_DIR else [])
        _pointed_at(sb, tree)
        app = sb.client(OPERATOR)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AZURE_") and k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "KUBECONFIG")
        }
        env.update(
            SYNAPSE_SCIM_AZURE_CA_BUNDLE=str(sb.ca_path),
            AZURE_CLIENT_ID=app.client_id,
            AZURE_CLIENT_SECRET=app.secret or "",
            AZURE_TENANT_ID=sb.tenant_id,
        )
        proc = subprocess.run(
            [sys.executable, "-m", "synapse_scim.cli", "plan", "-f", str(tree), "-n", NAMESPACE],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    assert "analytics" in proc.stdout and "reporting" in proc.stdout
