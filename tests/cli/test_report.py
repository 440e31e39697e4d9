"""`synapse-scim report` against the sandbox: every assignment of every workspace and why, as CSV and
JSON (golden files, timestamp normalised; the digest is over the rows only, so it stays) and as HTML
opened in real headless chromium (the rendered table and summary read back and compared with the JSON)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import scenario
from cli_helpers import Cli, assert_golden, writes

REPORT = ("report", "-f", "repo", "-n", scenario.NS)
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SP_ID = "5e0a1c7e-0000-4000-8000-000000000001"
MANUAL_ID = "5e0a1c7e-0000-4000-8000-0000000000aa"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def normalised(text: str) -> str:
    return STAMP.sub("<generatedAt>", text)


def test_report_json_every_assignment_and_why(cli: Cli, repo: Path) -> None:
    result = cli(*REPORT, "-o", "json")
    assert result.rc == 0, result.stdout + result.stderr
    assert_golden("report.json", normalised(result.stdout))
    doc = json.loads(result.stdout)
    assert doc["apiVersion"] == "synapse-scim.io/report/v1"
    statuses = {(a["principal"]["display"], a["role"]["name"], a["status"]) for a in doc["assignments"]}
    assert (scenario.upn("heidi"), "Synapse Administrator", "manual") in statuses
    assert ("Contractors", "Synapse User", "manual") in statuses
    assert (scenario.upn("heidi"), "Synapse User", "held by the guard") in statuses
    assert (scenario.upn("grace"), "Synapse User", "pending removal") in statuses
    assert (scenario.upn("erin"), "Synapse User", "managed") in statuses
    held = [a for a in doc["assignments"] if a["status"] == "held by the guard"]
    assert all(a["planId"] for a in held)
    assert all(a["granted"] is None for a in doc["assignments"])
    assert writes(cli.sb) == {}


def test_report_csv_is_rfc4180_and_formula_safe(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # A manual grant to a service principal whose name a spreadsheet would run as a formula.
    sp = cli.sb.admin.add_service_principal(
        '=HYPERLINK("http://x","y")', id=SP_ID, app_id="5e0a1c7e-0000-4000-8000-000000000002"
    )
    cli.sb.admin.add_assignment("analytics", "Synapse Administrator", str(sp["id"]), id=MANUAL_ID)
    out = tmp_path / "report.csv"
    result = cli(*REPORT, "-o", "csv", "--out", str(out))
    assert result.rc == 0, result.stdout + result.stderr
    assert re.fullmatch(
        r"\S+: \d+ assignment\(s\) in 2 workspace\(s\), generated \S+, sha256 [0-9a-f]{64}\n", result.stderr
    )
    raw = out.read_bytes().decode()
    assert raw.count("\r\n") == raw.count("\n")  # RFC 4180: every record ends with CRLF
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    (evil,) = [r for r in rows if "HYPERLINK" in r["principal"]]
    assert evil["principal"].startswith("'=")
    assert (evil["principalType"], evil["appId"]) == ("ServicePrincipal", "5e0a1c7e-0000-4000-8000-000000000002")
    json_doc = json.loads(cli(*REPORT, "-o", "json").stdout)
    assert len(rows) == len(json_doc["assignments"])
    assert_golden("report.csv", raw.replace("\r\n", "\n"))


def test_the_digest_ignores_the_timestamp_and_follows_the_rows(cli: Cli, repo: Path) -> None:
    first = json.loads(cli(*REPORT, "-o", "json").stdout)
    again = json.loads(cli(*REPORT, "-o", "json").stdout)
    assert first["digest"] == again["digest"]
    cli.sb.admin.add_assignment("reporting", "Synapse User", scenario.upn("alice"))
    changed = json.loads(cli(*REPORT, "-o", "json").stdout)
    assert changed["digest"]["value"] != first["digest"]["value"]


def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_report_html_in_headless_chromium(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # A name that is markup: it must show as text, never run or break the page.
    sp = cli.sb.admin.add_service_principal("<img src=x onerror=alert(1)></script>")
    cli.sb.admin.add_assignment("analytics", "Synapse User", str(sp["id"]))
    page = tmp_path / "report.html"
    result = cli(*REPORT, "-o", "html", "--out", str(page))
    assert result.rc == 0, result.stdout + result.stderr
    html = page.read_text()
    assert "<img src=x" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    doc = json.loads(cli(*REPORT, "-o", "json").stdout)

    shot = tmp_path / "report.png"
    chromium(
        f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", "--window-size=1400,1150", page.as_uri()
    )
    assert shot.exists() and shot.stat().st_size > 10_000, "chromium took no screenshot"
    print(f"screenshot: {shot}")

    dumped = chromium(
        f"--user-data-dir={tmp_path / 'profile-dom'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()
    )
    dom = dumped.stdout
    assert 'data-ready="1"' in dom, "the table's script did not run"
    rendered = re.search(r'<tbody id="rows-body">(.*?)</tbody>', dom, re.S)
    assert rendered is not None
    assert rendered.group(1).count("<tr>") == len(doc["assignments"])
    assert re.search(r'id="row-count">(\d+)<', dom).group(1) == str(len(doc["assignments"]))  # type: ignore[union-attr]
    figures = dict(re.findall(r'data-figure="([^"]+)"><b>(\d+)</b>', dom))
    summary = doc["summary"]
    assert int(figures["assignments"]) == summary["assignments"]
    assert int(figures["principals"]) == summary["principals"]
    assert int(figures["privileged"]) == summary["privileged"]["assignments"]
    for status, n in summary["byStatus"].items():
        if n:
            assert int(figures[status]) == n
    assert doc["digest"]["value"] in dom
    # The markup name is in the rendered table as text (escaped in the DOM dump), not as an element.
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;/script&gt;" in rendered.group(1)
