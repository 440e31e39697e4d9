"""Latency, fault rules, per-operation counters and the request log.

A fault rule (a dict, as given to `AdminClient.inject_fault` or `POST /_sandbox/faults`):

```
{"service": "graph",                 # graph | synapse | login | * (required)
 "operation": "transitiveMembers",   # an operation name or a list of them; default every operation
 "match": {"group": "<id or name>"}, # request parameters that must all be equal (case-insensitive):
                                     #   graph: group, user, servicePrincipal; synapse: workspace,
                                     #   roleAssignmentId, roleId, principalId, scope;
                                     #   login: client_id, tenant, resource; any service: method
 "status": 429,                      # or "kind"/"kinds": "429" | "500" | "503" | any status code |
                                     #   "timeout" | "reset" | "delay" | "omit" (graph only)
 "omit": ["accountEnabled"],         # "omit": served normally, but these properties are left out of
                                     #   the object and of each item of its "value" (what Graph does
                                     #   to some directoryObject collections)
 "retry_after": 1,                   # Retry-After seconds sent with 429 (default 1) and 503
 "count": 3,                         # fault only the next N matching requests (default: no limit)
 "skip": 0,                          # let the first N matching requests through first
 "rate": 0.2, "seed": 7,             # fault each matching request with this probability (seeded RNG);
                                     #   the kind is drawn uniformly from "kinds"
 "hold": 30,                         # "timeout": seconds to hold the request before answering 504
 "delay": 0.5,                       # "delay": extra seconds before the request is served normally
 "code": "...", "message": "..."}    # override the error code / message of an HTTP fault
```

Rules are checked in the order they were added; the first rule that fires decides. Counters are
keyed `service.operation.status`, where status is the HTTP status or `timeout` / `reset`.

The throttling model (`PUT /_sandbox/throttle {"service": "graph", "rate": 5, "burst": 10}`; DELETE
/_sandbox/throttle, /_sandbox/faults and /_sandbox/reset remove it): a token bucket per client (the
app of the bearer token) holding up to `burst` requests and refilled at `rate` per second. A request
that finds its client's bucket empty is answered 429 with `Retry-After` (whole seconds until the
bucket has a token again). Each request inside a JSON batch counts; the batch itself does not. Graph
only for now (the service that answers 429 inside a 200).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("graph", "synapse", "login")
OPERATIONS: dict[str, tuple[str, ...]] = {
    "login": ("openidConfiguration", "token", "keys", "instanceDiscovery"),
    "graph": (
        "getGroup",
        "listGroups",
        "members",
        "transitiveMembers",
        "getUser",
        "listUsers",
        "getServicePrincipal",
        "listServicePrincipals",
        "groupsDelta",
        "usersDelta",
        "servicePrincipalsDelta",
        "getDirectoryObject",
        "getByIds",
        "batch",
    ),
    "synapse": (
        "listRoleAssignments",
        "createRoleAssignment",
        "getRoleAssignment",
        "deleteRoleAssignment",
        "listRoleDefinitions",
        "getRoleDefinition",
        "listScopes",
        "checkAccess",
    ),
}
SPECIAL_KINDS = ("timeout", "reset", "delay", "omit")
THROTTLED_SERVICES = ("graph",)


class FaultRuleError(ValueError):
    pass


@dataclass
class FaultRule:
    id: str
    service: str
    operations: frozenset[str] | None
    match: dict[str, str]
    kinds: tuple[str, ...]
    rate: float = 1.0
    count: int | None = None
    skip: int = 0
    retry_after: float | None = None
    hold: float | None = None
    delay: float = 0.0
    code: str | None = None
    message: str | None = None
    seed: int | None = None
    omit: tuple[str, ...] = ()
    hits: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def parse(cls, rule_id: str, raw: Mapping[str, Any]) -> FaultRule:
        known = {
            "service",
            "operation",
            "operations",
            "match",
            "status",
            "kind",
            "kinds",
            "rate",
            "count",
            "skip",
            "retry_after",
            "hold",
            "delay",
            "code",
            "message",
            "seed",
            "omit",
        }
        unknown = set(raw) - known
        if unknown:
            raise FaultRuleError(f"unknown fault rule keys: {', '.join(sorted(unknown))}")
        service = raw.get("service")
        if service not in (*SERVICES, "*"):
            raise FaultRuleError(f"fault rule 'service' must be one of {', '.join(SERVICES)} or '*', got {service!r}")
        ops_raw = raw.get("operations", raw.get("operation"))
        ops: frozenset[str] | None = None
        if ops_raw not in (None, "*"):
            ops = frozenset([ops_raw] if isinstance(ops_raw, str) else ops_raw)
            valid = {o for s in SERVICES if service in (s, "*") for o in OPERATIONS[s]}
            bad = ops - valid
            if bad:
                raise FaultRuleError(
                    f"unknown operation(s) {', '.join(sorted(bad))} for service {service!r}; "
                    f"known: {', '.join(sorted(valid))}"
                )
        kinds_raw = raw.get("kinds", raw.get("kind", raw.get("status")))
        if kinds_raw is None:
            raise FaultRuleError("a fault rule needs 'status', 'kind' or 'kinds'")
        kinds = tuple(str(k) for k in ([kinds_raw] if isinstance(kinds_raw, str | int) else kinds_raw))
        for k in kinds:
            if k not in SPECIAL_KINDS and not (k.isdigit() and 400 <= int(k) <= 599):
                raise FaultRuleError(
                    f"unknown fault kind {k!r}: use an HTTP status 400-599, {', '.join(SPECIAL_KINDS)}"
                )
        omit_raw = raw.get("omit") or ()
        omit = (omit_raw,) if isinstance(omit_raw, str) else tuple(str(p) for p in omit_raw)
        if ("omit" in kinds) != bool(omit):
            raise FaultRuleError("kind 'omit' needs 'omit': the properties to leave out (and 'omit' needs that kind)")
        if "omit" in kinds and service != "graph":
            raise FaultRuleError("kind 'omit' is for service 'graph' only")
        rate = float(raw.get("rate", 1.0))
        if not 0.0 < rate <= 1.0:
            raise FaultRuleError("'rate' must be in (0, 1]")
        match = raw.get("match") or {}
        if not isinstance(match, Mapping):
            raise FaultRuleError("'match' must be a mapping")
        count = raw.get("count")
        if count is not None and int(count) < 1:
            raise FaultRuleError("'count' must be at least 1")
        seed = raw.get("seed")
        return cls(
            rule_id,
            service,
            ops,
            {str(k): str(v).lower() for k, v in match.items()},
            kinds,
            rate,
            None if count is None else int(count),
            int(raw.get("skip", 0)),
            None if raw.get("retry_after") is None else float(raw["retry_after"]),
            None if raw.get("hold") is None else float(raw["hold"]),
            float(raw.get("delay", 0.0)),
            raw.get("code"),
            raw.get("message"),
            seed,
            omit,
            0,
            random.Random(seed),
        )

    def applies(self, service: str, operation: str, params: Mapping[str, str]) -> bool:
        if self.service not in (service, "*"):
            return False
        if self.operations is not None and operation not in self.operations:
            return False
        return all(str(params.get(k, "")).lower() == v for k, v in self.match.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "operations": sorted(self.operations) if self.operations is not None else "*",
            "match": self.match,
            "kinds": list(self.kinds),
            "rate": self.rate,
            "count": self.count,
            "skip": self.skip,
            "retry_after": self.retry_after,
            "hold": self.hold,
            "delay": self.delay,
            "code": self.code,
            "message": self.message,
            "seed": self.seed,
            "omit": list(self.omit),
            "hits": self.hits,
        }


@dataclass
class Throttle:
    """A token bucket per client: up to `burst` requests, refilled at `rate` per second."""

    rate: float
    burst: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # client -> (tokens, at)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise FaultRuleError("a throttle needs 'rate' > 0 (requests per second) and 'burst' >= 1")

    def take(self, client: str, now: float) -> float | None:
        """None when the request may go; else the seconds until the client's bucket has a token."""
        tokens, at = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self.buckets[client] = (tokens - 1, now)
            return None
        self.buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst}


@dataclass
class Fault:
    rule: FaultRule
    kind: str


class FaultInjector:
    def __init__(
        self, *, latency: Mapping[str, float] | None = None, hold: float = 30.0, log_size: int = 10000
    ) -> None:
        self.latency: dict[str, float] = dict.fromkeys(SERVICES, 0.0)
        self.latency.update(latency or {})
        self.hold = hold
        self.rules: list[FaultRule] = []
        self.throttles: dict[str, Throttle] = {}
        self.counters: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._log_seq = itertools.count(1)
        self._rule_ids = itertools.count(1)
        self._waiters: list[asyncio.Future[None]] = []

    def set_latency(self, latency: Mapping[str, float]) -> None:
        for service, seconds in latency.items():
            if service not in SERVICES:
                raise FaultRuleError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
            if float(seconds) < 0:
                raise FaultRuleError("latency must not be negative")
            self.latency[service] = float(seconds)

    def add(self, raw: Mapping[str, Any]) -> FaultRule:
        rule = FaultRule.parse(f"fault-{next(self._rule_ids)}", raw)
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        """Every fault rule and the throttling model."""
        self.rules.clear()
        self.throttles.clear()

    def set_throttle(self, service: str, rate: float, burst: float) -> Throttle:
        if service not in THROTTLED_SERVICES:
            raise FaultRuleError(f"the throttling model covers {', '.join(THROTTLED_SERVICES)} only, not {service!r}")
        self.throttles[service] = Throttle(float(rate), float(burst))
        return self.throttles[service]

    def throttled(self, service: str, client: str) -> float | None:
        """None when `client` may send a request to `service` now; else the seconds it must wait."""
        throttle = self.throttles.get(service)
        return None if throttle is None else throttle.take(client, time.monotonic())

    def pick(self, service: str, operation: str, params: Mapping[str, str]) -> Fault | None:
        for rule in self.rules:
            if not rule.applies(service, operation, params):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            if rule.rate < 1.0 and rule.rng.random() >= rule.rate:
                continue
            kind = rule.kinds[0] if len(rule.kinds) == 1 else rule.rng.choice(rule.kinds)
            rule.hits += 1
            if rule.count is not None:
                rule.count -= 1
                if rule.count == 0:
                    self.rules.remove(rule)
            return Fault(rule, kind)
        return None

    def record(self, entry: dict[str, Any]) -> None:
        entry["seq"] = next(self._log_seq)
        if not entry.get("batched"):  # one round trip: the batch is counted, not what it carried
            self.counters[f"{entry['service']}.{entry['operation']}.{entry['status']}"] += 1
        self.log.append(entry)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def reset_counters(self) -> None:
        self.counters.clear()
        self.log.clear()

    def requests(
        self, *, service: str | None = None, operation: str | None = None, status: str | None = None, since: int = 0
    ) -> list[dict[str, Any]]:
        return [
            e
            for e in self.log
            if e["seq"] > since
            and (service is None or e["service"] == service)
            and (operation is None or e["operation"] == operation)
            and (status is None or str(e["status"]) == status)
        ]

    async def wait_for(self, count: int, within: float, **filters: Any) -> list[dict[str, Any]]:
        """The matching log entries once there are at least `count` of them (or after `within` seconds)."""
        deadline = time.monotonic() + within
        while len(found := self.requests(**filters)) < count and (left := deadline - time.monotonic()) > 0:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                pass
        return found
