"""A real aiohttp SCIM endpoint on the loopback, with two providers over in-memory stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from synapse_scim.adapters.scim.server import Provider, Registry, ServerSettings, TokenBucket, make_app
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.service import ScimService

OKTA_TOKEN = "okta-token-0123456789abcdef0123456789abcdef"
OKTA_NEXT_TOKEN = "okta-token-rotated-fedcba9876543210fedcba98"
ENTRA_TOKEN = "entra-token-aaaabbbbccccddddeeeeffff00001111"


@dataclass
class Endpoint:
    origin: str
    registry: Registry
    okta_tokens: list[str]

    def base(self, namespace: str = "data-platform", provider: str = "okta") -> str:
        return f"{self.origin}/scim/v2/{namespace}/{provider}"


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    registry = Registry()
    okta_tokens = [OKTA_TOKEN]
    registry.add(Provider("data-platform", "okta", ScimService(MemoryStore()), lambda: list(okta_tokens)))
    registry.add(
        Provider(
            "data-platform",
            "entra",
            ScimService(MemoryStore()),
            lambda: [ENTRA_TOKEN],
            TokenBucket(rate=1000, burst=1000),
        )
    )
    runner = web.AppRunner(make_app(registry, ServerSettings(max_body=64 * 1024)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Endpoint(f"http://127.0.0.1:{port}", registry, okta_tokens)
    finally:
        await runner.cleanup()
