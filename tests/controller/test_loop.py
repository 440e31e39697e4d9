"""Retries of failed syncs (controller/loop.py): what a failure tells the retry."""

from __future__ import annotations

import pytest

from synapse_scim.adapters.connections import Clients
from synapse_scim.adapters.directory import DirectoryError
from synapse_scim.adapters.workspace import WorkspaceError
from synapse_scim.core.reasons import Reason
from synapse_scim_sandbox import Sandbox


async def test_a_throttled_read_carries_the_retry_after_the_service_sent(sb: Sandbox, clients: Clients):
    """What the retry waits for, at least: the Retry-After of the last 429, after the SDKs' own retries."""
    group = await clients.directory.resolve("Group", name="Data Engineers")
    for service, operation in (("graph", "transitiveMembers"), ("synapse", "listRoleAssignments")):
        await sb.admin.inject_fault({"service": service, "operation": operation, "status": 429, "retry_after": 1})
    with pytest.raises(DirectoryError) as graph:
        await clients.directory.expand(group)
    assert (graph.value.reason, graph.value.retry_after) == (Reason.DIRECTORY_READ_FAILED, 1.0)
    with pytest.raises(WorkspaceError) as synapse:
        await clients.workspace.assignments()
    assert (synapse.value.reason, synapse.value.retry_after) == (Reason.WORKSPACE_READ_FAILED, 1.0)
