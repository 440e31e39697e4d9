"""TLS verification is never turned off in what ships: the operator's package (all of it: the sandbox
and the local control plane live in another distribution, sandbox/, which never ships), the image and
the chart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "synapse_scim"

# Each way Python, its HTTP clients, the Azure SDKs, the Kubernetes client or Helm can be told to
# skip certificate checks.
FORBIDDEN = {
    "verify=False": r"\bverify\s*=\s*False\b",
    "connection_verify=False": r"connection_verify\s*=\s*False",
    "verify_ssl=False": r"verify_ssl\s*=\s*False",
    "ssl=False (aiohttp)": r"\bssl\s*=\s*False\b",
    "CERT_NONE": r"\bCERT_NONE\b",
    "check_hostname=False": r"check_hostname\s*=\s*False",
    "unverified context": r"_create_unverified_context",
    "PYTHONHTTPSVERIFY": r"PYTHONHTTPSVERIFY",
    "urllib3 warnings silenced": r"disable_warnings|InsecureRequestWarning",
    "insecure-skip-tls-verify": r"insecure[-_]skip[-_]tls[-_]verify",
    "AZURE_CORE_DISABLE_SSL / similar": r"DISABLE_SSL|SSL_VERIFY\s*=\s*['\"]?(0|false)",
}


def shipped_files() -> list[Path]:
    code = list(PACKAGE.rglob("*.py"))
    chart = [p for p in (ROOT / "charts").rglob("*") if p.is_file()]
    return [*code, *chart, ROOT / "Dockerfile", ROOT / "pyproject.toml"]


def findings(text: str) -> list[str]:
    return [name for name, pattern in FORBIDDEN.items() if re.search(pattern, text, re.IGNORECASE)]


@pytest.mark.parametrize(
    "snippet",
    [
        "httpx.AsyncClient(verify=False)",
        "AccessControlClient(c, e, connection_verify = False)",
        "configuration.verify_ssl = False",
        "aiohttp.TCPConnector(ssl=False)",
        "ctx.verify_mode = ssl.CERT_NONE",
        "ctx.check_hostname=False",
        "ssl._create_unverified_context()",
        "ENV PYTHONHTTPSVERIFY=0",
        "urllib3.disable_warnings()",
        "insecure-skip-tls-verify: true",
    ],
)
def test_the_scan_catches_each_way_of_disabling_tls(snippet):
    assert findings(snippet), snippet


def test_no_shipped_file_disables_tls_verification():
    files = shipped_files()
    assert any(p.name == "credentials.py" for p in files) and any(p.name == "directory.py" for p in files)
    found = {str(p.relative_to(ROOT)): hits for p in files if (hits := findings(p.read_text(errors="replace")))}
    assert found == {}, f"TLS verification disabled in: {found}"
