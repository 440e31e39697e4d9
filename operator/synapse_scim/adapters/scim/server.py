"""The SCIM 2.0 endpoint over aiohttp: `/scim/v2/<namespace>/<provider>/...` (docs/scim.md).

What it adds to core/scim/service.py, which decides everything else:

- bearer tokens: each provider's current tokens (several at once, for rotation; read at every request,
  so a rotated Secret needs no restart), compared in constant time against every token; 401 with
  `WWW-Authenticate: Bearer`. A token of one provider opens only that provider's URL. Logs carry a
  token's fingerprint (the first 12 hex digits of its SHA-256), never the token;
- limits: a body cap (413), a nesting cap (400), a token bucket per provider (429 with `Retry-After`),
  a budget of failed authentications per client address (GuessLimiter: 429 before any comparison), the
  page size, and a connection idle timeout that also cuts off a client dribbling its headers;
- the SCIM wire: `application/scim+json` on every response, the SCIM error body, JSON parsing;
- one audit line per change on the `synapse_scim.audit` logger (provider, operation, resource type and
  id, userName/displayName, outcome, token fingerprint), and one per failed authentication;
- timeouts: a body that does not arrive within `body_timeout` is 408; an operation that takes longer
  than `request_timeout` is answered 503 with `Retry-After` while the write it started finishes (it is
  never cut in the middle); no other write of it starts after that (core/scim/errors.py: Abandoned);
- metrics: synapse_scim_scim_requests_total{provider,resource,method,code} and the latency histogram
  synapse_scim_scim_request_duration_seconds (metrics.py);
- rejected requests: every 4xx/5xx answer on a served provider's URL is counted in the provider's
  RejectionWindow under a short reason (`401 invalid token`, `400 invalidFilter`...), the last hour in
  one-minute buckets; controller/scim.py writes it to the provider's status."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import urllib3
from aiohttp import web
from scim2_models import SCIMException

from synapse_scim import metrics
from synapse_scim.core.scim import discovery
from synapse_scim.core.scim.errors import CLIENT_ANSWERED, Abandoned, ClientAnswered, error_body, from_exception
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import Answer, ScimService

SCIM_CONTENT_TYPE = "application/scim+json"
MAX_BODY_BYTES = 1024 * 1024  # a 8,192-member PUT of a group is ~0.5 MB
PREFIX = "/scim/v2"

audit_log = logging.getLogger("synapse_scim.audit")
log = logging.getLogger(__name__)


def fingerprint(token: str) -> str:
    """What logs say of a token: the first 12 hex digits of its SHA-256 (tokens are long and random)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class TokenBucket:
    """`rate` requests per second on average, bursts of `burst`."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> float:
        """0 when the request may go, else the seconds until it may."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


# -- rejected requests: a sliding window per provider ----------------------------------------------------

REJECTED_WINDOW = 3600.0  # status.rejected counts the rejections of the last hour
REJECTED_BUCKET = 60.0  # one-minute buckets: 60 counters per reason
REJECTED_REASONS = 20  # at most this many reasons per provider; more are counted as OTHER_REASON
OTHER_REASON = "other"

# The cause a status stands for, when the answer names no SCIM scimType.
_CAUSES = {
    401: "invalid token",
    404: "not found",
    405: "method not allowed",
    408: "body timeout",
    409: "conflict",
    413: "body too large",
    429: "rate limited",
    500: "internal error",
    503: "timeout",
}


def rejection_reason(status: int, body: bytes | None) -> str:
    """The short reason of a rejected answer: its status and the SCIM scimType of its error body (as the
    catalogue in docs/troubleshooting.md names them), else the cause the status stands for. Derived from
    the answer sent, never from the request: no token, no body."""
    scim_type = None
    if body:
        try:
            found = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            found = None
        if isinstance(found, dict) and isinstance(found.get("scimType"), str):
            scim_type = found["scimType"]
    if scim_type and scim_type.isalnum() and len(scim_type) <= 40:
        return f"{status} {scim_type}"
    cause = _CAUSES.get(status)
    if cause is None:
        try:
            cause = HTTPStatus(status).phrase.lower()
        except ValueError:
            cause = "error"
    return f"{status} {cause}"


@dataclass(frozen=True)
class Rejection:
    """One reason's figures in the window."""

    reason: str
    count: int
    last: float  # time.time() of the last rejection with this reason


class _Buckets:
    """One reason's counts: a ring of buckets, each tagged with the bucket number it counts."""

    __slots__ = ("counts", "last", "numbers")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.numbers = [-1] * size
        self.last = 0.0


class RejectionWindow:
    """Rejected requests by reason over the last `window` seconds, in buckets of `bucket` seconds: memory is
    bounded (`max_reasons` reasons of window/bucket counters each), whatever the request rate."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        window: float = REJECTED_WINDOW,
        bucket: float = REJECTED_BUCKET,
        max_reasons: int = REJECTED_REASONS,
    ) -> None:
        self.clock, self.bucket, self.max_reasons = clock, bucket, max_reasons
        self.size = max(1, math.ceil(window / bucket))
        self.reasons: dict[str, _Buckets] = {}

    def _number(self, now: float) -> int:
        return math.floor(now / self.bucket)

    def _count(self, buckets: _Buckets, number: int) -> int:
        oldest = number - self.size + 1
        return sum(c for c, n in zip(buckets.counts, buckets.numbers, strict=True) if oldest <= n <= number)

    def add(self, reason: str) -> None:
        now = self.clock()
        number = self._number(now)
        buckets = self.reasons.get(reason)
        if buckets is None:
            if len(self.reasons) >= self.max_reasons:
                self._drop_expired(number)
            if len(self.reasons) >= self.max_reasons and reason != OTHER_REASON:
                self.add(OTHER_REASON)
                return
            buckets = self.reasons[reason] = _Buckets(self.size)
        slot = number % self.size
        if buckets.numbers[slot] != number:
            buckets.numbers[slot], buckets.counts[slot] = number, 0
        buckets.counts[slot] += 1
        buckets.last = max(buckets.last, now)

    def _drop_expired(self, number: int) -> None:
        for reason, buckets in list(self.reasons.items()):
            if self._count(buckets, number) == 0:
                del self.reasons[reason]

    def snapshot(self) -> list[Rejection]:
        """The reasons with a rejection in the window, the most frequent first (then by reason)."""
        number = self._number(self.clock())
        self._drop_expired(number)
        found = [Rejection(r, self._count(b, number), b.last) for r, b in self.reasons.items()]
        return sorted(found, key=lambda each: (-each.count, each.reason))

    def total(self) -> int:
        return sum(each.count for each in self.snapshot())


@dataclass
class Provider:
    """One ScimProvider as the server serves it."""

    namespace: str
    name: str
    service: ScimService
    # The accepted tokens now (every key of its Secret): a list, or a coroutine (read with a short cache).
    tokens: Callable[[], Sequence[str] | Awaitable[Sequence[str]]]
    limiter: TokenBucket = field(default_factory=lambda: TokenBucket(rate=50, burst=100))
    last_request: float | None = None  # time.time() of the last authenticated request
    rejected: RejectionWindow = field(default_factory=RejectionWindow)  # this replica's rejections

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def current_tokens(self) -> Sequence[str]:
        found = self.tokens()
        if inspect.isawaitable(found):
            return await found
        return found

    async def authenticate(self, presented: str) -> str | None:
        """The fingerprint of the matching token, or None (matching_token)."""
        matched = matching_token(presented, await self.current_tokens())
        return fingerprint(matched) if matched is not None else None


def matching_token(presented: str, tokens: Sequence[str]) -> str | None:
    """The token `presented` is, or None. Every token is compared, each in constant time on SHA-256 digests
    (equal lengths whatever was sent), so neither timing nor the number of tokens tells how close a guess
    came or which token failed: a near-miss costs what a wholly wrong token costs."""
    wanted = hashlib.sha256(presented.encode()).digest()
    matched: str | None = None
    for token in tokens:
        if token and hmac.compare_digest(wanted, hashlib.sha256(token.encode()).digest()):
            matched = token
    return matched


GUESS_ADDRESSES = 4096  # the clients whose failed attempts are remembered: memory is bounded


class GuessLimiter:
    """Failed authentications per client address: a token bucket each (`rate` a second, bursts of
    `burst`). While an address's bucket is empty its requests are answered 429 before any token is
    compared, so a guesser learns nothing from them: guessing runs at `rate` a second at most.

    By address, not by provider: a wrong token and an unknown provider answer alike (401), and a limit
    per provider would let a guesser lock the identity provider out of its own URL. Behind an Ingress
    every client has the Ingress's address: a guesser there slows the identity provider's requests only
    while the bucket is empty, and only if they come through the same address."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, TokenBucket] = {}

    def _bucket(self, address: str) -> TokenBucket:
        bucket = self.buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.clock)
            if len(self.buckets) >= GUESS_ADDRESSES:
                del self.buckets[next(iter(self.buckets))]  # the least recently seen address
        self.buckets[address] = bucket  # re-inserted: the dict's order is the recency
        return bucket

    def wait(self, address: str) -> float:
        """0 when `address` may try a token, else the seconds until it may (nothing is taken)."""
        bucket = self.buckets.get(address)
        if bucket is None:
            return 0.0
        bucket.tokens = min(bucket.burst, bucket.tokens + (self.clock() - bucket.stamp) * bucket.rate)
        bucket.stamp = self.clock()
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / bucket.rate

    def failed(self, address: str) -> None:
        self._bucket(address).take()


class Registry:
    """The providers the server serves, by namespace and name (filled from the ScimProvider objects).

    ``listed`` is set once the providers are known (the operator's first listing of the ScimProviders is
    in): until then a request for a provider the registry lacks waits for it rather than being answered
    401, which an identity provider would take for a revoked token (a replica serves its port before
    that listing, e.g. right after a restart)."""

    def __init__(self, *, listed: bool = True) -> None:
        self.providers: dict[tuple[str, str], Provider] = {}
        self.listed = asyncio.Event()
        if listed:
            self.listed.set()

    def add(self, provider: Provider) -> None:
        self.providers[(provider.namespace, provider.name)] = provider

    def remove(self, namespace: str, name: str) -> None:
        self.providers.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> Provider | None:
        return self.providers.get((namespace, name))


def scim_response(
    status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"Content-Type": SCIM_CONTENT_TYPE, "Cache-Control": "no-store", **(headers or {})}
    if body is None:
        return web.Response(status=status, headers=all_headers)
    return web.Response(status=status, body=json.dumps(body, ensure_ascii=False).encode(), headers=all_headers)


def scim_error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return scim_response(status, error_body(status, detail, scim_type), headers)


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="SCIM"'}


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body up to `limit` bytes. One read() returns what has arrived so far, which for a body sent in
    several TCP segments is only its beginning: read until the end (or the limit)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _json_body(request: web.Request, settings: ServerSettings) -> Any:
    max_body = settings.max_body
    if request.content_length is not None and request.content_length > max_body:
        raise _Refused(scim_error(413, _too_large(max_body)))
    if not _is_json(request.content_type):
        raise _Refused(
            scim_error(
                415,
                f"the request body must be JSON, its Content-Type {request.content_type!r}: "
                f"send Content-Type: {SCIM_CONTENT_TYPE} (or application/json)",
                "invalidSyntax",
            )
        )
    try:
        async with asyncio.timeout(settings.body_timeout):
            raw = await _read_body(request, max_body + 1)
    except TimeoutError:
        raise _Refused(scim_error(408, f"the request body did not arrive within {settings.body_timeout:g}s")) from None
    if len(raw) > max_body:
        raise _Refused(scim_error(413, _too_large(max_body)))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(
            scim_error(400, f"the request body is not valid JSON ({exc}): send one JSON object", "invalidSyntax")
        ) from None
    except RecursionError:
        # json.loads recurses once per level: `[[[[...` a few thousand deep (a few KB) exhausts the stack,
        # which is no ValueError; uncaught it was a 500 and a logged traceback per request.
        raise _Refused(_too_deep()) from None
    if not _shallow(body, MAX_DEPTH):
        # Deep but parsable bodies are refused too: what reads them after (scim2_models, the service)
        # recurses as well, and no SCIM body is more than a few levels deep.
        raise _Refused(_too_deep())
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # JSON lets a string escape a lone UTF-16 surrogate ("\ud800"), which is no character: stored, it
        # failed to encode (a 500). Refused here, before any of it is read.
        raise _Refused(
            scim_error(400, "the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff)", "invalidValue")
        ) from None
    return body


def _too_deep() -> web.Response:
    return scim_error(400, f"the request body is nested deeper than {MAX_DEPTH} levels", "invalidSyntax")


MAX_DEPTH = 32  # a SCIM body's deepest is ~5 (PATCH Operations -> value -> members -> member)


def _shallow(value: Any, limit: int) -> bool:
    """Whether `value` is nested no deeper than `limit` (iterative: a deep value must not recurse here)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            pending.extend((each, depth + 1) for each in (item.values() if isinstance(item, dict) else item))
    return True


def _too_large(max_body: int) -> str:
    return (
        f"the request body is larger than {max_body} bytes: send a large group's members in several PATCH "
        "requests (add or remove some at a time) instead of one PUT or POST"
    )


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


@dataclass(frozen=True)
class ServerSettings:
    max_body: int = MAX_BODY_BYTES
    public_url: str | None = None  # https://scim.example.com, when behind an Ingress; else from the request
    body_timeout: float = 10.0  # a client that sends its body slower than this gets 408
    request_timeout: float = 30.0  # an answer that takes longer is 503 (the write goes on to its end)
    # A connection that has not sent a whole request line and headers this long after it opened (or after
    # its last answer) is closed: a slowloris client dribbling its headers holds a socket that long, not
    # aiohttp's default hour (its keep-alive timer, the only one running before a request is parsed).
    idle_timeout: float = 15.0
    guess_rate: float = 1.0  # failed authentications a second per client address, on average...
    guess_burst: int = 10  # ...in bursts of this many; past them 429 (GuessLimiter)


def make_runner(registry: Registry, settings: ServerSettings = ServerSettings()) -> web.AppRunner:
    """The endpoint's runner: make_app with the connection-level settings (idle_timeout) applied."""
    return web.AppRunner(make_app(registry, settings), access_log=None, keepalive_timeout=settings.idle_timeout)


DISCOVERY = {"serviceproviderconfig": "discovery", "resourcetypes": "discovery", "schemas": "discovery"}


def resource_label(tail: str) -> str:
    """The bounded `resource` label of a request: Users, Groups, discovery or other (never an id)."""
    head = tail.strip("/").split("/")[0].lower()
    if head == "users":
        return "Users"
    if head == "groups":
        return "Groups"
    return DISCOVERY.get(head, "other")


def make_app(registry: Registry, settings: ServerSettings = ServerSettings()) -> web.Application:
    app = web.Application(client_max_size=settings.max_body + 1)
    guesses = GuessLimiter(settings.guess_rate, settings.guess_burst)

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await answer(request)
        provider = registry.get(request.match_info["namespace"], request.match_info["provider"])
        known = provider is not None
        if provider is not None and response.status >= 400:
            # A 401 on a provider's own URL counts against it; a URL naming no provider counts nowhere.
            body = response.body if isinstance(response.body, bytes) else None
            provider.rejected.add(rejection_reason(response.status, body))
        provider_label = f"{request.match_info['namespace']}/{request.match_info['provider']}" if known else "unknown"
        resource, method = resource_label(request.match_info["tail"]), request.method.upper()
        metrics.SCIM_REQUESTS.labels(provider_label, resource, method, str(response.status)).inc()
        metrics.SCIM_SECONDS.labels(provider_label, resource, method).observe(time.perf_counter() - started)
        return response

    async def answer(request: web.Request) -> web.Response:
        namespace, name, tail = (
            request.match_info["namespace"],
            request.match_info["provider"],
            request.match_info["tail"].removeprefix("/"),
        )
        provider = registry.get(namespace, name)
        if provider is None and not registry.listed.is_set():
            try:
                await asyncio.wait_for(registry.listed.wait(), settings.request_timeout)
            except TimeoutError:
                return scim_error(
                    503, "the endpoint is starting: its ScimProviders are not listed yet", headers={"Retry-After": "5"}
                )
            provider = registry.get(namespace, name)
        address = request.remote or "unknown"
        guess_wait = guesses.wait(address)
        if guess_wait > 0:
            # Refused before any token is compared: this answer says nothing of the token sent.
            return scim_error(
                429,
                "too many failed authentications from this address",
                headers={"Retry-After": str(max(1, math.ceil(guess_wait)))},
            )
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        try:
            token_id = (
                await provider.authenticate(presented.strip()) if provider and scheme.lower() == "bearer" else None
            )
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            # The tokens could not be read (the API server away, none read before): no answer on the
            # token either way, and not a failed guess. 401 would tell the identity provider its valid
            # credentials were revoked.
            log.warning("scim: the tokens of %s/%s cannot be read now: %s", namespace, name, exc)
            return scim_error(
                503,
                "the operator cannot read this provider's tokens now (the Kubernetes API); retry",
                headers={"Retry-After": "5"},
            )
        if provider is None or token_id is None:
            guesses.failed(address)
            # The same answer for an unknown provider and a wrong token: nothing tells which exists. The
            # audit line names the address and what was presented by its fingerprint (a wrong token's
            # digest tells nothing of the right one; a right token of another provider is recognisable).
            audit_log.warning(
                "scim authentication failed for %s/%s from %s %s token=%s",
                namespace,
                name,
                address,
                request.method,
                fingerprint(presented.strip()) if presented.strip() else None,
                extra={
                    "audit": {
                        "provider": f"{namespace}/{name}",
                        "operation": "authenticate",
                        "remote": address,
                        "outcome": "401",
                        "token": fingerprint(presented.strip()) if presented.strip() else None,
                    }
                },
            )
            return scim_error(
                401,
                "a valid bearer token for this provider is required: send Authorization: Bearer <token>, a value "
                "of the ScimProvider's tokenSecretRef Secret, on this provider's own URL",
                headers=UNAUTHORIZED_HEADERS,
            )
        provider.last_request = time.time()
        wait = provider.limiter.take()
        if wait > 0:
            return scim_error(
                429, "too many requests for this provider", headers={"Retry-After": str(max(1, math.ceil(wait)))}
            )
        origin = settings.public_url.rstrip("/") if settings.public_url else str(request.url.origin())
        base = f"{origin}{PREFIX}/{namespace}/{name}"
        # The operation runs as its own task: past the timeout the client is answered 503, and a write
        # already sent to the store finishes rather than being cut between two of its objects.
        answered = ClientAnswered()
        context = contextvars.copy_context()
        context.run(CLIENT_ANSWERED.set, answered)
        work = asyncio.get_running_loop().create_task(
            _dispatch(provider, request, tail, base, settings), context=context
        )
        try:
            result = await asyncio.wait_for(asyncio.shield(work), settings.request_timeout)
        except _Refused as refused:
            return refused.response
        except SCIMException as exc:
            status, body = from_exception(exc)
            return scim_response(status, body)
        except TimeoutError:
            answered.answered = True  # the write already sent finishes; none other starts (errors.Abandoned)
            work.add_done_callback(_log_late)
            log.warning(
                "scim: %s %s of %s took longer than %gs", request.method, tail, provider.key, settings.request_timeout
            )
            return scim_error(
                503, f"the request took longer than {settings.request_timeout:g}s", headers={"Retry-After": "5"}
            )
        except Exception as exc:
            if store_unavailable(exc):  # the API server away or overloaded: an identity provider retries 503
                log.warning("scim: %s %s of %s: the store is unavailable: %s", request.method, tail, provider.key, exc)
                return scim_error(
                    503, "the operator's store (the Kubernetes API) is unavailable; retry", headers={"Retry-After": "5"}
                )
            log.exception("scim: %s %s of %s failed", request.method, tail, provider.key)  # e.g. a permission missing
            return scim_error(500, "the operator could not complete this request; its log says why")
        if result.change is not None:
            change = result.change
            record = {
                "provider": provider.key,
                "operation": change.operation,
                "resourceType": change.kind.value,
                "id": change.id,
                "name": change.name,
                "detail": change.detail,
                "outcome": str(result.status),
                "token": token_id,
            }
            audit_log.info(
                "scim %s %s %s %r %s outcome=%s provider=%s token=%s",
                change.operation,
                change.kind.value,
                change.id,
                change.name,
                change.detail,
                result.status,
                provider.key,
                token_id,
                extra={"audit": record},
            )
        return scim_response(result.status, result.body)

    # The tail may be empty with or without its slash: the bare base URL is a SCIM 404 as well, not
    # aiohttp's plain-text one (which a SCIM client cannot parse).
    app.router.add_route("*", PREFIX + "/{namespace}/{provider}{tail:(/.*)?}", handle)
    return app


def _log_late(task: asyncio.Future[Answer]) -> None:
    """What became of an operation whose client was already answered 503 (its audit line is lost)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        change = task.result().change
        if change is not None:
            audit_log.info(
                "scim %s %s %s %r %s outcome=%s (after the client's timeout)",
                change.operation,
                change.kind.value,
                change.id,
                change.name,
                change.detail,
                task.result().status,
            )
    elif isinstance(exc, Abandoned):
        log.warning("scim: an operation that timed out was not applied (the client retries it): %s", exc)
    elif not isinstance(exc, (SCIMException, _Refused)):
        log.warning("scim: an operation that timed out failed: %s", exc)


def _joined(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(each, str) for each in value):
        return ",".join(value)
    if isinstance(value, str):
        return value
    raise _Refused(
        scim_error(400, "attributes and excludedAttributes must be lists of attribute names", "invalidValue")
    )


async def _search(service: ScimService, kind: Kind | None, body: Any, base: str) -> Answer:
    """POST /.search (RFC 7644 §3.4.3): the same list as GET, its parameters in a SearchRequest body;
    at the root (`kind` None) every resource type at once."""
    if not isinstance(body, dict):
        raise _Refused(scim_error(400, "the request body must be a JSON object", "invalidSyntax"))
    fields = {key.lower(): value for key, value in body.items()}
    for name in ("sortby", "cursor"):
        if fields.get(name) is not None:
            raise _Refused(scim_error(400, f"{name} is not supported", "invalidValue"))
    filter_ = fields.get("filter")
    if filter_ is not None and not isinstance(filter_, str):
        raise _Refused(scim_error(400, "filter must be a string", "invalidFilter"))
    start, count = fields.get("startindex"), fields.get("count")
    arguments: dict[str, Any] = {
        "filter": filter_,
        "start_index": None if start is None else str(start),
        "count": None if count is None else str(count),
        "attributes": _joined(fields.get("attributes")),
        "excluded": _joined(fields.get("excludedattributes")),
    }
    if kind is None:
        return await service.search_all(base, **arguments)
    return await service.list(kind, base, **arguments)


async def _dispatch(provider: Provider, request: web.Request, tail: str, base: str, settings: ServerSettings) -> Answer:
    parts = [part for part in tail.split("/") if part]
    method = request.method.upper()
    query = request.query
    if not parts:
        raise _Refused(scim_error(404, "no such endpoint"))
    head = parts[0].lower()
    service = provider.service
    if parts == [".search"]:
        if method != "POST":
            raise _Refused(scim_error(405, f"{method} is not supported here"))
        return await _search(service, None, await _json_body(request, settings), base)
    if head in ("users", "groups"):
        kind = Kind.USER if head == "users" else Kind.GROUP
        if len(parts) == 1:
            if method == "GET":
                return await service.list(
                    kind,
                    base,
                    filter=query.get("filter"),
                    start_index=query.get("startIndex"),
                    count=query.get("count"),
                    attributes=query.get("attributes"),
                    excluded=query.get("excludedAttributes"),
                )
            if method == "POST":
                return await service.create(kind, await _json_body(request, settings), base)
        elif len(parts) == 2 and parts[1] == ".search":
            if method != "POST":
                raise _Refused(scim_error(405, f"{method} is not supported here"))
            return await _search(service, kind, await _json_body(request, settings), base)
        elif len(parts) == 2:
            resource_id = parts[1]
            if method == "GET":
                return await service.get(
                    kind,
                    resource_id,
                    base,
                    attributes=query.get("attributes"),
                    excluded=query.get("excludedAttributes"),
                )
            if method == "PUT":
                return await service.replace(kind, resource_id, await _json_body(request, settings), base)
            if method == "PATCH":
                return await service.patch(kind, resource_id, await _json_body(request, settings), base)
            if method == "DELETE":
                return await service.delete(kind, resource_id)
        else:
            raise _Refused(scim_error(404, "no such endpoint"))
        raise _Refused(scim_error(405, f"{method} is not supported here"))
    if method != "GET":
        raise _Refused(scim_error(405, f"{method} is not supported here"))
    if head == "serviceproviderconfig" and len(parts) == 1:
        return Answer(200, discovery.service_provider_config(base))
    if head in ("resourcetypes", "schemas") and len(parts) <= 2:
        items = discovery.resource_types(base) if head == "resourcetypes" else discovery.schemas(base)
        if len(parts) == 1:
            return Answer(200, discovery.listed(items))
        found = next((item for item in items if item["id"] == parts[1]), None)
        if found is None:
            raise _Refused(scim_error(404, f"no {parts[0]} {parts[1]!r}"))
        return Answer(200, found)
    raise _Refused(scim_error(404, "no such endpoint"))


# What the Kubernetes API answers when it is away or overloaded (the client's exceptions carry `status`).
_UNAVAILABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def store_unavailable(exc: BaseException) -> bool:
    """Whether a store failure is the API server being unreachable, timing out or overloaded (worth a
    retry, so a SCIM 503), not a refusal such as a missing permission (a SCIM 500, said in the log)."""
    if isinstance(exc, (OSError, urllib3.exceptions.HTTPError)):  # refused, reset, timed out, no route
        return True
    return getattr(exc, "status", None) in _UNAVAILABLE_STATUSES
