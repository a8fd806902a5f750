// What a datagram on a shared UDP socket is, by its content alone. One socket
// per peer carries STUN, TURN ChannelData and QUIC (DESIGN.md), and ngtcp2
// 0.12.1 greases the QUIC fixed bit (RFC 9287), so QUIC packets between two
// quiclab endpoints can start with any byte 0x00-0x3F: the STUN range of RFC
// 7983's first-byte rule. The first byte alone therefore never decides; a
// datagram is STUN only when its whole header agrees.
#pragma once

#include <cstdint>

#include "transport/core/buffer.hpp"

namespace quiclab {

inline constexpr std::uint32_t kStunMagicCookie = 0x2112A442;
inline constexpr std::size_t kStunHeaderSize = 20;

/// A well-formed STUN message (RFC 8489 section 5): the two top bits zero
/// (first byte 0x00-0x3F; RFC 7983's narrower 0-3 covers only methods below
/// 0x100, and the rendezvous methods are 0xA01 and up), the magic cookie, and a message length that is a
/// multiple of 4 and accounts for exactly the rest of the datagram. A greased
/// QUIC short-header packet matches all of that with probability about 2^-40.
inline bool is_stun_message(ByteView d) {
  if (d.size() < kStunHeaderSize || (d[0] & 0xC0) != 0) return false;
  const std::uint32_t cookie =
      (std::uint32_t{d[4]} << 24) | (std::uint32_t{d[5]} << 16) | (std::uint32_t{d[6]} << 8) | d[7];
  const std::size_t length = (std::size_t{d[2]} << 8) | d[3];
  return cookie == kStunMagicCookie && length % 4 == 0 && length + kStunHeaderSize == d.size();
}

/// TURN ChannelData (RFC 8656 section 12.4): channel number 0x4000-0x4FFF
/// (first byte 0x40-0x4F), then a length no longer than what follows (over
/// UDP the message may be padded up to a multiple of 4). Only meaningful for
/// datagrams from the TURN server's address: QUIC short-header packets with
/// the fixed bit set start with 0x40-0x7F.
inline bool is_channel_data(ByteView d) {
  if (d.size() < 4 || d[0] < 0x40 || d[0] > 0x4F) return false;
  const std::size_t length = (std::size_t{d[2]} << 8) | d[3];
  return length + 4 <= d.size() && d.size() - (length + 4) < 4;
}

}  // namespace quiclab
