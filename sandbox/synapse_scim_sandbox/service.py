"""What the three emulated services share: path parsing, the request pipeline (latency, faults,
counting, request log), bearer-token checks and JSON responses.

Each service answers every path through one catch-all route and routes by itself on the raw path:
`//` collapses, each segment is percent-decoded, so `/v1.0//groups/x` and `/users/a%40b.com` work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .apps import Token
from .faults import Fault, FaultInjector
from .state import State

log = logging.getLogger("synapse_scim.sandbox")

#: Request headers copied into the request log when present.
LOGGED_HEADERS = (
    "retry-attempt",
    "x-ms-continuation",
    "client-request-id",
    "x-ms-client-request-id",
    "consistencylevel",
    "prefer",
    "user-agent",  # the operator names its replica there: which replica wrote what (tests/ha)
)


class ServiceError(Exception):
    """Raised by routing or handlers: becomes an error response in the service's own shape."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def split_path(raw_path: str) -> list[str]:
    path = raw_path.split("?", 1)[0]
    return [unquote(s) for s in path.split("/") if s]


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Call:
    """One request as a handler sees it."""

    request: web.Request
    operation: str
    segments: list[str]
    params: dict[str, str] = field(default_factory=dict)
    token: Token | None = None
    body: Any = None

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query

    @property
    def base_url(self) -> str:
        return f"https://{self.request.host}"


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass
class Route:
    operation: str
    handler: Handler
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None  # the parsed request body, when routing needed it


#: Marks a request served inside a JSON batch (`POST /v1.0/$batch`): logged, but not counted as a
#: round trip of its own.
BATCHED_HEADER = "X-Sandbox-Batched"


class Service:
    """Base of the login, Graph and Synapse emulators."""

    name = ""

    def __init__(self, state: State, faults: FaultInjector, stopping: asyncio.Event) -> None:
        self.state = state
        self.faults = faults
        self.stopping = stopping

    # ---- to override
    async def route(self, request: web.Request, segments: list[str]) -> Route:
        raise NotImplementedError

    def error(
        self, request: web.Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        raise NotImplementedError

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """The last word on a response's headers: runs (as the app's on_response_prepare signal) after
        aiohttp has normalised them, just before they are sent."""

    def default_error_code(self, status: int) -> str:
        return {
            429: "TooManyRequests",
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }.get(status, "Error")

    # ---- pipeline
    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        segments = split_path(request.raw_path)
        fault: Fault | None = None
        label: str | None = None
        call: Call | None = None
        try:
            route = await self.route(request, segments)
            call = Call(request, route.operation, segments, route.params, body=route.body)
        except ServiceError as e:
            route = None
            response: web.StreamResponse = self.error(request, e.status, e.code, e.message, e.headers)
        except Exception:
            log.exception("sandbox %s: cannot route %s %s", self.name, request.method, request.raw_path)
            route = None
            response = self.error(request, 400, "BadRequest", "The request could not be understood.")
        if self.faults.latency.get(self.name, 0.0) > 0:
            await self.pause(self.faults.latency[self.name])
        if route is not None and call is not None:
            fault = self.faults.pick(self.name, route.operation, {**route.params, "method": request.method})
            if fault is not None:
                response, label = await self.apply_fault(request, route, call, fault)
            else:
                response = await self.run(route, call, request)
        self.faults.record(
            {
                "time": time.time(),
                "service": self.name,
                "operation": route.operation if route else "unknown",
                "method": request.method,
                "path": request.raw_path,
                "status": label or response.status,
                "client_id": call.token.client_id if call is not None and call.token is not None else None,
                "params": call.params if call is not None else {},
                "fault": fault.kind if fault is not None else None,
                "rule": fault.rule.id if fault is not None else None,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "headers": {h: request.headers[h] for h in LOGGED_HEADERS if h in request.headers},
                "batched": request.headers.get(BATCHED_HEADER),
            }
        )
        return response

    async def run(self, route: Route, call: Call, request: web.Request) -> web.StreamResponse:
        try:
            return await route.handler(call)
        except ServiceError as e:
            return self.error(request, e.status, e.code, e.message, e.headers)
        except Exception:
            log.exception("sandbox %s: %s %s failed", self.name, request.method, request.raw_path)
            return self.error(request, 500, "InternalServerError", "The sandbox failed to handle the request.")

    async def pause(self, seconds: float, request: web.Request | None = None) -> None:
        """Sleep, but wake up at once when the sandbox stops (or, given `request`, when its client hung up)."""
        if seconds <= 0 or self.stopping.is_set():
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if request is not None and (request.transport is None or request.transport.is_closing()):
                return
            try:
                await asyncio.wait_for(self.stopping.wait(), min(left, 0.05) if request is not None else left)
                return
            except TimeoutError:
                pass

    async def apply_fault(
        self, request: web.Request, route: Route, call: Call, fault: Fault
    ) -> tuple[web.StreamResponse, str | None]:
        rule, kind = fault.rule, fault.kind
        if kind == "delay":  # served normally after the delay (still logged with the fault)
            await self.pause(rule.delay)
            return await self.run(route, call, request), None
        if kind == "reset":
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            return web.Response(status=500), "reset"
        if kind == "timeout":
            await self.pause(rule.hold if rule.hold is not None else self.faults.hold, request)
            return self.error(
                request, 504, rule.code or self.default_error_code(504), rule.message or "The operation timed out."
            ), "timeout"
        status = int(kind)
        headers: dict[str, str] = {}
        retry_after = rule.retry_after if rule.retry_after is not None else (1 if status == 429 else None)
        if retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(math.ceil(retry_after))  # whole seconds: kiota parses only integers
        return self.error(
            request,
            status,
            rule.code or self.default_error_code(status),
            rule.message or self.fault_message(status),
            headers,
        ), None

    def fault_message(self, status: int) -> str:
        return {429: "Too many requests. Please try again later.", 503: "The service is temporarily unavailable."}.get(
            status, "An internal error occurred."
        )

    # ---- helpers for handlers
    def bearer(self, request: web.Request, audience: str) -> tuple[Token | None, str | None]:
        """(token, None) when the request carries a valid token for `audience`, else (None, reason)
        with reason one of missing, malformed, unknown, expired, audience."""
        header = request.headers.get("Authorization")
        if not header:
            return None, "missing"
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, "malformed"
        token = self.state.tokens.tokens.get(value.strip())
        if token is None:
            return None, "unknown"
        if token.expires_at <= self.state.clock.now():
            return None, "expired"
        if token.audience != audience:
            return None, "audience"
        return token, None


REQUEST_ID = web.RequestKey("sandbox_request_id", str)


def request_id(request: web.Request) -> str:
    rid = request.get(REQUEST_ID)
    if rid is None:
        rid = str(uuid.uuid4())
        request[REQUEST_ID] = rid
    return rid


def json_response(
    data: Any,
    *,
    status: int = 200,
    content_type: str = "application/json; charset=utf-8",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    response = web.Response(status=status, body=dumps(data), headers=headers)
    response.headers["Content-Type"] = content_type
    return response
