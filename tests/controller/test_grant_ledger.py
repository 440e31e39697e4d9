"""The grant ledger (controller/grant_ledger.py, adapters/grant_ledger.py) as run_sync writes it, in
process against the sandbox: a sync's grants land in the shard of their assignment id's first hex digit
with the time of the grant, revocations remove them, adoptions are not recorded (execute), and a ledger that
cannot be written changes nothing but the failure metric and a log line."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from support.controller import FakeKube, binding_body, condition, run_sync, workspace_body
from support.sandbox import holders, object_id, role_id
from synapse_scim import metrics
from synapse_scim.adapters.grant_ledger import (
    MANAGED_BY,
    WORKSPACE_LABEL,
    patches,
    read_ledger,
    shard_name,
    shard_of,
)
from synapse_scim.adapters.kube import WORKSPACES
from synapse_scim.adapters.throttle import AdaptiveLimit
from synapse_scim.controller.writes import execute
from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    Create,
    Grant,
    Plan,
    Principal,
    PrincipalType,
    assignment_id,
)
from synapse_scim_sandbox import Sandbox

CONTRIBUTOR = "Synapse Contributor"
ENGINEERS = [{"kind": "Group", "name": "Data Engineers"}]
LOG = logging.getLogger("test.grant_ledger")


def ledger(kube: FakeKube, ns: str) -> dict[str, str]:
    return {k: v for (n, _), cm in kube.configmaps.items() if n == ns for k, v in cm["data"].items()}


def test_shards_and_patches() -> None:
    assert shard_of("A1b2") == "a" and shard_of("07") == "0" and shard_of("") == "0" and shard_of("zz") == "0"
    assert shard_name("analytics", "f") == "analytics-grants-f"
    assert patches({"A1": "t1", "b2": "t2"}, ["a3", "c4"]) == {
        "a": {"a1": "t1", "a3": None},
        "b": {"b2": "t2"},
        "c": {"c4": None},
    }


async def test_grants_land_in_their_shards_with_times_and_revocations_remove_them(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = await run_sync((ns, "analytics"), memo, LOG)
    assert result is not None and result.problem is None
    granted = await holders(sb, CONTRIBUTOR)
    assert len(granted) == 5
    ids = {assignment_id(Grant(role_id(sb, CONTRIBUTOR), p, "workspaces/analytics")) for p in granted}
    found = ledger(kube, ns)
    assert set(found) == ids
    for aid, when in found.items():
        assert kube.configmaps[(ns, shard_name("analytics", aid[0]))]["data"][aid] == when
        at = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        assert before <= at <= dt.datetime.now(dt.UTC)
    # One merge patch per touched shard; each ConfigMap labelled and owned by the workspace.
    assert len(kube.configmap_writes) == len({aid[0] for aid in ids})
    for cm in kube.configmaps.values():
        meta = cm["metadata"]
        assert meta["labels"] == {MANAGED_BY: "synapse-scim", WORKSPACE_LABEL: "analytics"}
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("SynapseWorkspace", "analytics", "uid-ws-analytics")
    assert await read_ledger(kube, ns, "analytics") == found  # type: ignore[arg-type]

    # A quiet sync writes nothing to the ledger.
    writes = len(kube.configmap_writes)
    await run_sync((ns, "analytics"), memo, LOG, full=True)
    assert len(kube.configmap_writes) == writes

    # bob leaves the group: his grant is revoked and forgotten, the others keep their times.
    await sb.admin.remove_member("Data Engineers", "bob@contoso.com")
    await run_sync((ns, "analytics"), memo, LOG, full=True, fresh_directory=True)
    bob = assignment_id(Grant(role_id(sb, CONTRIBUTOR), object_id(sb, "bob@contoso.com"), "workspaces/analytics"))
    assert bob in found
    assert ledger(kube, ns) == {k: v for k, v in found.items() if k != bob}


class StubWorkspace:
    """execute()'s view of a workspace: creates answer `created` (False: 409, adopted), deletes succeed."""

    def __init__(self, created: bool) -> None:
        self.created = created
        self.limit = AdaptiveLimit(2)

    async def create(self, grant: Grant, principal_type: str | None) -> bool:
        return self.created

    async def delete(self, assignment: Assignment) -> bool:
        return True


@pytest.mark.parametrize("created", [True, False])
async def test_a_grant_is_timed_and_an_adoption_is_not(created: bool):
    grant = Grant("6e4bf58a-b8e1-4cc3-bbf9-d73143322b78", "0fe96cea-cb67-549d-ba95-a06d1fa8e71a", "workspaces/a")
    principal = Principal(grant.principal_id, PrincipalType.USER, "heidi@contoso.com")
    plan = Plan(creates=(Create(grant, principal, "Synapse Administrator", (BindingKey("ns", "b"),)),))
    out = await execute(plan, StubWorkspace(created), {})  # type: ignore[arg-type]
    assert [c.grant for c in out.creates] == [grant]  # done either way
    if created:
        assert list(out.granted_at) == [assignment_id(grant)]
        dt.datetime.fromisoformat(out.granted_at[assignment_id(grant)].replace("Z", "+00:00"))
    else:
        assert out.granted_at == {}  # adopted: the operator does not know when it was granted


async def test_a_ledger_that_cannot_be_written_does_not_fail_the_sync(
    sb: Sandbox, memo: Any, ns: str, events: Any, caplog: pytest.LogCaptureFixture
):
    kube: FakeKube = memo.kube
    kube.configmap_error = ApiException(status=403, reason="Forbidden")
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    labels = {"namespace": ns, "workspace": "analytics"}
    failures = metrics.REGISTRY.get_sample_value("synapse_scim_grant_ledger_write_failures_total", labels) or 0.0
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = await run_sync((ns, "analytics"), memo, LOG)
    assert result is not None and result.problem is None and not result.transient()
    assert len(await holders(sb, CONTRIBUTOR)) == 5
    assert condition(kube.status(WORKSPACES, ns, "analytics"))["reason"] == "Synced"
    shards = {aid[0] for aid in result.granted_at}
    after = metrics.REGISTRY.get_sample_value("synapse_scim_grant_ledger_write_failures_total", labels)
    assert after == failures + len(shards)
    assert any("grant ledger: could not write ConfigMap" in r.getMessage() for r in caplog.records)
    assert kube.configmaps == {}

    # The next sync writes only its own events: the lost grant times stay unknown.
    kube.configmap_error = None
    await run_sync((ns, "analytics"), memo, LOG, full=True)
    assert kube.configmaps == {}
