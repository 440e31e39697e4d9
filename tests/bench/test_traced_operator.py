"""The memory attribution tools: bench/traced_operator.py (the operator's CLI under tracemalloc, with
snapshots), bench/memory_report.py (its tables), and scale_bench's --tracemalloc / --converge-only on
the tiny scenario. What is checked is that the snapshots exist and read back, not how much memory
anything takes."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from memory_report import owner, report
from scale_bench import RunConfig, markdown, run
from scale_model import SCENARIOS

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_report_names_files_lines_and_owners(tmp_path: Path) -> None:
    tracemalloc.start(8)
    try:
        kept = [str(i) * 50 for i in range(2_000)]
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    path = tmp_path / "peak.snap"
    snap.dump(str(path))
    text = report(path, top=5, compare=path)
    assert "### By file (innermost frame)" in text and "### By line (innermost frame)" in text
    assert "### By owner module" in text and "### kopf's own" in text and "### Against peak.snap" in text
    assert "test_traced_operator.py" in text, "this test's list is among the top allocations"
    assert kept


def test_owner_is_the_innermost_operator_or_kopf_frame() -> None:
    def tb(*frames: tuple[str, int]) -> tracemalloc.Traceback:
        # tracemalloc.Traceback takes the frames outermost first and shows them innermost first.
        return tracemalloc.Traceback(tuple(reversed(frames)))

    site = "/v/lib/python3.11/site-packages"
    stdlib = "/py/lib/python3.11/json/decoder.py"
    kopf_body = tb((f"{site}/kopf/_cogs/clients/api.py", 278), (stdlib, 353))
    assert owner(kopf_body) == "kopf/_cogs/clients/api.py:278"
    ours = tb(
        (f"{site}/kopf/_core/actions/invocation.py", 10), ("/w/operator/synapse_scim/core/model.py", 7), (stdlib, 1)
    )
    assert owner(ours) == "synapse_scim/core/model.py:7"
    assert owner(tb((f"{site}/aiohttp/client.py", 3))) == "aiohttp (no operator or kopf frame)"


def test_traced_cli_writes_its_exit_snapshot(tmp_path: Path) -> None:
    """Without a Kubernetes configuration `run` exits 1 at once: the exit snapshot is still written."""
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing")}
    out = tmp_path / "snaps"
    done = subprocess.run(
        [sys.executable, str(BENCH / "traced_operator.py"), "--out", str(out), "--frames", "1", "--", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    assert "no Kubernetes configuration" in done.stderr
    assert (out / "exit.snap").exists() and (out / "exit.json").exists()
    assert "## exit.snap:" in report(out / "exit.snap", top=3)


def test_tiny_converge_only_under_tracemalloc(cluster: Any, tmp_path: Path) -> None:
    # One frame: each frame kept costs a line-table walk per allocation, and a module-sized code object
    # (a generated SDK module) makes that slow enough to keep the tiny scenario from converging in time.
    cfg = RunConfig(
        poll_interval=1.0,
        converge_timeout=300,
        converge_only=True,
        tracemalloc_dir=tmp_path / "tm",
        tracemalloc_frames=1,
    )
    result = run(SCENARIOS["tiny"], ["delta"], cfg, cluster, tmp_path, log=lambda msg: None)
    d = result["strategies"]["delta"]
    assert "propagation" not in d and "quiet" not in d
    assert d["peak_rss_mb"] > 0
    traced = tmp_path / "tm" / "tiny-delta-converge-propagate"
    assert Path(d["converge"]["tracemalloc_snapshot"]) == traced / "usr1-1.snap"
    assert (traced / "usr1-1.snap").exists() and (traced / "exit.snap").exists()
    assert "## usr1-1.snap:" in report(traced / "usr1-1.snap", top=3)
    text = markdown(result)
    assert "operator peak RSS" in text and "## Quiet window" not in text
