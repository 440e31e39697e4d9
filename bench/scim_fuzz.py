"""The SCIM endpoint under >= 10,000 generated requests over HTTPS (issue 17, "The SCIM door under attack").

    .venv/bin/python bench/scim_fuzz.py                      # 10,000 requests, seed 17
    .venv/bin/python bench/scim_fuzz.py --requests 50000 --seed 3 [--timeout 10] [--out DIR]

What runs: the endpoint as the operator serves it (server.make_app behind aiohttp's TCPSite with a TLS
context, certificates from trustme) over an in-memory store seeded with a few users and groups, in a
thread of this process; the client (httpx, one keep-alive connection, certificate verified) sends the
requests of tests/support/scim_fuzz.py one at a time: bodies, filters, PATCH operations, paths, query
strings, invalid and deeply nested JSON. The per-provider rate limit is out of the way (what is fuzzed
is the handling of a request, tests/scim/test_scim_abuse.py covers the limits).

Recorded per run (bench/results/scim-fuzz-<date>.{json,md}): requests sent, distinct request shapes
(method, path template, content type, query keys, body structure), status codes, 5xx, crashes (a
connection dropped without an answer, or an ERROR the server logged), hangs (no answer within
--timeout), and rejected requests that changed a stored object (the store compared before and after
each request answered >= 400). The same seed sends the same requests.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trustme
from hypothesis import HealthCheck, Phase, given, seed, settings

from bench_results import percentile, write_results
from scale_procs import machine
from support.scim_fuzz import FuzzRequest, FuzzServer, fuzz_requests, send

EXAMPLES_KEPT = 5  # the first few requests of each kind of failure, in the report


def run(requests: int, seed_value: int, timeout: float) -> dict[str, Any]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    statuses: collections.Counter[int] = collections.Counter()
    shapes: set[Any] = set()
    latencies: list[float] = []
    failures: dict[str, list[dict[str, Any]]] = {"5xx": [], "crash": [], "hang": [], "changed_by_rejected": []}
    counts = collections.Counter[str]()

    def keep(kind: str, request: FuzzRequest, detail: str) -> None:
        counts[kind] += 1
        if len(failures[kind]) < EXAMPLES_KEPT:
            body = (request.body or b"")[:200].decode(errors="replace")
            failures[kind].append(
                {
                    "method": request.method,
                    "path": request.path[:200],
                    "query": request.query,
                    "body": body,
                    "detail": detail,
                }
            )

    with FuzzServer(ssl_context=server_context) as server, httpx.Client(verify=client_context) as client:

        @seed(seed_value)
        @settings(
            max_examples=requests,
            database=None,
            deadline=None,
            phases=[Phase.generate],  # every request is sent and counted; nothing is shrunk or replayed
            suppress_health_check=list(HealthCheck),
        )
        @given(request=fuzz_requests())
        def fuzz(request: FuzzRequest) -> None:
            server.errors.records.clear()
            before = server.snapshot()
            started = time.perf_counter()
            outcome = send(client, server, request, timeout)
            latencies.append(time.perf_counter() - started)
            counts["requests"] += 1
            shapes.add(request.shape)
            if outcome.failure == "hang":
                keep("hang", request, f"no answer within {timeout:g}s")
                return
            if outcome.failure is not None:
                keep("crash", request, outcome.failure)
                return
            assert outcome.status is not None
            statuses[outcome.status] += 1
            if server.errors.records:
                keep("crash", request, server.errors.describe()[:2000])
            if outcome.status >= 500:
                keep("5xx", request, outcome.body[:300].decode(errors="replace"))
            if outcome.status >= 400 and server.snapshot() != before:
                keep("changed_by_rejected", request, f"answered {outcome.status}")

        started = time.perf_counter()
        fuzz()
        wall = time.perf_counter() - started
    return {
        "name": "scim-fuzz",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seed": seed_value,
        "transport": "HTTPS (TLS 1.2+, certificate verified), one keep-alive connection",
        "store": "in-memory (core/scim/memory.py), seeded with 5 users and 3 groups",
        "requests": counts["requests"],
        "distinct_shapes": len(shapes),
        "status_codes": {str(code): n for code, n in sorted(statuses.items())},
        "5xx": counts["5xx"],
        "crashes": counts["crash"],
        "hangs": counts["hang"],
        "rejected_that_changed_the_store": counts["changed_by_rejected"],
        "answer_bound_s": timeout,
        "latency_p50_ms": round(1000 * (percentile(latencies, 50) or 0), 2),
        "latency_p99_ms": round(1000 * (percentile(latencies, 99) or 0), 2),
        "latency_max_ms": round(1000 * max(latencies, default=0), 2),
        "wall_s": round(wall, 1),
        "failures": failures,
    }


def _machine(found: dict[str, Any]) -> str:
    return (
        f"{found.get('cpu')}, {found.get('cpus')} CPUs, {found.get('memory_mb')} MB, {found.get('os')}, "
        f"Python {found.get('python')}, load {found.get('load_average')}"
    )


def markdown(report: dict[str, Any]) -> str:
    codes = ", ".join(f"{code}: {n}" for code, n in report["status_codes"].items())
    lines = [
        f"# SCIM fuzzing, {report['date']}",
        "",
        f"Machine: {_machine(report['machine'])}. Seed {report['seed']}. {report['transport']}; "
        f"store: {report['store']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests | {report['requests']:,} |",
        f"| distinct request shapes | {report['distinct_shapes']:,} |",
        f"| status codes | {codes} |",
        f"| 5xx | {report['5xx']} |",
        f"| crashes | {report['crashes']} |",
        f"| hangs (no answer within {report['answer_bound_s']:g} s) | {report['hangs']} |",
        f"| rejected requests that changed the store | {report['rejected_that_changed_the_store']} |",
        f"| latency p50 / p99 / max | {report['latency_p50_ms']} / {report['latency_p99_ms']} / "
        f"{report['latency_max_ms']} ms |",
        f"| wall time | {report['wall_s']} s |",
        "",
    ]
    for kind, examples in report["failures"].items():
        for example in examples:
            lines.append(f"- {kind}: `{example['method']} {example['path']}` {example['detail'][:300]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--timeout", type=float, default=10.0, help="an answer later than this is a hang")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    report = run(args.requests, args.seed, args.timeout)
    stem = write_results(args.out, "scim-fuzz", report, markdown(report))
    print(markdown(report))
    print(f"written: {stem}.json, {stem}.md")
    failed = report["5xx"] + report["crashes"] + report["hangs"] + report["rejected_that_changed_the_store"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
