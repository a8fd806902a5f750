#!/usr/bin/python3
"""Joins the parts of a `scripts/compare.sh --shard I/N` run (called by
`compare.sh merge --out DIR PART...`).

Checks that the parts belong together (the same command apart from --shard
and --out, the same N, every I from 0 to N-1 exactly once, no cell twice, every
cell of the grid present) and writes DIR/runs.jsonl (the parts' run records
in cell order, each part's own order within a cell) and DIR/meta.json (the
first part's, with "shard" "merged", the union of "cells", and each part's
own provenance under "parts"). compare.sh then summarises DIR as it would a
single run: summary.json depends only on the run records, so the merged
summary equals the summary of a single run that produced the same records.
Exit 1 with the reason when the parts do not fit together.
"""
import argparse
import json
import os
import re
import sys


def strip_part_args(command):
    """The command without its --shard and --out arguments."""
    return re.sub(r"\s--(shard|out)\s+\S+", "", command)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("parts", nargs="+")
    a = ap.parse_args()
    metas, runs = [], []
    for d in a.parts:
        try:
            with open(os.path.join(d, "meta.json")) as f:
                m = json.load(f)
            with open(os.path.join(d, "runs.jsonl")) as f:
                rs = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            print(f"merge: {d}: not a compare.sh output directory: {e}", file=sys.stderr)
            return 1
        metas.append((d, m))
        runs.append(rs)
    problems = []
    first = metas[0][1]
    n = {m.get("shard", "0/1").split("/")[1] for _, m in metas}
    if len(n) != 1:
        problems.append(f"the parts were cut into different numbers of shards: {sorted(n)}")
    want_n = int(next(iter(n)))
    seen = {}
    for d, m in metas:
        i = int(m.get("shard", "0/1").split("/")[0])
        if i in seen:
            problems.append(f"shard {i} twice: {seen[i]} and {d}")
        seen[i] = d
        if strip_part_args(m.get("command", "")) != strip_part_args(first.get("command", "")):
            problems.append(f"{d} ran another command: {m.get('command')!r} (the first part: {first.get('command')!r})")
        for k in ("seed", "seeds", "cells_total", "commit", "crn"):
            if m.get(k) != first.get(k):
                problems.append(f"{d}: {k} is {m.get(k)!r}, the first part's {first.get(k)!r}")
    missing = sorted(set(range(want_n)) - set(seen))
    if missing:
        problems.append(f"shards missing: {missing} of {want_n}")
    cells = [c for _, m in metas for c in m.get("cells", [])]
    if len(cells) != len(set(cells)):
        problems.append("a cell ran in more than one part")
    total = first.get("cells_total")
    if total is not None and sorted(cells) != list(range(1, total + 1)):
        problems.append(f"cells run: {sorted(cells)}, the grid has 1..{total}")
    if problems:
        for p in problems:
            print("merge: " + p, file=sys.stderr)
        return 1
    merged = [r for rs in runs for r in rs]
    merged.sort(key=lambda r: r.get("cell", 0))  # stable: each part's order within a cell stays
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "runs.jsonl"), "w") as f:
        for r in merged:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    meta = dict(first)
    meta["shard"] = "merged"
    meta["cells"] = sorted(cells)
    meta["command"] = strip_part_args(first.get("command", ""))
    meta["parts"] = [{"dir": d, "shard": m.get("shard"), "cells": m.get("cells"), "start": m.get("start"),
                      "end": m.get("end"), "load_before": m.get("load_before"), "load_after": m.get("load_after"),
                      "dirty": m.get("dirty"), "fidelity": m.get("fidelity")} for d, m in metas]
    meta["start"] = min(m.get("start", "") for _, m in metas)
    meta["end"] = max(m.get("end", "") for _, m in metas)
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"merge: {len(merged)} run records from {len(metas)} parts, cells {sorted(cells)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
