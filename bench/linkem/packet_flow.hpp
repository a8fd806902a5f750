// Flow identification for IP packets as a TUN device hands them over (no
// link-layer header): the 5-tuple of IPv4/IPv6 TCP and UDP packets.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "transport/core/buffer.hpp"

namespace quiclab::linkem {

/// A flow as seen in one direction. IPv4 addresses occupy the first 4 bytes.
struct FlowKey {
  std::uint8_t ip_version = 0;  ///< 4 or 6.
  std::uint8_t protocol = 0;    ///< IP protocol number (6 TCP, 17 UDP, ...).
  std::array<std::uint8_t, 16> src{};
  std::array<std::uint8_t, 16> dst{};
  std::uint16_t src_port = 0;  ///< 0 when the packet has no TCP/UDP header (or is a fragment).
  std::uint16_t dst_port = 0;

  bool operator==(const FlowKey&) const = default;
};

struct FlowKeyHash {
  std::size_t operator()(const FlowKey& k) const noexcept;
};

/// Reads the flow of an IP packet. Returns nullopt for anything that is not a
/// well-formed IPv4 or IPv6 header (too short, wrong version, bad IHL). IPv6
/// extension headers are not walked: such packets get ports 0.
std::optional<FlowKey> parse_flow(ByteView packet);

}  // namespace quiclab::linkem
