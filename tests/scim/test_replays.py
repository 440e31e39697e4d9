"""The request sequences Microsoft documents for Entra provisioning (with and without
`aadOptscim062020`) and Okta documents for its SCIM 2.0 integration, replayed against the real endpoint
(the aiohttp server in process, the in-memory store) with the documented expected answers. Each
sequence and its sources are in tests/scim/replays/*.json; tests/scim/replay.py replays them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from synapse_scim.adapters.scim.server import Provider, Registry, TokenBucket, make_app
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.service import ScimService

from .replay import HERE, load, replay

TOKENS = {"okta": "okta-replay-token-0123456789abcdef0123", "entra": "entra-replay-token-0123456789abcdef012"}
SEQUENCES = sorted(path.name for path in HERE.glob("*.json"))


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    """A fresh endpoint for each sequence, each provider over its own in-memory store."""
    registry = Registry()
    for name, token in TOKENS.items():
        bucket = TokenBucket(rate=1e6, burst=10**6)  # the replays of paging send hundreds of requests
        registry.add(Provider("data-platform", name, ScimService(MemoryStore()), lambda token=token: [token], bucket))
    runner = web.AppRunner(make_app(registry))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/scim/v2/data-platform"
    finally:
        await runner.cleanup()


def test_the_documented_sequences_are_all_here() -> None:
    assert SEQUENCES == ["entra-aadoptscim062020.json", "entra.json", "okta.json"]
    for name in SEQUENCES:
        sequence = load(name)
        assert sequence["sources"] and sequence["steps"]
        for step in sequence["steps"]:
            assert step.get("check") or step.get("source"), f"{name}: {step['name']} cites no source"


@pytest.mark.parametrize("name", SEQUENCES)
async def test_replay(origin: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    sequence = load(name)
    provider = sequence["provider"]
    outcome = await replay(sequence, f"{origin}/{provider}", TOKENS[provider])
    with capsys.disabled():
        print(f"\n{outcome.line}")
    assert not outcome.failures, "\n".join(outcome.failures)
    assert outcome.passed == outcome.requests > 0
