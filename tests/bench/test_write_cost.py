"""Smoke test of bench/write_cost.py: a tiny run as its own process (it pins CPUs and starts the sandbox
in a process of its own), checked for the shape of its report and for every write having landed in
the sandbox. Figures are benchmark results only: no CPU or wall-clock limit is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "write_cost.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)


def test_every_write_lands_and_the_report_has_its_figures(tmp_path: Path) -> None:
    saved = tmp_path / "tiny.json"
    done = run(
        "--writes", "20", "--rounds", "2", "--write-concurrency", "4", "--profile", "--top", "5", "--save", str(saved)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(saved.read_text())
    assert (
        report["writes"] == 20
        and report["rounds"] == 2
        and report["write_concurrency"] == 4
        and report["profiled"] is True
    )
    # Every create answered 200 once, none failed, and the sandbox lists each of the 40 assignments.
    assert report["granted"] == 40 and report["failed"] == 0
    assert report["sandbox_creates_200"] == report["sandbox_creates"] == 40
    assert report["landed"] == 40
    assert len(report["per_round"]) == 2 and report["wall_s"] > 0
    assert report["cpu_ms_per_write"] >= report["cpu_ms_per_write_min"] >= 0
    assert set(report["profile"]) == {"cumulative", "tottime"}
    assert all("ncalls" in text for text in report["profile"].values())
    assert "--- by cumulative" in done.stdout and "--- by tottime" in done.stdout

    out = tmp_path / "results"
    recorded = run("--record", str(saved), "--note", "A note.", "--out", str(out))
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    (md,) = out.glob("write-cost-*.md")
    (js,) = out.glob("write-cost-*.json")
    text = md.read_text()
    assert "| tiny |" in text and "A note." in text and "## Profile tiny, by tottime" in text
    assert json.loads(js.read_text())["runs"]["tiny"]["landed"] == 40


def test_the_raw_floor_lands_every_write_too(tmp_path: Path) -> None:
    saved = tmp_path / "floor.json"
    done = run("--raw", "--writes", "12", "--write-concurrency", "3", "--save", str(saved))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(saved.read_text())
    assert report["mode"] == "raw-aiohttp" and report["profiled"] is False
    assert report["granted"] == report["sandbox_creates_200"] == report["landed"] == 12
