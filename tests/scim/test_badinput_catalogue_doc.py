"""The SCIM section of docs/troubleshooting.md and tests/scim/test_badinput_catalogue.py stay in step:
every catalogue test is a row of the section, every row of the section names a catalogue test, and
each row has a symptom, a reason, a fix and its test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
CATALOGUE = "tests/scim/test_badinput_catalogue.py"
SECTION = "## The SCIM endpoint"


def section_rows() -> list[str]:
    text = DOC.read_text()
    assert SECTION in text, f"docs/troubleshooting.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("| ") and "`tests/" in line]


def test_every_scim_catalogue_test_is_a_row_and_every_row_a_test() -> None:
    listed = [re.findall(r"`(tests/[^`]+::[^`]+)`", row)[-1] for row in section_rows()]
    assert len(listed) == len(set(listed)), "a test is listed twice"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", CATALOGUE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    collected = {line.strip() for line in out.splitlines() if "::" in line}
    assert len(collected) >= 40
    assert collected - set(listed) == set(), "catalogue tests missing from docs/troubleshooting.md"
    assert set(listed) - collected == set(), "rows naming tests that do not exist"


def test_each_scim_row_says_symptom_reason_and_fix() -> None:
    for line in section_rows():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), line
