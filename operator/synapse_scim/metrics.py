"""Prometheus metrics (prometheus-client), served on /metrics by a small aiohttp server.

Names follow the Prometheus conventions: a `synapse_scim_` prefix, `_total` for counters,
`_seconds` for durations, base units, and labels with bounded values only (no principal ids).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.core.pipeline.transport import AsyncHttpResponse, HttpRequest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "synapse_scim_reconciles_total",
    "Workspace syncs, by outcome.",
    ["namespace", "workspace", "result"],
    registry=REGISTRY,
)
SYNCS = Counter(
    "synapse_scim_syncs_total",
    "Workspace syncs by kind: full (everything read fresh), assignments (Synapse re-listed, directory "
    "from the delta-kept cache) or incremental (caches and the last listing).",
    ["namespace", "workspace", "kind"],
    registry=REGISTRY,
)
SCIM_POKES = Counter(
    "synapse_scim_scim_pokes_total",
    "Workspace syncs asked for by pushed SCIM changes (a burst of changes is coalesced into one).",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
WRITE_LIMIT = Gauge(
    "synapse_scim_write_concurrency",
    "Writes allowed in flight to a workspace now (halved by each 429, grows back on success).",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "synapse_scim_reconcile_duration_seconds",
    "Duration of one workspace sync.",
    ["namespace", "workspace"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
ASSIGNMENTS_CREATED = Counter(
    "synapse_scim_assignments_created_total",
    "Synapse role assignments created (409 adoptions excluded).",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
ASSIGNMENTS_ADOPTED = Counter(
    "synapse_scim_assignments_adopted_total",
    "Grants that already existed (409 RoleAssignmentAlreadyExists).",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
GRANT_LEDGER_WRITE_FAILURES = Counter(
    "synapse_scim_grant_ledger_write_failures_total",
    "Grant-ledger ConfigMap writes (one merge patch per touched shard) that failed; the sync went on and"
    " those grant times are not recorded (the audit log has them).",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
ASSIGNMENTS_DELETED = Counter(
    "synapse_scim_assignments_deleted_total",
    "Synapse role assignments deleted.",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
REMOVALS_HELD = Gauge(
    "synapse_scim_removals_held",
    "Removals withheld by the removal guard or incomplete reads.",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
BINDING_DRIFT = Gauge(
    "synapse_scim_binding_drift",
    "Assignments a binding is missing or has unexpectedly.",
    ["namespace", "binding", "direction"],
    registry=REGISTRY,
)
BINDING_READY = Gauge(
    "synapse_scim_binding_ready",
    "1 when the binding's Ready condition is True.",
    ["namespace", "binding"],
    registry=REGISTRY,
)
BINDING_STALLED = Gauge(
    "synapse_scim_binding_stalled",
    "1 when the binding's Stalled condition is True (a person must act: the reason is in its status).",
    ["namespace", "binding"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "synapse_scim_workspace_last_success_timestamp_seconds",
    "Unix time at which the last sync of the workspace that read and wrote everything (no workspace "
    "failure, no failure a retry could cure) ended, in this process.",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
LOOP_STARTED = Gauge(
    "synapse_scim_workspace_loop_start_timestamp_seconds",
    "Unix time at which this process started the workspace's sync loop (on start, on taking the "
    "leadership, on the workspace's creation).",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
SYNC_INTERVAL = Gauge(
    "synapse_scim_workspace_sync_interval_seconds",
    "The workspace's sync interval (spec.syncInterval): the longest time between two syncs.",
    ["namespace", "workspace"],
    registry=REGISTRY,
)
DIRECTORY_POLLS = Counter(
    "synapse_scim_directory_polls_total",
    "Directory change polls (the Graph delta round of a tenant's watch, or the taking of its first "
    "delta links), by result (success, error). No tenant label: label values carry no ids; the log "
    "line of a failed poll names the tenant.",
    ["result"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "synapse_scim_leader",
    "1 while this process acts (it holds the leader-election Lease, or runs without election); "
    "0 while it is a standby.",
    registry=REGISTRY,
)
AZURE_REQUESTS = Counter(
    "synapse_scim_azure_requests_total",
    "HTTP requests to Azure services.",
    ["service", "operation", "code"],
    registry=REGISTRY,
)
AZURE_ERRORS = Counter(
    "synapse_scim_azure_request_errors_total",
    "Azure requests that failed (HTTP status >= 400 or no response).",
    ["service", "operation", "code"],
    registry=REGISTRY,
)
AZURE_SECONDS = Histogram(
    "synapse_scim_azure_request_duration_seconds",
    "Duration of Azure HTTP requests.",
    ["service", "operation"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

SCIM_REQUESTS = Counter(
    "synapse_scim_scim_requests_total",
    "Requests to the SCIM endpoint, by provider (namespace/name; 'unknown' for a URL that names none),"
    " resource type (Users, Groups, discovery, other), HTTP method and status code.",
    ["provider", "resource", "method", "code"],
    registry=REGISTRY,
)
SCIM_SECONDS = Histogram(
    "synapse_scim_scim_request_duration_seconds",
    "Time to answer a request to the SCIM endpoint, by provider, resource type and HTTP method.",
    ["provider", "resource", "method"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

_GRAPH_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/(\$|%24)batch$"), "batch"),
    ("GET", re.compile(r"/groups/(delta(\(\))?|microsoft\.graph\.delta)$"), "groupsDelta"),
    ("GET", re.compile(r"/groups/[^/]+/transitiveMembers$"), "transitiveMembers"),
    ("GET", re.compile(r"/groups/[^/]+/members$"), "members"),
    ("GET", re.compile(r"/groups/[^/]+$"), "getGroup"),
    ("GET", re.compile(r"/groups$"), "listGroups"),
    ("GET", re.compile(r"/users/(delta(\(\))?|microsoft\.graph\.delta)$"), "usersDelta"),
    ("GET", re.compile(r"/users/[^/]+$"), "getUser"),
    ("GET", re.compile(r"/servicePrincipals/(delta(\(\))?|microsoft\.graph\.delta)$"), "servicePrincipalsDelta"),
    ("GET", re.compile(r"/servicePrincipals/[^/]+$"), "getServicePrincipal"),
    ("GET", re.compile(r"/servicePrincipals$"), "listServicePrincipals"),
]
_SYNAPSE_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/roleAssignments$"), "listRoleAssignments"),
    ("PUT", re.compile(r"/roleAssignments/[^/]+$"), "createRoleAssignment"),
    ("GET", re.compile(r"/roleAssignments/[^/]+$"), "getRoleAssignment"),
    ("DELETE", re.compile(r"/roleAssignments/[^/]+$"), "deleteRoleAssignment"),
    ("GET", re.compile(r"/roleDefinitions$"), "listRoleDefinitions"),
    ("GET", re.compile(r"/roleDefinitions/[^/]+$"), "getRoleDefinition"),
    ("GET", re.compile(r"/rbacScopes$"), "listScopes"),
    ("POST", re.compile(r"/checkAccessSynapseRbac$"), "checkAccess"),
]


def _path(url: str) -> str:
    """urlsplit(url).path, without building the other four parts (this runs once per Azure request)."""
    path = url.partition("#")[0].partition("?")[0]
    if "://" not in path:
        return urlsplit(url).path
    start = path.find("/", path.index("://") + 3)
    return path[start:] if start >= 0 else ""


def operation(service: str, method: str, url: str) -> str:
    """A bounded operation name for a request (never an id: labels must not explode)."""
    path = _path(url).rstrip("/")
    for m, pattern, name in _GRAPH_ROUTES if service == "graph" else _SYNAPSE_ROUTES:
        if m == method.upper() and pattern.search(path):
            return name
    return "other"


# (service, operation, code) -> its request counter, duration histogram and error counter (None
# below 400). `labels()` validates and locks on every call; at one observation per Azure request (tens
# of thousands a sync) the children are looked up once. Bounded: operations and codes are few.
_CHILDREN: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}


def observe(service: str, method: str, url: str, code: int | str, seconds: float) -> None:
    op = operation(service, method, url)
    key = (service, op, str(code))
    children = _CHILDREN.get(key)
    if children is None:
        failed = not isinstance(code, int) or code >= 400
        children = _CHILDREN[key] = (
            AZURE_REQUESTS.labels(*key),
            AZURE_SECONDS.labels(service, op),
            AZURE_ERRORS.labels(*key) if failed else None,
        )
    requests, seconds_histogram, errors = children
    requests.inc()
    seconds_histogram.observe(seconds)
    if errors is not None:
        errors.inc()


class SynapseMetricsPolicy(AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """azure-core policy: every HTTP attempt to Synapse (retries included) is counted.

    One coroutine around the next policy rather than a SansIOHTTPPolicy: azure-core runs each SansIO
    hook through a runner and an `isinstance(result, Awaitable)` check, which at one Synapse request
    per write cost more than the counting itself."""

    async def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, AsyncHttpResponse]:
        start = time.monotonic()
        http = request.http_request
        try:
            response = await self.next.send(request)
        except Exception:
            observe("synapse", http.method, http.url, "error", time.monotonic() - start)
            raise
        observe("synapse", http.method, http.url, response.http_response.status_code, time.monotonic() - start)
        return response


async def graph_request_hook(request: Any) -> None:
    request.extensions["synapse_scim_start"] = time.monotonic()


async def graph_response_hook(response: Any) -> None:
    request = response.request
    start = request.extensions.get("synapse_scim_start", time.monotonic())
    observe("graph", request.method, str(request.url), response.status_code, time.monotonic() - start)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


_serving: dict[tuple[str, int], web.AppRunner] = {}


async def serve(port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start the endpoint, once per process: a standby (leader election) serves it before the kopf
    operator starts, and the operator's startup handler then finds it running."""
    if (host, port) in _serving:
        return _serving[(host, port)]
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    _serving[(host, port)] = runner
    return runner


def forget_binding(namespace: str, name: str) -> None:
    """Drop a binding's gauges once it is gone: a deleted binding must not read as ready or drifted."""
    _remove(BINDING_READY, namespace, name)
    _remove(BINDING_STALLED, namespace, name)
    for direction in ("missing", "unexpected"):
        _remove(BINDING_DRIFT, namespace, name, direction)


def forget_workspace(namespace: str, name: str) -> None:
    """Drop a workspace's gauges when its loop ends (deleted, or this replica stopped acting for it)."""
    for gauge in (REMOVALS_HELD, WRITE_LIMIT, LAST_SUCCESS, LOOP_STARTED, SYNC_INTERVAL):
        _remove(gauge, namespace, name)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass  # never set: nothing to drop
