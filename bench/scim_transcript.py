"""A transcript of an Okta-style provisioning conversation with the SCIM endpoint, for a person to read
(and for the closing note of issue 14): user create, group push, member add, member remove,
deactivation, each request and its answer as sent (the URL shown unencoded), the bearer token and the
password Okta sends redacted.

    .venv/bin/python bench/scim_transcript.py                       # starts the endpoint in process
    SCIM_TOKEN=... .venv/bin/python bench/scim_transcript.py --url https://scim.example.com/scim/v2/ns/okta
    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_transcript.py --cluster

Without --url it starts the aiohttp endpoint (adapters/scim/server.py) on the loopback with one
provider over the in-memory store, and a random token. With --url it talks to a running endpoint
(`synapse-scim run`) with the token in $SCIM_TOKEN; it creates a user and a group there (named
transcript-<random>) and leaves them, deactivated and emptied: remove them afterwards if unwanted.
With --cluster it starts a local control plane and `synapse-scim run` serving a ScimProvider over TLS
(bench/scim_operator.py), talks to that, and ends with the ScimProvider's status as `kubectl get -o
yaml` shows it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from synapse_scim.adapters.scim.server import Provider, Registry, TokenBucket, make_app
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.service import ScimService

SCIM = "application/scim+json"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
REDACTED = "Bearer <redacted>"


class Transcript:
    """Sends requests and writes each exchange; the token never reaches the output."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str, out: TextIO) -> None:
        self.session, self.base, self.token, self.out = session, base.rstrip("/"), token, out
        self.statuses: list[int] = []

    async def __call__(self, title: str, method: str, path: str, body: Any = None) -> Any:
        url = self.base + path
        headers = {"Authorization": f"Bearer {self.token}", "Accept": SCIM}
        data = None
        if body is not None:
            headers["Content-Type"] = SCIM
            data = json.dumps(body).encode()
        self.write(f"\n### {title}\n\n{method} {url}")
        for name, value in headers.items():
            self.write(f"{name}: {REDACTED if name == 'Authorization' else value}")
        if body is not None:
            shown = {k: "<redacted>" if k.lower() == "password" else v for k, v in body.items()}
            self.write("\n" + json.dumps(shown, indent=2))
        async with self.session.request(method, url, data=data, headers=headers) as response:
            text = await response.text()
            self.statuses.append(response.status)
            self.write(f"\n<- {response.status} {response.reason}")
            self.write(f"Content-Type: {response.headers.get('Content-Type', '')}")
            answer = json.loads(text) if text else None
            if answer is not None:
                self.write("\n" + json.dumps(answer, indent=2, ensure_ascii=False))
            return answer

    def write(self, text: str) -> None:
        self.out.write(text.replace(self.token, "<redacted>") + "\n")


async def conversation(send: Callable[..., Awaitable[Any]], suffix: str) -> None:
    """What Okta sends (developer.okta.com SCIM 2.0 protocol reference): a user assigned, a group
    pushed, a member added and removed (with the group rename Okta sends along), a deactivation."""
    user_name = f"transcript.{suffix}@example.com"
    await send("Okta: does the user exist?", "GET", f'/Users?filter=userName eq "{user_name}"&startIndex=1&count=100')
    user = await send(
        "Okta: create the user",
        "POST",
        "/Users",
        {
            "schemas": [USER],
            "userName": user_name,
            "name": {"givenName": "Transcript", "familyName": "User"},
            "emails": [{"primary": True, "value": user_name, "type": "work"}],
            "displayName": "Transcript User",
            "locale": "en-US",
            "externalId": f"00u{suffix}",
            "groups": [],
            "password": secrets.token_urlsafe(12),
            "active": True,
        },
    )
    group_name = f"transcript-{suffix}"
    await send("Okta: does the pushed group exist?", "GET", f'/Groups?filter=displayName eq "{group_name}"')
    group = await send(
        "Okta: push the group", "POST", "/Groups", {"schemas": [GROUP], "displayName": group_name, "members": []}
    )
    rename = {"op": "replace", "value": {"id": group["id"], "displayName": group_name}}
    await send(
        "Okta: add the member",
        "PATCH",
        f"/Groups/{group['id']}",
        {
            "schemas": [PATCH],
            "Operations": [
                rename,
                {"op": "add", "path": "members", "value": [{"value": user["id"], "display": user_name}]},
            ],
        },
    )
    await send("The group with its member", "GET", f"/Groups/{group['id']}")
    await send(
        "Okta: remove the member",
        "PATCH",
        f"/Groups/{group['id']}",
        {"schemas": [PATCH], "Operations": [rename, {"op": "remove", "path": f'members[value eq "{user["id"]}"]'}]},
    )
    await send("The group without it", "GET", f"/Groups/{group['id']}")
    await send(
        "Okta: deactivate the user (Okta never deletes users)",
        "PATCH",
        f"/Users/{user['id']}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )


async def run(url: str | None, token: str | None, out: TextIO, ssl_context: ssl.SSLContext | None = None) -> list[int]:
    runner: web.AppRunner | None = None
    if url is None:
        token = secrets.token_urlsafe(32)
        registry = Registry()
        registry.add(
            Provider("data-platform", "okta", ScimService(MemoryStore()), lambda: [token], TokenBucket(50, 100))
        )
        runner = web.AppRunner(make_app(registry))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/scim/v2/data-platform/okta"
    assert token
    out.write(f"# SCIM transcript: an Okta-style conversation\n\nBase URL: {url}\n")
    try:
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
        async with aiohttp.ClientSession(connector=connector) as session:
            transcript = Transcript(session, url, token, out)
            await conversation(transcript, secrets.token_hex(4))
            return transcript.statuses
    finally:
        if runner is not None:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url", help="a provider's base URL (.../scim/v2/<namespace>/<provider>); token in $SCIM_TOKEN"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="start a local control plane and `synapse-scim run`, and talk to that"
    )
    args = parser.parse_args(argv)
    if args.cluster:
        return against_cluster(sys.stdout)
    token = os.environ.get("SCIM_TOKEN") if args.url else None
    if args.url and not token:
        parser.error("--url needs the provider's token in $SCIM_TOKEN")
    statuses = asyncio.run(run(args.url, token, sys.stdout))
    return 0 if statuses == EXPECTED else 1


def against_cluster(out: TextIO) -> int:
    from synapse_scim_sandbox.devcluster import ControlPlane

    with tempfile.TemporaryDirectory(prefix="scim-transcript-") as tmp, ControlPlane() as cp:
        return 0 if against_operator(cp, Path(tmp), "data-platform", out) == EXPECTED else 1


def against_operator(cp: Any, workdir: Path, namespace: str, out: TextIO) -> list[int]:
    """The conversation with `synapse-scim run` serving provider okta in a namespace of cluster cp, then
    the provider's status and the operator's audit lines."""
    from scim_operator import ScimOperator

    endpoint = ScimOperator(cp, workdir, namespace, "okta", env={"SYNAPSE_SCIM_SCIM_STATUS_INTERVAL": "1s"})
    endpoint.create_provider()
    endpoint.start()
    try:
        ready = _wait_serving(endpoint.base_url, endpoint.token, endpoint.ssl_context())
        statuses = asyncio.run(run(endpoint.base_url, endpoint.token, out, endpoint.ssl_context()))
        time.sleep(2.5)  # the status is written at most every status interval (1 s here)
        out.write(
            f"\n(`synapse-scim run -n {namespace}` with the SCIM endpoint on, started {ready:.1f} s before the"
            " first request; the ScimProvider okta and its token Secret were created beforehand.)\n"
        )
        out.write("\n### The ScimProvider's status (kubectl get scimprovider okta -o yaml)\n\n")
        out.write(json.dumps(endpoint.status(), indent=2) + "\n")
        out.write("\n### The operator's audit lines (logger synapse_scim.audit)\n\n")
        for line in endpoint.log_lines("synapse_scim.audit"):
            out.write(line.replace(endpoint.token, "<redacted>") + "\n")
    except BaseException:
        sys.stderr.write(endpoint.logs())
        raise
    finally:
        endpoint.stop()
    return statuses


def _wait_serving(base_url: str, token: str, context: ssl.SSLContext, timeout: float = 120.0) -> float:
    started = time.monotonic()
    request = urllib.request.Request(f"{base_url}/ServiceProviderConfig", headers={"Authorization": f"Bearer {token}"})
    while True:
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{base_url}: not serving after {timeout:.0f} s")
        time.sleep(0.2)


EXPECTED = [200, 201, 200, 201, 204, 200, 204, 200, 200]

if __name__ == "__main__":
    sys.exit(main())
