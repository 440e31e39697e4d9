"""scim2-tester 0.5.2's conformance checks (check_server) against the real endpoint.

Every check passes but three, which are our decisions (docs/scim.md), not defects:
- check_remove_attribute on a group's `members`: a bare remove of members is refused (400), never
  applied: it would revoke every role the group grants;
- check_add_attribute / check_replace_attribute on `members`: the checker sends a random `display`
  and expects it back; a member's `display` is not stored but is the user's current displayName.
search_with_attributes POSTs to the root `/.search` (every resource type at once): served, and passing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from aiohttp import web
from kubernetes import client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server
from scim2_tester.utils import Status

from synapse_scim.adapters.scim.kube_store import KubeScimStore
from synapse_scim.adapters.scim.server import Provider, Registry, TokenBucket, make_app
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.service import ScimService
from synapse_scim.core.scim.store import ScimStore

TOKEN = "conformance-token-0123456789abcdef01234567"
PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
OUR_DECISIONS = {"check_remove_attribute", "check_add_attribute", "check_replace_attribute"}


@contextmanager
def serving(make_store: Callable[[], Awaitable[ScimStore]]) -> Iterator[str]:
    """The endpoint on its own event loop in a thread: check_server drives a synchronous client."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def start() -> None:
        registry = Registry()
        store = await make_store()
        registry.add(Provider("ns", "conformance", ScimService(store), lambda: [TOKEN], TokenBucket(1e6, 10**6)))
        runner = web.AppRunner(make_app(registry))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["runner"], state["port"] = runner, runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield f"http://127.0.0.1:{state['port']}/scim/v2/ns/conformance/"
    finally:
        runner = state["runner"]
        assert isinstance(runner, web.AppRunner)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@pytest.fixture
def base_url() -> Iterator[str]:
    async def memory() -> ScimStore:
        return MemoryStore()

    with serving(memory) as url:
        yield url


def test_scim2_tester_checks(base_url: str) -> None:
    check(base_url)


def test_scim2_tester_checks_on_the_kubernetes_store(cluster: Any, namespace: str) -> None:
    """The same checks with the users and groups kept in the real kube-apiserver."""
    with cluster.api_client() as api:
        store = KubeScimStore(client.CustomObjectsApi(api), namespace, "conformance")

        async def kube() -> ScimStore:
            await store.start()
            return store

        try:
            with serving(kube) as url:
                check(url)
        finally:
            store.close()


def check(base_url: str) -> None:
    with httpx2.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        results = check_server(SyncSCIMClient(http))
    failing = [r for r in results if r.status not in PASSING and r.status is not Status.SKIPPED]
    unexpected = [f"{r.title}: {r.reason}" for r in failing if r.title not in OUR_DECISIONS]
    assert not unexpected
    for result in failing:  # and each fails for the documented reason
        assert "members" in (result.reason or "")
    searched = [r for r in results if r.title == "search_with_attributes"]
    assert len(searched) == 4 and all(r.status in PASSING for r in searched), searched  # 2 types x 2
    passed = sum(1 for r in results if r.status in PASSING)
    print(f"scim2-tester: {passed}/{len(results)} checks passed")
    assert passed >= 130, f"{passed}/{len(results)} checks passed"
