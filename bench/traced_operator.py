"""The operator's CLI under tracemalloc, for attributing its memory (bench/scale_bench.py --tracemalloc).

    python bench/traced_operator.py --out DIR [--frames 8] [--peak-step 0.1] [--peak-floor-mb 64] -- run ...

Everything after `--` goes to `synapse_scim.cli` as its arguments, in this process, exactly as
`python -m synapse_scim.cli ...` would run them. Snapshots (`tracemalloc.Snapshot.dump`, read with
`tracemalloc.Snapshot.load`) go to DIR:

- `peak.snap`: taken by a watcher thread whenever the traced memory passes the last peak snapshot (or
  the floor, 64 MB) by `--peak-step` (10 %): the last one written is within that step of the traced peak, wherever it
  happened (the harness cannot know when a sync's working set is largest);
- `usr1-<n>.snap` on each SIGUSR1 (n from 1), e.g. when the harness sees the workspaces converged;
- `exit.snap` when the operator returns.

Each is written to a temporary name and renamed, so a file that exists is complete. tracemalloc costs
memory of its own (a trace per live block, a traceback per distinct allocation site) and slows every
allocation: RSS and CPU figures of a traced run are not comparable with an untraced one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import tracemalloc
from pathlib import Path

# One snapshot at a time (the watcher thread and the signal handler); re-entrant: a second SIGUSR1 may
# arrive while the main thread is inside the first one's handler.
_lock = threading.RLock()


def write_snapshot(out: Path, name: str) -> Path:
    with _lock:
        snap = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        path = out / f"{name}.snap"
        tmp = out / f".{name}.snap.tmp"
        snap.dump(str(tmp))
        # What the snapshot cannot say: the traced totals and the process's RSS when it was taken.
        meta = {"traced_current": current, "traced_peak": peak, "rss_kb": _status("VmRSS"), "hwm_kb": _status("VmHWM")}
        (out / f".{name}.json.tmp").write_text(json.dumps(meta))
        os.replace(out / f".{name}.json.tmp", out / f"{name}.json")
        os.replace(tmp, path)
        return path


def _status(field: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def watch_peak(out: Path, step: float, floor: int, stop: threading.Event, interval: float = 0.5) -> None:
    # The floor: start-up's imports pass through many 10 % steps, and a snapshot costs seconds.
    taken = floor
    while not stop.wait(interval):
        current, _ = tracemalloc.get_traced_memory()
        if current > taken * (1 + step):
            write_snapshot(out, "peak")
            taken = current


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: traced_operator.py --out DIR [--frames N] [--peak-step F] -- <synapse-scim args>")
    cut = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    # Each frame kept costs time at every allocation: 25 frames made the imports alone ~60x slower
    # than untraced on the benchmark machine, 8 about 10x; 8 reach the operator's or kopf's frame
    # of most allocations (bench/memory_report.py's owner).
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--peak-step", type=float, default=0.1)
    p.add_argument("--peak-floor-mb", type=float, default=64.0, help="no peak snapshot below this traced size")
    args = p.parse_args(argv[:cut])
    args.out.mkdir(parents=True, exist_ok=True)

    tracemalloc.start(args.frames)
    usr1 = 0

    def on_usr1(signum: int, frame: object) -> None:
        nonlocal usr1
        usr1 += 1
        write_snapshot(args.out, f"usr1-{usr1}")

    signal.signal(signal.SIGUSR1, on_usr1)
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_peak, args=(args.out, args.peak_step, int(args.peak_floor_mb * 1e6), stop), daemon=True
    )
    watcher.start()
    from synapse_scim.cli import main as cli_main

    try:
        return cli_main(argv[cut + 1 :])
    finally:
        stop.set()
        watcher.join()
        write_snapshot(args.out, "exit")


if __name__ == "__main__":
    sys.exit(main())
