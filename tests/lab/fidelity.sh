#!/usr/bin/env bash
# The fidelity check at one setting: `netlab.sh check ARGS` must meet its
# targets (RTT median within 1 ms, configured loss inside the measured 95 %
# interval, goodput within 5 % of the cap). A fixed seed makes the loss
# pattern reproducible, so the statistical check is not flaky.
source "$(dirname "$0")/lib.sh"

name=$(new_name)
TEST_LABS+=("$name")
out=$TEST_TMP/check.json
"$NETLAB" check --name "$name" --seed 4242 "$@" >"$out"
cat "$out"
assert_gone "$name"

emu=$(json_get "$out" 'j["emulator"]')
[[ $emu == userspace || $emu == netem ]] || fail "emulator '$emu'"
python3 - "$out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c, m, v = j["configured"], j["measured"], j["verdict"]
errors = []
if abs(m["rtt_ms_median"] - c["expected_rtt_ms"]) > 1.0:
    errors.append(f"RTT median {m['rtt_ms_median']:.3f} ms vs configured {c['rtt_ms']} ms "
                  f"(expected {c['expected_rtt_ms']} ms with the probes' serialization)")
if m["rtt_ms_p99"] < m["rtt_ms_median"]:
    errors.append("p99 below median")
lo, hi = m["loss_ci95"]
if c["loss_model"] != "gilbert" and not (lo <= c["expected_loss_pct"] <= hi):
    errors.append(f"loss {c['expected_loss_pct']} % outside measured interval [{lo:.3f}, {hi:.3f}]")
if c["loss_model"] == "gilbert" and abs(m["loss_pct"] - c["expected_loss_pct"]) > max(1.0, c["expected_loss_pct"]):
    errors.append(f"bursty loss {m['loss_pct']:.3f} % far from {c['expected_loss_pct']} %")
if c["rate_mbit"]:
    g = m["goodput_mbit"]
    if abs(g - c["rate_mbit"]) > 0.05 * c["rate_mbit"]:
        errors.append(f"goodput {g:.3f} Mbit/s vs cap {c['rate_mbit']}")
if not v["pass"]:
    errors.append(f"check's own verdict failed: {v}")
if errors:
    print("FAIL: " + "; ".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"fidelity ok ({j['emulator']}): rtt median {m['rtt_ms_median']:.3f} ms, loss {m['loss_pct']:.3f} %"
      + (f", goodput {m['goodput_mbit']:.2f} Mbit/s" if c["rate_mbit"] else ""))
PY
