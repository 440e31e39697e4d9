"""The results files the benchmarks share (bench/bench_results.py), without running a benchmark."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from bench_results import write_results


def test_write_results_writes_the_json_and_the_markdown_named_by_the_day(tmp_path: Path) -> None:
    out = tmp_path / "results"  # not there yet: the scripts' --out may name a new folder
    report = {"date": "2026-12-01 05:00 UTC", "machine": {"cpus": 2}, "config": {"profile_dir": Path("/p")}}
    before = dt.datetime.now(dt.UTC).date()
    stem = write_results(out, "scale-tiny", report, "| a |\n")
    days = {before, dt.datetime.now(dt.UTC).date()}  # a run across midnight may take either
    assert stem.parent == out and stem.name in {f"scale-tiny-{d:%Y-%m-%d}" for d in days}
    assert sorted(p.name for p in out.iterdir()) == [f"{stem.name}.json", f"{stem.name}.md"]
    text = stem.with_suffix(".json").read_text()
    assert text.endswith("}\n") and json.loads(text) == {**report, "config": {"profile_dir": "/p"}}
    assert stem.with_suffix(".md").read_text() == "| a |\n"
