"""The fault-injecting API proxy (devcluster/apiproxy.py) against the real control plane: it forwards
as the admin, over TLS the cluster's CA vouches for; each kind of fault does what it says (and only to
the requests its rules match); watches are streamed as they come, and ended early when asked."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from synapse_scim_sandbox.devcluster.apiproxy import (
    OBJECT_WRITES,
    SCIM_IO_WRITES,
    STATUS_PATCHES,
    ApiFaultProxy,
    Match,
)

CONFIGMAPS = Match.of("PATCH", r"/configmaps/")


@pytest.fixture
def proxy(cluster: Any, tmp_path: Any) -> Iterator[ApiFaultProxy]:
    with ApiFaultProxy(cluster, seed=3, workdir=tmp_path / "apiproxy", hold=0.2) as started:
        yield started


@pytest.fixture
def core(proxy: ApiFaultProxy) -> Iterator[client.CoreV1Api]:
    with proxy.api_client() as api:
        yield client.CoreV1Api(api)


def test_the_presets_match_what_they_say():
    binding = "/apis/synapse-scim.io/v1alpha1/namespaces/team/synapserolebindings/analysts"
    secret = "/api/v1/namespaces/team/secrets/synapse-sp"
    assert STATUS_PATCHES("PATCH", binding + "/status") and STATUS_PATCHES("PUT", binding + "/status")
    assert not STATUS_PATCHES("PATCH", binding) and not STATUS_PATCHES("GET", binding + "/status")
    assert OBJECT_WRITES("PATCH", binding) and not OBJECT_WRITES("PATCH", binding + "/status")
    assert SCIM_IO_WRITES("PATCH", binding) and SCIM_IO_WRITES("PUT", binding + "/status")
    assert not any(m("PATCH", secret) for m in (OBJECT_WRITES, SCIM_IO_WRITES))
    assert not OBJECT_WRITES("DELETE", binding) and not OBJECT_WRITES("POST", binding)


def value(cluster: Any, namespace: str) -> str:
    with cluster.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_config_map("cm", namespace).data["v"]


def test_each_fault_does_what_it_says_and_only_to_what_it_matches(cluster, namespace, proxy, core):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"v": "0"}})
    assert proxy.forwarded >= 1 and not proxy.injected, "forwarded as is without faults"

    proxy.set_faults(1.0, kinds=("conflict",), match=CONFIGMAPS)
    with pytest.raises(ApiException) as conflict:
        core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "1"}})
    assert conflict.value.status == 409
    assert '"reason": "Conflict"' in conflict.value.body and '"kind": "Status"' in conflict.value.body
    assert core.read_namespaced_config_map("cm", namespace).data["v"] == "0", "a GET is not matched"

    proxy.set_faults(1.0, kinds=("timeout",), match=CONFIGMAPS)
    with pytest.raises(ApiException) as timeout:
        core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "2"}})
    assert timeout.value.status == 504 and '"reason": "Timeout"' in timeout.value.body

    proxy.set_faults(1.0, kinds=("cut",), match=CONFIGMAPS)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "3"}})
    assert value(cluster, namespace) == "0", "conflict, timeout and cut never reach the API server"

    proxy.set_faults(1.0, kinds=("lost",), match=CONFIGMAPS)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "4"}})
    assert value(cluster, namespace) == "4", "a lost answer's write was applied"

    proxy.clear()
    core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "5"}})
    assert value(cluster, namespace) == "5"
    assert proxy.injected == {"conflict": 1, "timeout": 1, "cut": 1, "lost": 1}
    assert proxy.matched == {"PATCH": 4}

    proxy.set_faults(0.5, kinds=("conflict",), match=CONFIGMAPS)
    outcomes = []
    for i in range(40):
        try:
            core.patch_namespaced_config_map("cm", namespace, {"data": {"v": str(i)}})
            outcomes.append("ok")
        except ApiException:
            outcomes.append("conflict")
    assert 5 <= outcomes.count("conflict") <= 35, "faults at the rate asked for, not all or none"
    with pytest.raises(ValueError):
        proxy.set_faults(0.5, kinds=("teapot",))


def test_watches_are_streamed_as_they_come_and_ended_early_when_asked(namespace, proxy, core):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"v": "0"}})
    events: queue.Queue[str] = queue.Queue()

    def consume() -> None:
        for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=60):
            events.put(f"{event['type']} {event['object'].data['v']}")
            if event["type"] == "MODIFIED":
                return  # closes the watch

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert events.get(timeout=30) == "ADDED 0"
    core.patch_namespaced_config_map("cm", namespace, {"data": {"v": "1"}})
    # Well before the watch's 60 s are over: the proxy passes each chunk on as it comes.
    assert events.get(timeout=30) == "MODIFIED 1"
    consumer.join(30)

    proxy.set_watch_faults(end_after=0.5)
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=60):
        assert event["type"] == "ADDED"
    assert proxy.injected["watch_end"] == 1, "the second watch ended early, cleanly"
    assert proxy.watches == 2
