"""The chart's RBAC for the SCIM endpoint is sufficient and each verb is needed, proven by the operator
itself: `helm install --set scim.enabled=true`, then `synapse-scim run` with the installed Deployment's
own arguments and SCIM environment, signed in with a TokenRequest token of the chart's ServiceAccount,
serves a ScimProvider over TLS: an identity provider's create / read / update / delete round trip goes
through it, a second replica (a leader-election standby) reads what the first wrote, and the provider's
status reports Ready with the chart's base URL. Take one verb away from the installed Role and the
request that needs it fails (and the operator logs the 403): the proof bites.

The admin applies the token Secret and the ScimProvider (the user applying manifests); only the
operator processes use the ServiceAccount's kubeconfig. test_chart.py asserts the rules verbatim.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from kubernetes import client
from operator_rbac import can, forbidden_lines, remove_verb_from_role

from support.chart import fullname, install_chart, service_account_kubeconfig
from support.kube import gone
from synapse_scim_sandbox.devcluster import free_port

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
TOKEN = "okta-" + "7" * 40
SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Replicas:
    """`synapse-scim run` processes started as the installed Deployment starts its container."""

    def __init__(self, cluster: Any, namespace: str, release: str, kubeconfig: Path, tmp: Path) -> None:
        self.namespace, self.release, self.kubeconfig, self.tmp = namespace, release, kubeconfig, tmp
        self.admin = cluster.api_client()
        self.core = client.CoreV1Api(self.admin)
        self.custom = client.CustomObjectsApi(self.admin)
        deployment = client.AppsV1Api(self.admin).read_namespaced_deployment(fullname(release), namespace)
        container = deployment.spec.template.spec.containers[0]
        self.args: list[str] = list(container.args)
        self.env = {e.name: e.value for e in container.env if e.value is not None}
        self.port = int(next(a for a in self.args if a.startswith("--scim-port=")).split("=", 1)[1])
        tls = tmp / "scim-tls"  # stands for the mounted Secret at SYNAPSE_SCIM_SCIM_TLS_DIR
        tls.mkdir()
        self.ca = trustme.CA(organization_name="synapse-scim chart test")
        leaf = self.ca.issue_cert("127.0.0.1")
        (tls / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        (tls / "tls.key").write_bytes(leaf.private_key_pem.bytes())
        self.tls_dir = tls
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> None:
        # The first replica listens on the chart's port (the test installs the chart with a free one);
        # a second one on the loopback needs a port of its own.
        port = self.port if not self.processes else free_port()
        args = [
            f"--scim-port={port}"
            if a.startswith("--scim-port=")
            else "--liveness="
            if a.startswith("--liveness=")
            else a
            for a in self.args
        ]
        assert args[0] == "run"
        env = {
            **os.environ,
            **self.env,
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAME": f"{fullname(self.release)}-{name}",  # the Deployment's downward API
            "POD_NAMESPACE": self.namespace,
            "SYNAPSE_SCIM_METRICS_PORT": "0",
            "SYNAPSE_SCIM_SCIM_HOST": "127.0.0.1",
            "SYNAPSE_SCIM_SCIM_TLS_DIR": str(self.tls_dir),
            "SYNAPSE_SCIM_SCIM_TOKEN_CACHE": "0.5s",
            "SYNAPSE_SCIM_SCIM_STATUS_INTERVAL": "1s",
        }
        assert self.env["SYNAPSE_SCIM_SCIM_TLS_DIR"] == "/etc/synapse-scim/scim-tls"  # where the chart mounts it
        log = open(self.tmp / f"operator-{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "synapse_scim.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.ports[name] = port

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.processes.clear()
        self.admin.close()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("operator-*.log")))

    def provider(self) -> None:
        data = {"token": base64.b64encode(TOKEN.encode()).decode()}
        self.core.create_namespaced_secret(self.namespace, {"metadata": {"name": "okta-token"}, "data": data})
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "scimproviders",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ScimProvider",
                "metadata": {"name": "okta"},
                "spec": {"tokenSecretRef": {"name": "okta-token"}},
            },
        )

    def status(self) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "scimproviders", "okta")
        return found.get("status") or {}

    def base(self, replica: str = "a") -> str:
        return f"https://127.0.0.1:{self.ports[replica]}/scim/v2/{self.namespace}/okta"

    def http(self) -> httpx.Client:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return httpx.Client(
            verify=context, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": SCIM}, timeout=20
        )

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (httpx.HTTPError, ssl.SSLError, OSError, KeyError) as exc:
                last = exc
            time.sleep(0.3)
        raise AssertionError(f"{what}: not in {timeout}s (last: {last!r})\n--- log ---\n{self.log()[-6000:]}")

    def serving(self, replica: str = "a") -> bool:
        # A replica that has not listed the ScimProviders yet holds a request until it has (up to its
        # request timeout, then 503): a client timeout meanwhile means "not serving" too.
        with self.http() as http:
            try:
                return http.get(f"{self.base(replica)}/ServiceProviderConfig").status_code == 200
            except httpx.TimeoutException:
                return False


@pytest.fixture
def release(cluster, namespace, request) -> Iterator[str]:
    """The chart with scim.enabled in the test's namespace (namespaced by default; "clusterwide": every
    namespace), its SCIM port a free one on this machine."""
    mode = getattr(request, "param", "namespaced")
    name = f"scim-{namespace[2:]}"
    args = ["--set", "scim.enabled=true", "--set", "scim.tls.secretName=scim-tls", "--set", f"scim.port={free_port()}"]
    if mode == "namespaced":
        args += ["--set-json", f'watchNamespaces=["{namespace}"]']
    install_chart(cluster, namespace, name, *args)
    try:
        yield name
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace)
        with cluster.api_client() as api:
            rbac = client.RbacAuthorizationV1Api(api)
            assert gone(lambda: rbac.read_cluster_role(fullname(name)))
            assert gone(lambda: rbac.read_namespaced_role(fullname(name), namespace))


@pytest.fixture
def sa_kubeconfig(cluster, namespace, release, tmp_path) -> Path:
    return service_account_kubeconfig(cluster, namespace, release, tmp_path / "operator.kubeconfig")


@pytest.fixture
def replicas(cluster, namespace, release, sa_kubeconfig, tmp_path) -> Iterator[Replicas]:
    # Depends on `release`: the processes stop before the chart (and its RBAC) is uninstalled.
    found = Replicas(cluster, namespace, release, sa_kubeconfig, tmp_path)
    try:
        yield found
    finally:
        found.stop()


def _user(name: str) -> dict[str, Any]:
    return {
        "schemas": [USER_SCHEMA],
        "userName": f"{name}@example.com",
        "externalId": f"00u-{name}",
        "name": {"givenName": name.title(), "familyName": "Example"},
        "emails": [{"primary": True, "value": f"{name}@example.com", "type": "work"}],
        "active": True,
    }


@pytest.mark.parametrize("release", ["namespaced", "clusterwide"], indirect=True)
def test_scim_endpoint_serves_under_the_charts_rbac(replicas, namespace, release):
    env = replicas.env
    assert env["SYNAPSE_SCIM_LEADER_ELECTION"] == "on"  # a replica that is not the leader serves all the same
    replicas.provider()
    replicas.start("a")
    replicas.wait_for(replicas.serving, "the provider served by replica a")
    base = replicas.base("a")
    with replicas.http() as http:
        # create (users, a group, its member shards), update (PATCH members, PUT), list/watch (the index
        # that filters read), delete, get (a DELETE of an id the index does not know asks the API server).
        ada = http.post(f"{base}/Users", json=_user("ada"))
        assert ada.status_code == 201, ada.text
        grace = http.post(f"{base}/Users", json=_user("grace"))
        assert grace.status_code == 201, grace.text
        ada_id, grace_id = ada.json()["id"], grace.json()["id"]
        group = http.post(f"{base}/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Data Engineers"})
        assert group.status_code == 201, group.text
        gid = group.json()["id"]
        added = http.patch(
            f"{base}/Groups/{gid}",
            json={
                "schemas": [PATCH_SCHEMA],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": ada_id}, {"value": grace_id}]}],
            },
        )
        assert added.status_code in (200, 204), added.text
        put = http.put(f"{base}/Users/{grace_id}", json={**_user("grace"), "id": grace_id, "active": False})
        assert put.status_code == 200 and put.json()["active"] is False, put.text
        found = http.get(f"{base}/Users", params={"filter": 'userName eq "ADA@example.com"'}).json()
        assert [u["id"] for u in found["Resources"]] == [ada_id]
        members = http.get(f"{base}/Groups/{gid}").json()["members"]
        assert {m["value"] for m in members} == {ada_id, grace_id}
        unknown = http.delete(f"{base}/Users/00000000-0000-4000-8000-000000000000")
        assert unknown.status_code == 404, unknown.text
        throwaway = http.post(f"{base}/Users", json=_user("edsger"))
        assert throwaway.status_code == 201, throwaway.text
        deleted = http.delete(f"{base}/Users/{throwaway.json()['id']}")
        assert deleted.status_code == 204, deleted.text

    # A second replica (a leader-election standby) lists and watches what the first wrote.
    replicas.start("b")
    replicas.wait_for(lambda: replicas.serving("b"), "the provider served by replica b")
    with replicas.http() as http:
        read = replicas.wait_for(
            lambda: (answer := http.get(f"{replicas.base('b')}/Groups/{gid}")).status_code == 200 and answer.json(),
            "the group through replica b",
        )
        assert {m["value"] for m in read["members"]} == {ada_id, grace_id}
        assert http.get(f"{replicas.base('b')}/Users/{grace_id}").json()["active"] is False
        more = []
        for i in range(8):
            answer = http.post(f"{base}/Users", json=_user(f"user{i}"))
            assert answer.status_code == 201, answer.text
            more.append(answer.json()["id"])
    # Concurrent writes through both replicas: conflicts resolved (get after a 409), no member lost.
    answers = _concurrent_member_adds(replicas, gid, more)
    assert all(a.status_code in (200, 204) for a in answers), [a.text for a in answers]
    with replicas.http() as http:
        for replica in ("a", "b"):
            replicas.wait_for(
                lambda replica=replica: (
                    {m["value"] for m in http.get(f"{replicas.base(replica)}/Groups/{gid}").json()["members"]}
                    == {ada_id, grace_id, *more}
                ),
                f"every member through replica {replica}",
            )

    # The provider's status, written with the ServiceAccount's patch on scimproviders/status: the URL an
    # administrator pastes is the chart's base URL (the Service's DNS name here) and the provider's path.
    status = replicas.wait_for(
        lambda: (s := replicas.status()).get("users") == 10 and s.get("groups") == 1 and s, "the provider's status"
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    svc = f"{fullname(release)}-scim.{namespace}.svc"
    assert env["SYNAPSE_SCIM_SCIM_BASE_URL"] == f"https://{svc}"
    assert status["endpoint"] == f"https://{svc}/scim/v2/{namespace}/okta"
    log = replicas.log()
    assert not forbidden_lines(log), "the operator was refused something:\n" + "\n".join(forbidden_lines(log))


def _concurrent_member_adds(replicas: Replicas, group: str, members: list[str]) -> list[httpx.Response]:
    """One PATCH per member onto one group, half through replica a and half through b, all at once: the
    replicas' writes collide (409 on resourceVersion), and each loser reads the group again by name
    (`get`) before it retries."""

    def add(i: int, member: str) -> httpx.Response:
        with replicas.http() as http:
            return http.patch(
                f"{replicas.base('ab'[i % 2])}/Groups/{group}",
                json={
                    "schemas": [PATCH_SCHEMA],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}],
                },
            )

    with ThreadPoolExecutor(len(members)) as pool:
        return list(pool.map(add, range(len(members)), members))


def _post_user(replicas: Replicas, name: str = "ada") -> httpx.Response:
    with replicas.http() as http:
        return http.post(f"{replicas.base()}/Users", json=_user(name))


def _delete_created(replicas: Replicas) -> httpx.Response:
    created = _post_user(replicas, "edsger")
    assert created.status_code == 201, created.text
    with replicas.http() as http:
        return http.delete(f"{replicas.base()}/Users/{created.json()['id']}")


def _update_user(replicas: Replicas) -> httpx.Response:
    created = _post_user(replicas, "grace")
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    with replicas.http() as http:
        return http.put(f"{replicas.base()}/Users/{uid}", json={**_user("grace"), "id": uid, "active": False})


# (resource as written in the Role, verb, the request that needs it or None: the provider is never served)
BROKEN: dict[str, tuple[str, str, Callable[[Replicas], httpx.Response] | None]] = {
    # The ScimProviders cannot be listed: no replica knows the provider, its URL is never served.
    "provider-list": ("scimproviders", "list", None),
    # The status cannot be written: the provider is served but never reports Ready nor its endpoint.
    "provider-status-patch": ("scimproviders/status", "patch", None),
    # Users cannot be created: POST /Users fails (500, "its log says why") and stores nothing.
    "user-create": ("scimusers", "create", _post_user),
    # Users cannot be replaced: PUT fails.
    "user-update": ("scimusers", "update", _update_user),
    # Groups cannot be read by name: writes that collide (409) cannot re-read the group and fail.
    "group-get": ("scimgroups", "get", None),
    # Users cannot be deleted.
    "user-delete": ("scimusers", "delete", _delete_created),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_removing_one_scim_verb_from_the_role_breaks_it(replicas, cluster, namespace, release, sa_kubeconfig, case):
    resource, verb, request = BROKEN[case]
    plural, _, sub = resource.partition("/")
    assert can(sa_kubeconfig, cluster, verb, plural, namespace, group=GROUP, subresource=sub or None)
    remove_verb_from_role(cluster, namespace, fullname(release), resource, verb, GROUP)
    assert not can(sa_kubeconfig, cluster, verb, plural, namespace, group=GROUP, subresource=sub or None)

    replicas.provider()
    replicas.start("a")
    if case == "provider-list":
        replicas.wait_for(
            lambda: [line for line in forbidden_lines(replicas.log()) if plural in line],
            f"the operator's 403 on {resource}",
        )
        time.sleep(3)
        assert not replicas.serving(), "served without list on scimproviders"
        assert not replicas.status(), "a status written for a provider the replica cannot list"
        return
    replicas.wait_for(replicas.serving, "the provider served")
    if case == "group-get":
        replicas.start("b")
        replicas.wait_for(lambda: replicas.serving("b"), "the provider served by replica b")
        with replicas.http() as http:
            group = http.post(f"{replicas.base()}/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Ops"})
            assert group.status_code == 201, group.text
            users = []
            for i in range(10):
                answer = http.post(f"{replicas.base()}/Users", json=_user(f"user{i}"))
                assert answer.status_code == 201, answer.text
                users.append(answer.json()["id"])
        failed: list[httpx.Response] = []
        for _ in range(5):  # a collision is all but certain in the first round
            failed = [a for a in _concurrent_member_adds(replicas, group.json()["id"], users) if a.status_code == 500]
            if failed:
                break
        assert failed, "no write collided: get on scimgroups was not exercised"
        assert "its log says why" in failed[0].text
        replicas.wait_for(
            lambda: [line for line in forbidden_lines(replicas.log()) if f'"{plural}"' in line],
            f"the operator's 403 on {resource}",
        )
        return
    if request is None:  # the status patch
        replicas.wait_for(
            lambda: [line for line in forbidden_lines(replicas.log()) if "status" in line],
            "the operator's 403 on the provider's status",
        )
        time.sleep(3)
        assert not replicas.status(), "a status written without patch on scimproviders/status"
        return
    answer = request(replicas)
    assert answer.status_code == 500, answer.text
    assert "its log says why" in answer.text
    replicas.wait_for(
        lambda: [line for line in forbidden_lines(replicas.log()) if f'"{plural}"' in line],
        f"the operator's 403 on {resource}",
    )
