// The peer's demultiplexer: one UDP socket carries the rendezvous client's
// STUN, the connectivity checks, TURN and QUIC; this decides, per datagram,
// which core gets it. Sans-IO and stateless apart from the two server
// addresses it is told.
//
// Rules (DESIGN.md, "One UDP socket per peer"), in order:
//   1. from the TURN server's address: a well-formed STUN message or
//      ChannelData (first byte 0x40-0x4F) goes to the TURN client;
//   2. a well-formed STUN message (is_stun_message: top two bits zero, magic
//      cookie, matching length) from the rendezvous server goes to the
//      rendezvous client, from anywhere else to the connectivity-check agent;
//   3. everything else is QUIC, whatever its first byte: ngtcp2 0.12.1
//      greases the fixed bit, so 0x00-0x3F is QUIC too.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"

namespace quiclab::p2p {

enum class Route : std::uint8_t {
  rendezvous,          ///< STUN from the rendezvous server
  connectivity_check,  ///< STUN from a candidate (checks and their answers)
  turn,                ///< STUN or ChannelData from the TURN server
  quic,                ///< everything else
};

std::string_view route_name(Route r);

class Demultiplexer {
 public:
  void set_rendezvous_server(const SocketAddress& a) { rendezvous_ = a; }
  void set_turn_server(const SocketAddress& a) { turn_ = a; }
  const std::optional<SocketAddress>& rendezvous_server() const { return rendezvous_; }
  const std::optional<SocketAddress>& turn_server() const { return turn_; }

  /// Which core gets `datagram`, received from `from`.
  Route route(const SocketAddress& from, ByteView datagram) const;

 private:
  std::optional<SocketAddress> rendezvous_;
  std::optional<SocketAddress> turn_;
};

}  // namespace quiclab::p2p
