"""Where the benchmarks' results go: one JSON report and its Markdown table per run, named by the day."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from pathlib import Path
from typing import Any


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The propagation benchmarks' summary of changes measured one by one (each a dict with
    `latency_s`, None when its effect was not seen in time)."""
    latencies = [r["latency_s"] for r in results if r["latency_s"] is not None]
    return {
        "changes": results,
        "measured": len(latencies),
        "missed": len(results) - len(latencies),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies, default=None),
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
    }


def write_results(out: Path, name: str, report: dict[str, Any], markdown: str) -> Path:
    """Write `<out>/<name>-<UTC date>.json` and `.md`; return that stem (without a suffix).

    The date is that of the write, not of the run's start, as the scripts always named their files;
    a second run of the same name on one day overwrites the first."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}-{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    # default=str: a report may hold a value JSON has no type for (scale_bench's profile_dir is a Path).
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    return stem
