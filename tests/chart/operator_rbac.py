"""Running the real operator under the chart's RBAC: the end-to-end harness (support.harness) reused from
tests/chart, an operator that can run cluster-wide, and surgery on an installed (Cluster)Role.

The harness's Secret and SynapseWorkspace are created with the admin client (the user applying
manifests); only the operator process signs in as the chart's ServiceAccount (KUBECONFIG=<TokenRequest
kubeconfig>), so whatever it cannot do is the chart's RBAC's fault.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from support.harness import Harness, running_harness
from support.orgs import small_org

# A refusal by the API server as the operator logs it: kopf's APIForbiddenError / "403 Forbidden", the
# kubernetes client's "(403)" / "Reason: Forbidden". Not a bare 403: log timestamps end in ",403" millis.
FORBIDDEN = re.compile(r"forbidden|\(403\)|\b403\s+forbidden|status[ =:]+403", re.IGNORECASE)


def forbidden_lines(log: str) -> list[str]:
    """Refusals by RBAC. A cluster-wide operator also sees other tests' namespaces; posting an Event into
    one that is being deleted is refused with a 403 too, by namespace lifecycle, not by RBAC."""
    return [line for line in log.splitlines() if FORBIDDEN.search(line) and "is being terminated" not in line]


class ChartHarness(Harness):
    """The e2e harness, plus an operator that watches every namespace (`run --all-namespaces`)."""

    def start_operator(self, command: list[str] | None = None, *, all_namespaces: bool = False, **env: str) -> None:
        if not all_namespaces:
            super().start_operator(command, **env)
            return
        # Harness.start_operator always appends `run --namespace NS ...`; a shell wrapper runs the
        # operator cluster-wide instead and ignores those (they become the shell's unused $1...).
        python = command or [sys.executable, "-m", "synapse_scim.cli"]
        script = shlex.join([*python, "run", "--all-namespaces", "--liveness", ""])
        super().start_operator(["sh", "-c", f"exec {script}", "sh"], **env)

    def never(self, predicate: Callable[[], Any], what: str, duration: float, interval: float = 0.5) -> None:
        """Assert `predicate` stays falsy for `duration` seconds (polled every `interval`)."""
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            value = predicate()
            assert not value, f"{what} happened: {value}\n--- operator log ---\n{self.operator_log()[-6000:]}"
            time.sleep(interval)


@contextmanager
def chart_harness(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[ChartHarness]:
    """A sandbox with the small org and a ChartHarness on it, per test."""
    with running_harness(cluster, namespace, small_org(), tmp_path, cls=ChartHarness) as h:
        yield h


def without_verb(rules: list[client.V1PolicyRule], resource: str, verb: str, group: str) -> list[client.V1PolicyRule]:
    """`rules` less one verb on one resource, the rest untouched: a rule that names the resource with
    others is split in two (the others keep every verb)."""
    out: list[client.V1PolicyRule] = []
    removed = False
    for rule in rules:
        if group in (rule.api_groups or []) and resource in (rule.resources or []) and verb in (rule.verbs or []):
            others = [r for r in rule.resources if r != resource]
            if others:
                out.append(client.V1PolicyRule(api_groups=rule.api_groups, resources=others, verbs=rule.verbs))
            verbs = [v for v in rule.verbs if v != verb]
            if verbs:
                out.append(client.V1PolicyRule(api_groups=rule.api_groups, resources=[resource], verbs=verbs))
            removed = True
        else:
            out.append(rule)
    assert removed, f"no rule grants {verb} on {group or 'core'}/{resource}"
    return out


def remove_verb_from_role(cluster: Any, namespace: str, name: str, resource: str, verb: str, group: str) -> None:
    """Take `verb` on `resource` away from the installed Role namespace/name (as the admin)."""
    with cluster.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        role = rbac.read_namespaced_role(name, namespace)
        role.rules = without_verb(role.rules, resource, verb, group)
        rbac.replace_namespaced_role(name, namespace, role)


def can(
    kubeconfig: Path,
    cluster: Any,
    verb: str,
    resource: str,
    namespace: str,
    *,
    group: str = "",
    subresource: str | None = None,
) -> bool:
    """SelfSubjectAccessReview as the identity of `kubeconfig`."""
    with cluster.api_client(kubeconfig) as api:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource, subresource=subresource, namespace=namespace
                )
            )
        )
        return client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed
