"""Shared by the P2P reports (matrix_report.py, bench_report.py, ladder.py).

read_events: `quiclab peer --json` (and tests/p2p/nice_peer) output, one JSON
object per line; lines that are not JSON objects with the required fields (an
offer line, a log line) are skipped.
percentile: linear interpolation between closest ranks (statistics.quantiles,
method "inclusive"), defined for a single sample too."""
import json
import os
import statistics


def read_events(path, require=("event",)):
    events = []
    if not os.path.exists(path):
        return events
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(j, dict) and all(k in j for k in require):
                events.append(j)
    return events


def percentile(values, p):
    """The p-th percentile (integer p in 1..99) of values; None when empty."""
    s = sorted(values)
    if not s:
        return None
    if len(s) == 1:
        return s[0]
    return statistics.quantiles(s, n=100, method="inclusive")[p - 1]
