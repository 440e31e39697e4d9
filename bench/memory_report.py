"""What a tracemalloc snapshot of the operator (bench/traced_operator.py) holds, as markdown tables.

    python bench/memory_report.py DIR/peak.snap [--top 10] [--compare OTHER.snap]

Tables:
- by file and by line: tracemalloc's own statistics 'filename' and 'lineno' (the innermost frame of
  each allocation: json's decoder, a dict built in some module, ...);
- by owner: the innermost frame of each allocation that is in the operator (`synapse_scim/...`) or in
  kopf (`kopf/...`), whichever comes first from the allocation outwards, else the package of the
  innermost frame. A body kopf parsed from a watch stream and keeps is owned by the kopf module that
  asked for it; an object the operator built while a kopf handler called it is the operator's;
- kopf's own: the allocations owned by kopf, by its line (what kopf keeps of the watched objects).
With --compare, the differences by owner from OTHER (e.g. before -> after a change).
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path

OURS = ("synapse_scim/", "kopf/")


def short(filename: str) -> str:
    """A path from the package down: `kopf/_cogs/clients/watching.py`, `stdlib json/decoder.py`."""
    for marker in ("site-packages/", "/operator/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[1]
    if "/lib/python3" in filename:
        return "stdlib " + filename.split("/lib/python3", 1)[1].split("/", 1)[1]
    return filename


def owner(tb: tracemalloc.Traceback) -> str:
    """The innermost frame (file:line) in the operator or kopf; else the innermost frame's package."""
    for frame in reversed(tb):  # a Traceback runs from the oldest frame to the most recent
        name = short(frame.filename)
        if name.startswith(OURS):
            return f"{name}:{frame.lineno}"
    name = short(tb[-1].filename) if len(tb) else "?"
    return name.split("/", 1)[0] + " (no operator or kopf frame)"


def by_owner(snap: tracemalloc.Snapshot) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in snap.statistics("traceback"):
        row = out[owner(stat.traceback)]
        row[0] += stat.size
        row[1] += stat.count
    return out


def module_of(owner_key: str) -> str:
    return owner_key.split(":", 1)[0].split(" (", 1)[0]


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def table(title: str, rows: list[tuple[str, int, int]], total: int) -> list[str]:
    lines = [f"### {title}", "", "| where | MB | % of traced | blocks |", "|---|---|---|---|"]
    for where, size, count in rows:
        lines.append(f"| `{where}` | {mb(size)} | {100 * size / total:.1f} | {count:,} |")
    return [*lines, ""]


def report(path: Path, top: int, compare: Path | None = None) -> str:
    snap = tracemalloc.Snapshot.load(str(path)).filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    total = sum(t.size for t in snap.traces)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    lines = [
        f"## {path.name}: {mb(total)} MB traced in {len(snap.traces):,} blocks"
        + (
            f"; process RSS {meta['rss_kb'] / 1024:.0f} MB (peak {meta['hwm_kb'] / 1024:.0f} MB) under tracing"
            if meta
            else ""
        ),
        "",
    ]
    for key, title in (("filename", "By file (innermost frame)"), ("lineno", "By line (innermost frame)")):
        stats = snap.statistics(key)[:top]
        rows = [
            (short(s.traceback[0].filename) + (f":{s.traceback[0].lineno}" if key == "lineno" else ""), s.size, s.count)
            for s in stats
        ]
        lines += table(title, rows, total)
    owners = by_owner(snap)
    modules: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for k, (size, count) in owners.items():
        modules[module_of(k)][0] += size
        modules[module_of(k)][1] += count
    rank = sorted(modules.items(), key=lambda kv: -kv[1][0])[:top]
    lines += table("By owner module (innermost operator or kopf frame)", [(k, s, c) for k, (s, c) in rank], total)
    rank = sorted(owners.items(), key=lambda kv: -kv[1][0])[:top]
    lines += table("By owner line", [(k, s, c) for k, (s, c) in rank], total)
    kopf = sorted(((k, v) for k, v in owners.items() if k.startswith("kopf/")), key=lambda kv: -kv[1][0])
    kopf_total = sum(s for _, (s, _) in kopf)
    lines += table(
        f"kopf's own ({mb(kopf_total)} MB: what kopf holds of the watched objects and its own state)",
        [(k, s, c) for k, (s, c) in kopf[:top]],
        total,
    )
    if compare is not None:
        other = by_owner(
            tracemalloc.Snapshot.load(str(compare)).filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        )
        mods: dict[str, int] = defaultdict(int)
        for k, (size, _) in owners.items():
            mods[module_of(k)] += size
        for k, (size, _) in other.items():
            mods[module_of(k)] -= size
        diff = sorted(mods.items(), key=lambda kv: kv[1])[:top]
        lines += [f"### Against {compare.name}, by owner module (MB, negative: less here)", ""]
        lines += [f"| `{k}` | {d / 1e6:+.1f} |" for k, d in diff] + [""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshot", type=Path)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--compare", type=Path)
    args = p.parse_args()
    print(report(args.snapshot, args.top, args.compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
