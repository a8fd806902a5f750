#!/usr/bin/python3
"""bench/compare/theory.py on cases worked out by hand."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../bench/compare"))
import theory  # noqa: E402

P = 1000
# Unpaced slow start from 10 packets, every second packet ACKed: rounds of
# 10, 20, 40, 80, 160, 320 packets arrive at 0, R, ..., 5R.
assert abs(theory.data_phase_ms(630 * P, 50, 10 * P, P, pacing=None) - 250) < 1e-6
# One more packet needs a seventh round.
assert abs(theory.data_phase_ms(631 * P, 50, 10 * P, P, pacing=None) - 300) < 1e-6
assert theory.rounds(630 * P, 10 * P) == 6 and theory.rounds(631 * P, 10 * P) == 7
# One window, paced at 1.25 x cwnd / R: 10 packets R / 12.5 apart, 9 gaps.
assert abs(theory.data_phase_ms(10 * P, 50, 10 * P, P, pacing=1.25) - 9 * 50 / 12.5) < 1e-6
assert theory.data_phase_ms(1, 50, 10 * P, P) == 0.0
# Pacing never makes the last byte come sooner here; a bigger window never later.
for size in (50_000, 300_000, 1_048_576):
    paced = theory.data_phase_ms(size, 50, 10 * P, P, pacing=1.25)
    assert paced >= theory.data_phase_ms(size, 50, 10 * P, P, pacing=None), size
    assert theory.data_phase_ms(size, 50, 20 * P, P) <= paced, size
# First bytes: 3, 3, 2 and 1 round trips.
assert [theory.expected(p, 1000, 40)[0] for p in ("h2", "h2-resumed", "h3", "h3-0rtt")] == [120, 120, 80, 40]
# The data phase scales with the RTT.
a = theory.expected("h2", 1_048_576, 10)
b = theory.expected("h2", 1_048_576, 100)
assert abs((b[1] - b[0]) - 10 * (a[1] - a[0])) < 1e-6
print("theory: ok")
