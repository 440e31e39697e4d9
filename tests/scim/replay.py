"""Replays a recorded request sequence (tests/scim/replays/*.json) against a running endpoint and
checks each answer against the one the identity provider's documentation expects.

A sequence file:

    {"title": ..., "provider": "okta", "sources": {"O1": "https://..."}, "query": "aadOptscim062020",
     "steps": [{"name": ..., "source": "O1 ...", "method": "POST", "path": "/Users", "body": {...},
                "expect": {"status": 201, "scimType": ..., "body": {"userName": "x", "members.#": 2},
                           "absent": ["password"]},
                "save": {"user": "id"}, "repeat": 3, "collect": "pages"}]}

- `{{name}}` in a path or any string of a body is what an earlier step saved (`save`: name -> the
  response field, dotted); `{{i}}` is the repetition (1-based) of a step with `repeat`;
- `query` is appended to every request's query string (Entra's tenant URL flag);
- `expect.body` maps a dotted path (list indices are numbers, `#` the length of a list) to the value it
  must have; `"*"` means present whatever its value; `absent` lists paths that must not be there;
- `collect` adds the ids of a ListResponse's `Resources` to a named list, and a step
  `{"check": "distinct", "collected": name, "count": n}` asserts that list holds n ids, none twice
  (pages that neither repeat nor skip a resource)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

HERE = Path(__file__).parent / "replays"
SCIM = "application/scim+json"
_MISSING = object()
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / name).read_text())
    return loaded


def lookup(body: Any, path: str) -> Any:
    """The value at a dotted path; a key that itself holds dots (a schema URN) is matched whole."""
    return _walk(body, path.split("."))


def _walk(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    head = parts[0]
    if head == "#":
        return len(node) if isinstance(node, list) and len(parts) == 1 else _MISSING
    if isinstance(node, list):
        if not head.isdigit() or int(head) >= len(node):
            return _MISSING
        return _walk(node[int(head)], parts[1:])
    if isinstance(node, dict):
        for size in range(len(parts), 0, -1):  # the longest key first: "urn:...:2.0:User" holds dots
            key = ".".join(parts[:size])
            if key in node:
                return _walk(node[key], parts[size:])
    return _MISSING


def fill(value: Any, saved: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return saved[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(saved[m.group(1)]), value)
    if isinstance(value, list):
        return [fill(each, saved) for each in value]
    if isinstance(value, dict):
        return {fill(key, saved): fill(each, saved) for key, each in value.items()}
    return value


@dataclass
class Outcome:
    title: str
    requests: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        return f"{self.title}: {self.passed}/{self.requests} requests answered as documented"


def _check(step: dict[str, Any], status: int, headers: Any, body: Any, saved: dict[str, Any]) -> list[str]:
    expect = fill(step.get("expect", {}), saved)
    problems = []
    if status != expect.get("status", 200):
        problems.append(f"status {status}, expected {expect.get('status', 200)}: {body}")
    if headers.get("Content-Type", "").split(";")[0] != SCIM:
        problems.append(f"Content-Type {headers.get('Content-Type')!r}")
    if "scimType" in expect and (not isinstance(body, dict) or body.get("scimType") != expect["scimType"]):
        problems.append(f"scimType {body.get('scimType') if isinstance(body, dict) else None!r}")
    if status >= 400 and not (isinstance(body, dict) and body.get("status") == str(status) and body.get("detail")):
        problems.append(f"not a SCIM error with a detail: {body}")
    if status == 204 and body is not None:
        problems.append(f"204 with a body: {body}")
    for path, wanted in expect.get("body", {}).items():
        got = lookup(body, path)
        if got is _MISSING or (wanted != "*" and got != wanted):
            problems.append(f"{path} = {'(missing)' if got is _MISSING else repr(got)}, expected {wanted!r}")
    for path in expect.get("absent", []):
        if lookup(body, path) is not _MISSING:
            problems.append(f"{path} is present: {lookup(body, path)!r}")
    return problems


async def replay(sequence: dict[str, Any], base: str, token: str, *, log: list[str] | None = None) -> Outcome:
    """Every step of `sequence` against the provider whose base URL is `base` (no trailing slash)."""
    outcome = Outcome(sequence["title"])
    saved: dict[str, Any] = {}
    collected: dict[str, list[str]] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": SCIM, "Accept": SCIM}
    async with aiohttp.ClientSession() as session:
        for step in sequence["steps"]:
            if step.get("check") == "distinct":
                ids = collected.get(step["collected"], [])
                outcome.requests += 0
                if len(ids) != step["count"] or len(set(ids)) != len(ids):
                    outcome.failures.append(
                        f"{step['name']}: {len(ids)} ids collected, {len(set(ids))} distinct, expected {step['count']}"
                    )
                continue
            for index in range(1, step.get("repeat", 1) + 1):
                saved["i"] = index
                path = fill(step["path"], saved)
                if sequence.get("query"):
                    path += ("&" if "?" in path else "?") + sequence["query"]
                url = URL(base + path)
                data = None if "body" not in step else json.dumps(fill(step["body"], saved)).encode()
                async with session.request(step["method"], url, data=data, headers=headers) as response:
                    text = await response.text()
                    body = json.loads(text) if text else None
                    status, answer_headers = response.status, response.headers
                outcome.requests += 1
                if log is not None:
                    log.append(f"{step['method']} {path} -> {status}")
                problems = _check(step, status, answer_headers, body, saved)
                if problems:
                    outcome.failures.append(f"{step['name']} ({step['method']} {path}): " + "; ".join(problems))
                else:
                    outcome.passed += 1
                for name, field_path in step.get("save", {}).items():
                    value = lookup(body, field_path)
                    if value is not _MISSING:
                        saved[name] = value
                if "collect" in step and isinstance(body, dict):
                    collected.setdefault(step["collect"], []).extend(r["id"] for r in body.get("Resources", []))
    return outcome
