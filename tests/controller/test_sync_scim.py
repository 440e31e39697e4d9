"""sync_workspace with ScimGroup subjects, in process: the real sandbox (Graph lookups through the real
msgraph SDK, Synapse through the real access-control SDK) and the reference SCIM store
(core/scim/memory.py, the in-memory implementation the Kubernetes store is tested against). The one
stand-in is `Source`, which hands that store to the sync as the SCIM endpoint's index would: the
endpoint and its Kubernetes store run end to end in tests/e2e/test_scim_subjects.py."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from support.controller import BindingObject, SyncResult, WorkspaceObject, binding_body, sync_workspace, workspace_body
from support.sandbox import graph_calls, holders, object_id
from synapse_scim.adapters.connections import Clients
from synapse_scim.adapters.principal_lookups import PrincipalLookupCache, find_accounts
from synapse_scim.controller.scim_prefetch import LookupPrefetch
from synapse_scim.core.errors import ReasonedError
from synapse_scim.core.matching import DEFAULT_RULES, MatchRule
from synapse_scim.core.model import BindingKey
from synapse_scim.core.reasons import Reason
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.status import binding_status
from synapse_scim.reads.scim_reads import ScimProviderView
from synapse_scim_sandbox import Sandbox

WHEN = "2026-12-01T00:00:00Z"
USER_ROLE = "Synapse User"
SCIM_SUBJECT = {"kind": "ScimGroup", "provider": "okta", "name": "Data Engineers"}


class Source:
    """The provider `okta` of the binding's namespace, over an in-memory store."""

    def __init__(self, namespace: str, rules: tuple[MatchRule, ...] = DEFAULT_RULES) -> None:
        self.namespace = namespace
        self.store = MemoryStore()
        self.rules = rules

    async def provider(self, namespace: str, name: str) -> ScimProviderView:
        if (namespace, name) != (self.namespace, "okta"):
            raise ReasonedError(Reason.SCIM_PROVIDER_NOT_FOUND, f"ScimProvider {namespace}/{name} does not exist")
        return ScimProviderView(namespace, name, self.store, self.rules)

    async def user(self, user_name: str, **attributes: Any) -> str:
        record = await self.store.create(Kind.USER, {"userName": user_name, "active": True, **attributes})
        return record.id

    async def group(self, name: str, members: list[str]) -> str:
        return (await self.store.create(Kind.GROUP, {"displayName": name}, tuple(members))).id

    async def set_active(self, user_id: str, active: bool) -> None:
        record = await self.store.get(Kind.USER, user_id)
        assert record is not None
        await self.store.update(record, {**record.attributes, "active": active}, None, expected_version=record.version)

    async def set_members(self, group_id: str, members: list[str]) -> None:
        record = await self.store.get(Kind.GROUP, group_id)
        assert record is not None
        await self.store.update(record, record.attributes, tuple(members), expected_version=record.version)


@pytest.fixture
def source(ns: str) -> Source:
    return Source(ns)


async def sync(
    sb: Sandbox,
    clients: Clients,
    ns: str,
    source: Source | None,
    subjects: list[dict[str, Any]],
    *,
    lookups: PrincipalLookupCache | None = None,
    fresh_directory: bool = True,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> SyncResult:
    return await sync_workspace(
        WorkspaceObject.from_body(workspace_body(sb, ns)),
        [BindingObject.from_body(binding_body(ns, "pushed", [USER_ROLE], subjects, status=status, **spec))],
        clients.directory,
        clients.workspace,
        when=WHEN,
        fresh=True,
        fresh_directory=fresh_directory,
        scim_source=source,
        lookups=lookups,
    )


def status_of(result: SyncResult, ns: str) -> dict[str, Any]:
    outcome = result.outcomes[BindingKey(ns, "pushed")]
    return binding_status(outcome, generation=1, old=None, workspace_ref="analytics", when=WHEN)


def ids(sb: Sandbox, *upns: str) -> set[str]:
    return {object_id(sb, u) for u in upns}


async def test_pushed_members_are_matched_by_each_rule_and_an_unmatched_one_costs_nobody(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    alice = await source.user("ALICE@contoso.com")  # by userName, another case
    bob = await source.user("00ubob", externalId=object_id(sb, "bob@contoso.com"))  # by object id
    carol = await source.user("00ucarol", emails=[{"value": "carol@contoso.com", "type": "work"}])  # by mail
    nobody = await source.user("nobody@okta.local")
    await source.group("Data Engineers", [alice, bob, carol, nobody])
    await sb.admin.update_user("carol@contoso.com", mail="carol@contoso.com")
    await sb.admin.add_user("carol.chen@contoso.com", "Carol Alias")  # no mail: must not confuse carol

    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT])

    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com", "bob@contoso.com", "carol@contoso.com")
    status = status_of(result, ns)
    assert status["scim"] == {"groups": 1, "members": 4, "matched": 3, "unmatched": 1, "inactive": 0, "disabled": 0}
    assert [(u["reason"], u["name"]) for u in status["unresolved"]] == [
        ("PrincipalNotMatched", "ScimUser okta/nobody@okta.local")
    ]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "InSync")
    grants = {a.principal_id.lower(): a.reason for a in result.audit}
    assert "via group okta: Data Engineers" in grants[object_id(sb, "alice@contoso.com")]


async def test_deactivation_and_removal_revoke_and_reactivation_restores(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    alice = await source.user("alice@contoso.com")
    bob = await source.user("bob@contoso.com")
    group = await source.group("Data Engineers", [alice, bob])
    await sync(sb, clients, ns, source, [SCIM_SUBJECT])
    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com", "bob@contoso.com")

    await source.set_active(alice, False)
    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT])
    assert await holders(sb, USER_ROLE) == ids(sb, "bob@contoso.com")
    assert status_of(result, ns)["scim"]["inactive"] == 1

    await source.set_members(group, [alice])  # bob removed from the group
    await source.set_active(alice, True)
    await sync(sb, clients, ns, source, [SCIM_SUBJECT])
    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")


async def test_a_deleted_group_holds_its_members_grants(sb: Sandbox, clients: Clients, ns: str, source: Source) -> None:
    alice = await source.user("alice@contoso.com")
    group = await source.group("Data Engineers", [alice])
    await sync(sb, clients, ns, source, [SCIM_SUBJECT])
    await source.store.delete(Kind.GROUP, group)

    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT])

    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")  # held, not revoked
    status = status_of(result, ns)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ScimGroupNotFound")
    assert "held, not revoked" in ready["message"]
    assert result.plan is not None and not result.plan.deletes


async def test_no_provider_or_no_endpoint_holds_too(sb: Sandbox, clients: Clients, ns: str, source: Source) -> None:
    alice = await source.user("alice@contoso.com")
    await source.group("Data Engineers", [alice])
    await sync(sb, clients, ns, source, [SCIM_SUBJECT])

    for other, reason in ((None, "ScimProviderNotFound"), (Source(ns + "-x"), "ScimProviderNotFound")):
        result = await sync(sb, clients, ns, other, [SCIM_SUBJECT])
        assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")
        assert status_of(result, ns)["unresolved"][0]["reason"] == reason


async def test_graph_and_scim_subjects_mix_and_a_principal_both_bring_is_granted_once(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    alice = await source.user("alice@contoso.com")
    erin = await source.user("erin@contoso.com")
    await source.group("Data Engineers", [alice, erin])

    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT, {"kind": "User", "name": "alice@contoso.com"}])

    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com", "erin@contoso.com")
    assert len([a for a in result.audit if a.action == "grant"]) == 2


async def test_a_disabled_entra_account_gets_nothing(sb: Sandbox, clients: Clients, ns: str, source: Source) -> None:
    judy = await source.user("judy@contoso.com")  # disabled in the seed
    alice = await source.user("alice@contoso.com")
    await source.group("Data Engineers", [judy, alice])

    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT])

    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")
    status = status_of(result, ns)
    assert status["scim"]["disabled"] == 1 and status["unresolved"] == []


async def test_lookups_are_batched_and_cached_and_a_failed_lookup_revokes_nothing(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    members = [await source.user(f"user{i:03d}@okta.local") for i in range(45)]
    members.append(await source.user("alice@contoso.com"))
    await source.group("Data Engineers", members)
    cache = PrincipalLookupCache()

    before = await graph_calls(sb)
    await sync(sb, clients, ns, source, [SCIM_SUBJECT], lookups=cache)
    first = await graph_calls(sb)
    # Rule by rule: the 46 userNames as UPNs (ceil(46 / 20) = 3 batches), then the guest form of the 45
    # that no UPN matched (3 more); alice, found at once, costs one lookup.
    assert first.get("graph.batch.200", 0) - before.get("graph.batch.200", 0) == 6
    await sync(sb, clients, ns, source, [SCIM_SUBJECT], lookups=cache, fresh_directory=False)
    assert await graph_calls(sb) == first  # all from the cache: not one Graph request
    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")

    await sb.admin.inject_fault({"service": "graph", "operation": "batch", "status": 503, "retry_after": 0})
    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT])  # fresh: the cache is not used
    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")  # held
    assert result.plan is not None and not result.plan.deletes
    assert status_of(result, ns)["conditions"][0]["reason"] == "DirectoryReadFailed"


async def test_two_accounts_with_the_pushed_mail_are_ambiguous_and_get_nothing(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    await sb.admin.update_user("erin@contoso.com", mail="team@contoso.com")
    await sb.admin.update_user("grace@contoso.com", mail="team@contoso.com")
    shared = await source.user("00uteam", emails=[{"value": "team@contoso.com", "type": "work"}])
    alice = await source.user("alice@contoso.com")
    await source.group("Data Engineers", [shared, alice])

    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT])

    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com")
    unresolved = status_of(result, ns)["unresolved"]
    assert [(u["reason"], u["name"]) for u in unresolved] == [("PrincipalAmbiguous", "ScimUser okta/00uteam")]
    assert "2 Entra accounts" in unresolved[0]["message"]


async def test_a_guest_is_matched_by_its_ext_form(sb: Sandbox, clients: Clients, ns: str, source: Source) -> None:
    await sb.admin.add_user("bob_fabrikam.com#EXT#@contoso.onmicrosoft.com", "Bob (Fabrikam)")
    guest = await source.user("Bob@Fabrikam.com")
    await source.group("Data Engineers", [guest])

    await sync(sb, clients, ns, source, [SCIM_SUBJECT])

    assert await holders(sb, USER_ROLE) == ids(sb, "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com")


async def test_pushed_users_are_looked_up_as_they_arrive_so_the_sync_finds_every_answer_cached(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    cache = PrincipalLookupCache()
    await sync(sb, clients, ns, source, [SCIM_SUBJECT], lookups=cache)  # the group is not pushed yet
    prefetch = LookupPrefetch(source, delay=0.01)
    prefetch.register(
        (ns, "analytics"), frozenset({(ns, "okta")}), partial(find_accounts, clients.directory, cache=cache)
    )
    members = []
    for upn in ("alice@contoso.com", "bob@contoso.com", "nobody@okta.local"):
        members.append(await source.user(upn))
        prefetch.changed((ns, "okta"), Kind.USER, members[-1], set())
    prefetch.changed((ns, "other"), Kind.USER, "x", set())  # a provider no binding names: ignored
    assert prefetch.queued.keys() == {(ns, "okta")}
    for _ in range(200):
        if prefetch._task is not None and prefetch._task.done():
            break
        await asyncio.sleep(0.01)
    assert prefetch.prefetched == 4  # three UPNs, then nobody's guest form
    await source.group("Data Engineers", members)

    before = await graph_calls(sb)
    await sync(sb, clients, ns, source, [SCIM_SUBJECT], lookups=cache, fresh_directory=False)
    assert await graph_calls(sb) == before  # every lookup came from the cache the prefetch filled
    assert await holders(sb, USER_ROLE) == ids(sb, "alice@contoso.com", "bob@contoso.com")


async def test_an_observe_binding_reports_what_a_pushed_group_would_change_and_writes_nothing(
    sb: Sandbox, clients: Clients, ns: str, source: Source
) -> None:
    alice = await source.user("alice@contoso.com")
    await source.group("Data Engineers", [alice])

    result = await sync(sb, clients, ns, source, [SCIM_SUBJECT], managementPolicy="Observe")

    assert await holders(sb, USER_ROLE) == set()
    assert result.plan is not None and not result.plan.creates
    status = status_of(result, ns)
    assert [m["principal"] for m in status["drift"]["missing"]] == ["alice@contoso.com"]
    assert status["scim"]["matched"] == 1
