"""The pieces of the SCIM endpoint's runtime that need no cluster: settings, the base URL, the provider
status (Ready or the reason; lastRequestTime written at most every interval), the tokens read from a
Secret, and the TLS certificate reloaded (or kept, when the new one does not load)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.scim.providers import NO_TOKENS, SECRET_NOT_FOUND, ReloadingTLS, SecretTokens, TLSFilesError
from synapse_scim.adapters.scim.server import Provider, Registry, fingerprint
from synapse_scim.controller.scim import ScimEndpoint, ScimSettings, Served
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService


def test_settings_from_env_and_the_endpoint_url() -> None:
    assert ScimSettings.from_env({}).port == 0  # off by default: a cluster that does not use it exposes nothing
    settings = ScimSettings.from_env({"SYNAPSE_SCIM_SCIM_PORT": "8443", "POD_NAMESPACE": "synapse-scim"})
    assert settings.endpoint("data-platform", "okta") == (
        "https://synapse-scim-scim.synapse-scim.svc:8443/scim/v2/data-platform/okta"
    )
    settings = ScimSettings.from_env(
        {"SYNAPSE_SCIM_SCIM_PORT": "8443", "SYNAPSE_SCIM_SCIM_BASE_URL": "https://scim.example.com/"}
    )
    assert settings.endpoint("data-platform", "okta") == "https://scim.example.com/scim/v2/data-platform/okta"
    assert ScimSettings.from_env({"SYNAPSE_SCIM_SCIM_STATUS_INTERVAL": "2m"}).status_interval == 120
    with pytest.raises(ValueError, match="on or off"):
        ScimSettings.from_env({"SYNAPSE_SCIM_SCIM_TLS": "maybe"})


class FakeCore:
    def __init__(self) -> None:
        self.data: dict[str, str] | None = None
        self.reads = 0
        self.fail: int | None = None

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.reads += 1
        if self.fail is not None:
            raise ApiException(status=self.fail, reason="boom")
        if self.data is None:
            raise ApiException(status=404, reason="Not Found")
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in self.data.items()}
        return type("Secret", (), {"data": encoded})()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_tokens_are_every_value_of_the_secret_read_again_after_the_cache(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="synapse_scim.adapters.scim.providers")
    core, clock = FakeCore(), Clock()
    tokens = SecretTokens(core, "ns", "okta-token", ttl=5, clock=clock)  # type: ignore[arg-type]
    assert await tokens.get() == [] and tokens.problem and tokens.problem.reason == SECRET_NOT_FOUND
    assert "ns/okta-token" in tokens.problem.message
    core.data = {"a": "token-one\n", "b": "token-two"}
    assert await tokens.get() == []  # cached
    clock.now += 5
    assert await tokens.get() == ["token-one", "token-two"] and tokens.problem is None
    reads = core.reads
    assert await tokens.get() == ["token-one", "token-two"] and core.reads == reads
    # The API server briefly away: the tokens read before stay; the next request reads again.
    core.fail, clock.now = 500, clock.now + 5
    assert await tokens.get() == ["token-one", "token-two"]
    core.fail = None
    core.data = {}
    assert await tokens.get() == [] and tokens.problem and tokens.problem.reason == NO_TOKENS
    logged = caplog.text
    assert "token-one" not in logged and fingerprint("token-one") in logged


class FakeStore:
    is_ready = True

    def __init__(self) -> None:
        self.memory = MemoryStore()

    async def count(self, kind: Kind) -> int:
        return await self.memory.count(kind)


def _served(tokens: SecretTokens, status: dict[str, Any] | None = None) -> Served:
    store = FakeStore()
    provider = Provider("ns", "okta", ScimService(store.memory), tokens.get)
    obj = {"metadata": {"namespace": "ns", "name": "okta", "generation": 2}, "status": status or {}}
    return Served(provider, store, tokens, obj)  # type: ignore[arg-type]


async def test_status_says_ready_or_why_not_and_moves_last_request_time_at_most_every_interval() -> None:
    core = FakeCore()
    tokens = SecretTokens(core, "ns", "okta-token", ttl=0)  # type: ignore[arg-type]
    endpoint = ScimEndpoint.__new__(ScimEndpoint)
    endpoint.settings = ScimSettings(port=8443, service_host="scim.svc", status_interval=30)
    served = _served(tokens)
    await tokens.get()
    status = await endpoint.desired_status(served)
    [ready] = status["conditions"]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "SecretNotFound", 2)
    assert status["endpoint"] == "https://scim.svc:8443/scim/v2/ns/okta"
    assert (status["users"], status["groups"]) == (0, 0)
    assert "lastRequestTime" not in status

    core.data = {"t": "x" * 40}
    await tokens.get()
    served.obj["status"] = status
    served.provider.last_request = time.time()
    status = await endpoint.desired_status(served)
    [ready] = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("True", "Serving")
    first = status["lastRequestTime"]
    # Ten seconds later: still the time written before (no write for every request).
    served.obj["status"] = status
    served.provider.last_request += 10
    assert (await endpoint.desired_status(served))["lastRequestTime"] == first
    served.provider.last_request += 25
    assert (await endpoint.desired_status(served))["lastRequestTime"] > first
    # Unchanged inputs give the same status: nothing to write.
    served.obj["status"] = await endpoint.desired_status(served)
    assert await endpoint.desired_status(served) == served.obj["status"]


def _issue(directory: Path) -> trustme.CA:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    (directory / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    (directory / "tls.key").write_bytes(leaf.private_key_pem.bytes())
    return ca


def test_tls_is_reloaded_when_the_files_change_and_kept_when_they_do_not_load(tmp_path: Path) -> None:
    _issue(tmp_path)
    tls = ReloadingTLS(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.check() is False  # nothing changed
    _issue(tmp_path)
    os.utime(tmp_path / "tls.crt", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert tls.check() is True and tls.reloads == 1
    (tmp_path / "tls.key").write_text("not a key")
    assert tls.check() is False and tls.reloads == 1  # the previous certificate stays


def test_missing_tls_files_say_which_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(TLSFilesError, match=r"tls\.crt.*tls\.key.*SYNAPSE_SCIM_SCIM_TLS_DIR"):
        ReloadingTLS(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))


def test_a_namespace_listing_forgets_only_its_own_missing_providers() -> None:
    endpoint = ScimEndpoint.__new__(ScimEndpoint)
    endpoint.namespaces = ["b"]
    endpoint._listed, endpoint._all_listed = set(), asyncio.Event()
    endpoint.registry = Registry(listed=False)
    forgotten: list[tuple[str, str]] = []
    endpoint.served = {("a", "entra"): None, ("b", "okta"): None, ("b", "gone"): None}  # type: ignore[dict-item]
    endpoint.forget = lambda key: (forgotten.append(key), endpoint.served.pop(key))  # type: ignore[method-assign]
    endpoint.take_listing("b", {"okta"}, "10")
    assert forgotten == [("b", "gone")]
    assert endpoint._all_listed.is_set()  # the syncs may read the providers now
    assert endpoint.registry.listed.is_set()  # and the requests that waited for them are answered
    endpoint.take_listing(None, {"a/entra"}, "11")  # watching every namespace: names are namespace/name
    assert forgotten == [("b", "gone"), ("b", "okta")]
