#include "bench/linkem/packet_flow.hpp"

#include <algorithm>

namespace quiclab::linkem {

namespace {
std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }
bool has_ports(std::uint8_t protocol) { return protocol == 6 || protocol == 17; }
}  // namespace

std::size_t FlowKeyHash::operator()(const FlowKey& k) const noexcept {
  // FNV-1a over the fields; flows per link are few, so quality needs are modest.
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](std::uint8_t b) {
    h ^= b;
    h *= 1099511628211ULL;
  };
  mix(k.ip_version);
  mix(k.protocol);
  for (auto b : k.src) mix(b);
  for (auto b : k.dst) mix(b);
  mix(static_cast<std::uint8_t>(k.src_port >> 8));
  mix(static_cast<std::uint8_t>(k.src_port));
  mix(static_cast<std::uint8_t>(k.dst_port >> 8));
  mix(static_cast<std::uint8_t>(k.dst_port));
  return static_cast<std::size_t>(h);
}

std::optional<FlowKey> parse_flow(ByteView p) {
  if (p.empty()) return std::nullopt;
  FlowKey k;
  k.ip_version = static_cast<std::uint8_t>(p[0] >> 4);
  if (k.ip_version == 4) {
    if (p.size() < 20) return std::nullopt;
    std::size_t ihl = static_cast<std::size_t>(p[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > p.size()) return std::nullopt;
    k.protocol = p[9];
    std::copy_n(p.data() + 12, 4, k.src.begin());
    std::copy_n(p.data() + 16, 4, k.dst.begin());
    // Only the first fragment carries the transport header.
    bool later_fragment = (be16(p.data() + 6) & 0x1fff) != 0;
    if (has_ports(k.protocol) && !later_fragment && p.size() >= ihl + 4) {
      k.src_port = be16(p.data() + ihl);
      k.dst_port = be16(p.data() + ihl + 2);
    }
    return k;
  }
  if (k.ip_version == 6) {
    if (p.size() < 40) return std::nullopt;
    k.protocol = p[6];
    std::copy_n(p.data() + 8, 16, k.src.begin());
    std::copy_n(p.data() + 24, 16, k.dst.begin());
    if (has_ports(k.protocol) && p.size() >= 44) {
      k.src_port = be16(p.data() + 40);
      k.dst_port = be16(p.data() + 42);
    }
    return k;
  }
  return std::nullopt;
}

}  // namespace quiclab::linkem
