"""The catalogue table in docs/troubleshooting.md and the catalogue tests stay in step: every test
under tests/badinput is a row, and every row names a test that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
HERE = Path(__file__).relative_to(ROOT).as_posix()


def table_tests() -> list[str]:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "`tests/" in line]
    return [re.findall(r"`(tests/[^`]+::[^`]+)`", row)[-1] for row in rows]


def collected(*paths: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


def test_every_catalogue_test_is_a_row_and_every_row_a_test():
    rows = table_tests()
    assert len(rows) == len(set(rows)), "a test is listed twice"
    catalogue = {t for t in collected("tests/badinput") if not t.startswith(HERE)}
    assert len(catalogue) >= 40
    listed_here = {t for t in rows if t.startswith("tests/badinput/")}
    assert catalogue - listed_here == set(), "catalogue tests missing from docs/troubleshooting.md"
    assert listed_here - catalogue == set(), "rows naming tests that do not exist"
    elsewhere = {t for t in rows if not t.startswith("tests/badinput/")}
    files = sorted({t.split("::")[0] for t in elsewhere})
    assert elsewhere - collected(*files) == set(), "rows naming tests that do not exist"


def test_each_row_says_symptom_reason_and_fix():
    for line in DOC.read_text().splitlines():
        if line.startswith("| ") and "`tests/" in line:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            assert len(cells) == 4 and all(cells), line
