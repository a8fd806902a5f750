// What a rendezvous introduction carries for each side (docs/rendezvous-protocol.md,
// section 3.4): the side's ICE short-term credentials and tie-breaker for the
// connectivity checks, and its certificate's SHA-256 fingerprint so the QUIC
// handshake can pin it (as WebRTC's SDP carries a=fingerprint).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "p2p/stun.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::rendezvous {

struct IntroductionOffer {
  std::string ufrag;
  std::string password;
  std::uint64_t tie_breaker = 0;
  Bytes fingerprint;  ///< SHA-256, 32 bytes
  /// The side's TURN relayed address (RELAY-CANDIDATE), when it has an allocation.
  std::optional<SocketAddress> relay;
};

/// Appends ICE-UFRAG, ICE-PASSWORD, TIE-BREAKER, CERT-FINGERPRINT and, when set, RELAY-CANDIDATE.
void add_offer(stun::Message& m, const IntroductionOffer& offer);
/// Reads them back. Errors (domain stun, EINVAL): one missing, a ufrag outside
/// 4..64 or a password outside 22..128 ice-chars (RFC 8445 5.3), a fingerprint
/// that is not 32 bytes, a RELAY-CANDIDATE that is not an address.
Result<IntroductionOffer> read_offer(const stun::Message& m);

}  // namespace quiclab::rendezvous
