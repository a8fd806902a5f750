#!/usr/bin/env bash
# Installs the Debian 12 packages quiclab needs, and only those missing.
# Runs `apt-get update` only when something is missing. Needs root for the
# install step; with nothing missing it needs nothing.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  # libraries
  libuv1-dev libnghttp2-dev libssl-dev libngtcp2-dev libngtcp2-crypto-gnutls-dev
  libgnutls28-dev libnghttp3-dev libcli11-dev nlohmann-json3-dev libfmt-dev libspdlog-dev
  catch2 zlib1g-dev
  # a real ICE agent for the interop test (tests/p2p/nice_peer.cpp)
  libnice-dev
  # peers to test and benchmark against
  nghttp2-client nghttp2-server ngtcp2-client ngtcp2-server coturn stun-client curl openssl
  # the lab
  iproute2 nftables iptables ethtool procps psmisc iputils-ping conntrack
  # reports
  python3 python3-matplotlib python3-markdown
  # compare.sh --hol: the client's packet capture and its analysis (bench/compare/stall.py)
  tcpdump python3-dpkt python3-cryptography
  # the report test opens report.html in a headless browser
  chromium
  # tests read JSON lines with jq
  jq
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} missing packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
