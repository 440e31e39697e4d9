"""Benchmark of `synapse-scim report` on one workspace with 50,000 role assignments.

The sandbox is seeded in one go (a seed dict, as scale_bench does through scale_model.build_seed):
users with fixed ids, two bound groups (one nested in the other's chain) whose members already hold the
operator's assignments (their deterministic ids, as an earlier sync left them), manual grants to users
no binding names (read back by the report in Graph JSON batches), and a few manual Synapse
Administrators. Then the command runs as a user runs it, its own process, once per format
(html, csv, json), from manifests; the HTML is opened in headless chromium to check it renders (the
row count it shows) and to time that.

    .venv/bin/python bench/report_bench.py          # 50,000 assignments: bench/results/report-<date>.{json,md}
    .venv/bin/python bench/report_bench.py --quick  # 2,000, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench_results import write_results
from synapse_scim.core.model import Grant, assignment_id
from synapse_scim_sandbox import SandboxThread

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "contoso.com"
NS = "bench"
WS = "big"
BUILTIN_ROLES = ROOT / "sandbox/synapse_scim_sandbox/data/builtin-roles.json"
ROLES = {r["name"]: r["id"] for r in json.loads(BUILTIN_ROLES.read_text())}
IDS = uuid.UUID("6a1d3a52-5c1e-4f55-9b55-2a0f7f0b1e01")


def uid(i: int) -> str:
    return str(uuid.uuid5(IDS, f"user-{i}"))


def world(total: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The seed, and how its assignments split: half Synapse User through All Staff (users 0..n/2, a
    tenth of them through the nested group Contractors Pool), three tenths Synapse Contributor through
    Engineers, the rest manual (Synapse Artifact User to users no binding names, 50 Administrators)."""
    admins = 50
    staff = total // 2
    engineers = total * 3 // 10
    manual = total - staff - engineers - admins
    users = staff + manual  # engineers are among the staff; the manual grants go to users outside both
    pool = staff // 10
    scope = f"workspaces/{WS}"
    seed: dict[str, Any] = {
        "tenant": {"domain": DOMAIN},
        "apps": [{"name": "synapse-scim-operator", "secret": "bench-secret-1"}],
        "users": [{"userPrincipalName": f"user{i:06d}@{DOMAIN}", "id": uid(i)} for i in range(users)],
        "groups": [
            {"displayName": "Contractors Pool", "members": [f"user{i:06d}@{DOMAIN}" for i in range(pool)]},
            {
                "displayName": "All Staff",
                "members": [{"group": "Contractors Pool"}, *(f"user{i:06d}@{DOMAIN}" for i in range(pool, staff))],
            },
            {"displayName": "Engineers", "members": [f"user{i:06d}@{DOMAIN}" for i in range(engineers)]},
        ],
    }
    assignments: list[dict[str, Any]] = []

    def owned(role: str, i: int) -> None:
        grant = Grant(ROLES[role], uid(i), scope)
        assignments.append(
            {"role": role, "principal": uid(i), "scope": scope, "id": assignment_id(grant), "principalType": "User"}
        )

    for i in range(staff):
        owned("Synapse User", i)
    for i in range(engineers):
        owned("Synapse Contributor", i)
    for i in range(staff, staff + manual):
        assignments.append(
            {"role": "Synapse Artifact User", "principal": uid(i), "scope": scope, "principalType": "User"}
        )
    for i in range(admins):
        assignments.append(
            {"role": "Synapse Administrator", "principal": uid(staff + i), "scope": scope, "principalType": "User"}
        )
    seed["workspaces"] = [{"name": WS, "assignments": assignments}]
    return seed, {"assignments": len(assignments), "managed": staff + engineers, "manual": manual + admins}


def manifests(sb: SandboxThread, root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    docs = [
        {
            "apiVersion": "synapse-scim.io/v1alpha1",
            "kind": "SynapseWorkspace",
            "metadata": {"name": WS, "namespace": NS},
            "spec": {
                "endpoint": sb.workspace_endpoint(WS),
                "workspaceName": WS,
                "tenantId": sb.tenant_id,
                "cloud": {"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.removesuffix("/v1.0")},
            },
        },
        *(
            {
                "apiVersion": "synapse-scim.io/v1alpha1",
                "kind": "SynapseRoleBinding",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"workspaceRef": {"name": WS}, "roles": [role], "subjects": [{"kind": "Group", "name": group}]},
            }
            for name, role, group in (
                ("all-staff", "Synapse User", "All Staff"),
                ("engineers", "Synapse Contributor", "Engineers"),
            )
        ),
    ]
    (repo / "access.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return repo


def env(sb: SandboxThread) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_") and k != "KUBECONFIG"}
    app = sb.client("synapse-scim-operator")
    out.update(
        SYNAPSE_SCIM_AZURE_CA_BUNDLE=str(sb.ca_path),
        AZURE_CLIENT_ID=app.client_id,
        AZURE_CLIENT_SECRET=app.secret,
        AZURE_TENANT_ID=sb.tenant_id,
    )
    return out


def run_report(sb: SandboxThread, repo: Path, fmt: str, out: Path) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "synapse_scim.cli", "report", "-f", str(repo), "-o", fmt, "--out", str(out)],
        env=env(sb),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"report -o {fmt} failed ({proc.returncode}): {proc.stderr}")
    return {
        "format": fmt,
        "seconds": round(seconds, 2),
        "cpu_seconds": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 2),
        "bytes": out.stat().st_size,
        "max_rss_mb": round(after.ru_maxrss / 1024, 1),  # the largest child so far (Linux: KiB)
        "stderr": proc.stderr.strip(),
    }


def render(page: Path, profile: Path) -> dict[str, Any]:
    """Open the HTML in headless chromium: how long until the DOM (summary, the table's first page) is
    there, and the row count the page shows."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return {"skipped": "chromium is not installed"}
    start = time.perf_counter()
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    count = re.search(r'id="row-count">(\d+)<', proc.stdout)
    shown = re.search(r'id="row-shown">(\d+)<', proc.stdout)
    return {
        "seconds": round(seconds, 2),
        "ready": 'data-ready="1"' in proc.stdout,
        "row_count": int(count.group(1)) if count else None,
        "rows_rendered": int(shown.group(1)) if shown else None,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# synapse-scim report: {report['world']['assignments']:,} assignments in one workspace",
        "",
        f"{report['date']} on {report['machine']['cpus']} CPU(s) ({report['machine']['processor']}), "
        f"Python {report['machine']['python']}, {report['machine']['platform']}. The sandbox serves Graph and "
        "Synapse in the benchmark's process; the report runs as its own process from manifests.",
        "",
        f"World: {report['world']['managed']:,} managed (two bound groups, one nested), "
        f"{report['world']['manual']:,} manual.",
        "",
        "| format | wall time | CPU time | file size | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['format']} | {r['seconds']} s | {r['cpu_seconds']} s | {r['bytes'] / 1e6:.1f} MB | "
            f"{r['max_rss_mb']} MB |"
        )
    c = report["chromium"]
    if "skipped" in c:
        lines += ["", f"HTML in chromium: {c['skipped']}."]
    else:
        lines += [
            "",
            f"HTML in headless chromium (`--dump-dom`, process start included): {c['seconds']} s; the page shows "
            f"{c['row_count']:,} rows, {c['rows_rendered']:,} rendered (a page at a time), script ran: {c['ready']}.",
        ]
    lines += [
        "",
        "Wall time is mostly waiting on the sandbox, which answers Graph (member pages, 500 JSON batches of user "
        "reads for the manual grants) and Synapse in the benchmark's own Python process on the same CPUs; CPU "
        "time is the report's process alone. The machine is shared, so wall times vary between runs.",
        "",
        f"Digest (sha256 of the rows): `{report['digest']}`",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assignments", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="2,000 assignments; print, write nothing")
    args = ap.parse_args()
    total = 2_000 if args.quick else args.assignments
    seed, counts = world(total)
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        with SandboxThread(seed=seed, cert_dir=root / "sandbox") as sb:
            load = time.perf_counter() - t0
            repo = manifests(sb, root)
            runs = [run_report(sb, repo, fmt, root / f"report.{fmt}") for fmt in ("html", "csv", "json")]
            doc = json.loads((root / "report.json").read_text())
            assert len(doc["assignments"]) == counts["assignments"], (len(doc["assignments"]), counts)
            chromium = render(root / "report.html", root / "profile")
        report = {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "world": counts,
            "sandbox_load_seconds": round(load, 2),
            "runs": runs,
            "chromium": chromium,
            "digest": doc["digest"]["value"],
            "summary": doc["summary"]["byStatus"],
        }
    text = markdown(report)
    print(text)
    if not args.quick:
        stem = write_results(ROOT / "bench/results", "report", report, text)
        print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
