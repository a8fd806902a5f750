"""Reading `quiclab peer --json` (and tests/p2p/nice_peer) output: one JSON
object per line; lines that are not JSON objects with an "event" field (an
offer line, a log line) are skipped. Shared by matrix_report.py and ladder.py."""
import json
import os


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
