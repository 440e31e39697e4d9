"""The soak's identity provider (bench/soak.py): users and groups pushed to the operator's SCIM endpoint
(`synapse-scim run --scim-port`, TLS, one ScimProvider with a token Secret) as Okta would push them, and
the model of what was pushed, which says which Synapse grants the ScimGroup subjects want.

A push is retried as an identity provider retries: a connection refused or reset (the operator was
SIGKILLed), a 429, a 409 conflict or a 5xx is sent again until it is answered; a create that was applied
before its answer was lost (409 uniqueness on the retry) is found by a filter, a delete answered 404 on
its retry was applied (a 503 counts as a lost answer: the endpoint answers it when its store is slower
than its request timeout, and the write goes on to its end). 429 and 503 are counted as `deferred`, and
so is the 409 of an update another replica's writes of the same object outran for every attempt ("kept
changing ...; retry": docs/scim.md, "Writes"); a 409 to a create is a uniqueness refusal, a rejection.
Every other answer that is not the expected one is counted by code (`rejected`):
besides the injected refusals (the bare remove of all members, which must be 400 and change nothing), it
should stay 0.
"""

from __future__ import annotations

import base64
import os
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme

from synapse_scim_sandbox.devcluster import free_port

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
PROVIDER = "okta"
SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

SCIM_GROUPS = ["Data Engineers", "Analysts", "Contractors"]
# Users the identity provider knows but Entra ID does not: they match nothing and get nothing.
GHOSTS = [f"ghost{i}@fabrikam.example" for i in range(6)]
RETRYABLE = {409, 429, 500, 502, 503, 504}
# Answers that ask the identity provider to come back later (the rate limit; the endpoint starting, or
# its Kubernetes API away): retried, counted apart from the rejections.
DEFERRED = {429, 503}


class PushRejected(Exception):
    """An answer an identity provider would not retry: the change did not happen."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:300]}")
        self.status = status


@dataclass
class PushedUser:
    """One user of the identity provider (created or not yet)."""

    key: str  # the soak's name for it
    upn: str | None  # the Entra user it is, None: nobody in Entra ID (unmatched)
    user_name: str
    external_id: str | None = None
    id: str | None = None  # the SCIM id while it exists at the endpoint
    active: bool = True

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [USER_SCHEMA],
            "userName": self.user_name,
            "active": self.active,
            "name": {"givenName": self.key, "familyName": "Soak"},
        }
        if self.external_id:
            body["externalId"] = self.external_id
        return body


@dataclass
class PushedGroup:
    name: str
    id: str | None = None  # None: deleted at the endpoint (or not pushed yet)
    members: set[str] = field(default_factory=set)  # PushedUser keys


@dataclass
class ScimWorld:
    """What the identity provider has pushed: the model the ScimGroup subjects' grants come from."""

    users: dict[str, PushedUser]
    groups: dict[str, PushedGroup]

    @classmethod
    def new(cls, upns: Iterable[str], ids: dict[str, str], rng: Any) -> ScimWorld:
        users: dict[str, PushedUser] = {}
        for i, upn in enumerate(upns):
            style = rng.choice(["upn", "upn", "UPN", "externalId"])
            key = f"u{i:02d}"
            if style == "externalId":  # matched by the Entra object id the identity provider maps in
                users[key] = PushedUser(key, upn, f"okta.{key}@corp.example", external_id=ids[upn])
            else:  # matched by userName as the UPN (without case)
                users[key] = PushedUser(key, upn, upn.upper() if style == "UPN" else upn, external_id=f"00u{key}")
        for i, ghost in enumerate(GHOSTS):
            key = f"g{i:02d}"
            users[key] = PushedUser(key, None, ghost, external_id=f"00u{key}")
        return cls(users, {name: PushedGroup(name) for name in SCIM_GROUPS})

    def created(self) -> list[PushedUser]:
        return [u for u in self.users.values() if u.id is not None]

    def group_members(self, name: str) -> set[str] | None:
        """The keys of the group's members, None while the group is deleted."""
        group = self.groups[name]
        return None if group.id is None else set(group.members)

    def remove_user(self, key: str) -> None:
        """A user deleted at the endpoint: gone from every group (docs/scim.md)."""
        self.users[key].id = None
        self.users[key].active = True
        for group in self.groups.values():
            group.members.discard(key)


def _contended(method: str, r: httpx.Response) -> bool:
    return method in ("PUT", "PATCH") and r.status_code == 409 and "kept changing" in r.text


class ScimPusher:
    """The identity provider's HTTP side: the TLS client, its retries, and what it counted."""

    def __init__(self, base_url: str | list[str], token: str, ca_path: Path, deadline: float = 120.0) -> None:
        # Several base URLs: one per replica, each request to any of them (as a Service spreads them).
        self.base_urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_url, self.deadline = self.base_urls[0], deadline
        context = ssl.create_default_context(cafile=str(ca_path))
        self.http = httpx.Client(
            verify=context,
            headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM, "Accept": SCIM},
            timeout=30.0,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.lock = threading.Lock()
        self.requests = 0  # answered
        self.unanswered = 0  # requests sent again after no answer (refused, reset, timed out): the endpoint was away
        self.rejected: Counter[str] = Counter()  # unexpected answers, by code
        self.rejections: list[str] = []  # the first few, in full
        self.injected: Counter[str] = Counter()  # refusals the soak asked for, by code
        self.deferred: Counter[str] = Counter()  # 429 and 503 with Retry-After: retried as told, by code
        self.pool = ThreadPoolExecutor(max_workers=50, thread_name_prefix="scim-push")

    def url(self) -> str:
        return self.base_urls[0] if len(self.base_urls) == 1 else random.choice(self.base_urls)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()

    def _count(self, counter: Counter[str] | None = None, code: int | None = None, answered: bool = True) -> None:
        with self.lock:
            if answered:
                self.requests += 1
            else:
                self.unanswered += 1
            if counter is not None:
                counter[str(code)] += 1

    def _rejected(self, method: str, path: str, r: httpx.Response) -> None:
        self._count(self.rejected, r.status_code)
        with self.lock:
            if len(self.rejections) < 20:
                self.rejections.append(f"{time.time():.3f} {method} {path}: {r.status_code} {r.text[:300]}")

    def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        found_after_retry: Callable[[], dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """One push, retried until answered as expected (see the module's docstring)."""
        deadline = time.monotonic() + self.deadline
        lost = False  # an earlier attempt got no answer: it may have been applied
        while True:
            try:
                r = self.http.request(method, self.url() + path, json=body)
            except httpx.TransportError as exc:
                if not lost:
                    self._count(answered=False)
                lost = True
                if time.monotonic() > deadline:
                    raise PushRejected(0, f"no answer for {self.deadline:g}s: {exc!r}") from exc
                time.sleep(0.3)
                continue
            if r.status_code < 300:
                self._count()
                return r.json() if r.content else None
            if lost and method == "DELETE" and r.status_code == 404:
                self._count()
                return None  # applied before its answer was lost
            if lost and method == "POST" and r.status_code == 409 and found_after_retry is not None:
                self._count()
                return found_after_retry()
            if _contended(method, r) and time.monotonic() <= deadline:
                # Another replica kept writing the same object through every attempt (docs/scim.md,
                # "Writes"): the endpoint says retry, as a version conflict is retried by the provider.
                self._count(self.deferred, r.status_code)
            elif r.status_code in DEFERRED and time.monotonic() <= deadline:
                self._count(self.deferred, r.status_code)  # asked to come back later: not a refusal
                # A 503 may be the endpoint's own timeout while the write goes on to its end (docs/scim.md):
                # like a lost answer, the retry may find it applied (a DELETE's 404, a POST's 409).
                lost = lost or r.status_code == 503
            else:
                self._rejected(method, path, r)
            if r.status_code not in RETRYABLE or time.monotonic() > deadline:
                raise PushRejected(r.status_code, r.text)
            time.sleep(min(5.0, float(r.headers.get("Retry-After") or 0.3)))

    def refused(self, method: str, path: str, body: dict[str, Any], expect: int) -> bool:
        """A request the endpoint must refuse (an injected rejection); True when it answered `expect`."""
        while True:
            try:
                r = self.http.request(method, self.url() + path, json=body)
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            if r.status_code == expect:
                self._count(self.injected, r.status_code)
                return True
            if r.status_code in DEFERRED:  # asked to come back later (the Kubernetes API away): do
                self._count(self.deferred, r.status_code)
                time.sleep(min(5.0, float(r.headers.get("Retry-After") or 0.3)))
                continue
            self._rejected(method, path, r)
            return False

    def find(self, resource: str, attribute: str, value: str) -> dict[str, Any]:
        found = self.send("GET", f"/{resource}?filter={attribute}%20eq%20%22{value}%22") or {}
        resources = found.get("Resources") or []
        if len(resources) != 1:
            raise PushRejected(0, f"{resource} {attribute} eq {value!r}: {len(resources)} found after a retried create")
        return dict(resources[0])

    # -- the requests an identity provider sends -------------------------------------------------------

    def create_user(self, user: PushedUser) -> str:
        created = self.send(
            "POST", "/Users", user.body(), found_after_retry=lambda: self.find("Users", "userName", user.user_name)
        )
        assert created is not None
        return str(created["id"])

    def create_group(self, name: str, member_ids: Iterable[str]) -> str:
        body = {"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": m} for m in member_ids]}
        created = self.send("POST", "/Groups", body, found_after_retry=lambda: self.find("Groups", "displayName", name))
        assert created is not None
        return str(created["id"])

    def patch(self, resource: str, resource_id: str, *operations: dict[str, Any]) -> None:
        self.send("PATCH", f"/{resource}/{resource_id}", {"schemas": [PATCH_SCHEMA], "Operations": list(operations)})

    def add_members(self, group_id: str, member_ids: Iterable[str]) -> None:
        self.patch("Groups", group_id, {"op": "add", "path": "members", "value": [{"value": m} for m in member_ids]})

    def remove_member(self, group_id: str, member_id: str, dialect: str) -> None:
        if dialect == "okta":  # Okta: a path with a value filter
            self.patch("Groups", group_id, {"op": "remove", "path": f'members[value eq "{member_id}"]'})
        else:  # Entra ID: a value list
            self.patch("Groups", group_id, {"op": "Remove", "path": "members", "value": [{"value": member_id}]})

    def set_active(self, user_id: str, active: bool) -> None:
        self.patch("Users", user_id, {"op": "replace", "value": {"active": active}})

    def delete(self, resource: str, resource_id: str) -> None:
        self.send("DELETE", f"/{resource}/{resource_id}")


class ScimEndpoint:
    """The operator's SCIM settings for the soak: a fixed port (kept across restarts), a test CA and the
    endpoint's certificate, the token Secret and the ScimProvider."""

    def __init__(self, workdir: Path, namespace: str) -> None:
        self.namespace = namespace
        self.token = f"{PROVIDER}-" + base64.b32encode(os.urandom(20)).decode().lower()
        ca = trustme.CA(organization_name="synapse-scim soak")
        self.tls_dir = workdir / "scim-tls"
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        leaf = ca.issue_cert("127.0.0.1")
        leaf.private_key_pem.write_to_path(str(self.tls_dir / "tls.key"))
        (self.tls_dir / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        self.ca_path = workdir / "scim-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.ports = [free_port()]  # one per replica (`for_replicas`)

    @property
    def port(self) -> int:
        return self.ports[0]

    def for_replicas(self, n: int) -> None:
        self.ports = [free_port() for _ in range(n)]

    @property
    def base_url(self) -> str:
        return self.base_urls[0]

    @property
    def base_urls(self) -> list[str]:
        return [f"https://127.0.0.1:{port}/scim/v2/{self.namespace}/{PROVIDER}" for port in self.ports]

    def env(self, replica: int = 0) -> dict[str, str]:
        port = self.ports[replica]
        return {
            "SYNAPSE_SCIM_SCIM_PORT": str(port),
            "SYNAPSE_SCIM_SCIM_HOST": "127.0.0.1",
            "SYNAPSE_SCIM_SCIM_TLS_DIR": str(self.tls_dir),
            "SYNAPSE_SCIM_SCIM_BASE_URL": f"https://127.0.0.1:{port}",
        }

    def provider_body(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ScimProvider",
            "metadata": {"name": PROVIDER},
            "spec": {"tokenSecretRef": {"name": f"{PROVIDER}-scim-token"}},
        }

    def create(self, h: Any) -> None:
        """The token Secret and the ScimProvider in the harness's namespace."""
        h.secret(f"{PROVIDER}-scim-token", {"token": self.token})
        h.custom.create_namespaced_custom_object(GROUP, VERSION, h.namespace, "scimproviders", self.provider_body())

    def delete_provider(self, h: Any) -> None:
        h.custom.delete_namespaced_custom_object(GROUP, VERSION, h.namespace, "scimproviders", PROVIDER)

    def recreate_provider(self, h: Any) -> None:
        h.custom.create_namespaced_custom_object(GROUP, VERSION, h.namespace, "scimproviders", self.provider_body())
