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

/// A side's NAT mapping behaviour as it measured it (RFC 4787): what decides
/// its role in birthday-paradox punching.
enum class Mapping : std::uint32_t { endpoint_independent = 1, endpoint_dependent = 2 };

struct IntroductionOffer {
  std::string ufrag;
  std::string password;
  std::uint64_t tie_breaker = 0;
  Bytes fingerprint;  ///< SHA-256, 32 bytes
  /// The side's TURN relayed address (RELAY-CANDIDATE), when it has an allocation.
  std::optional<SocketAddress> relay;
  /// BIRTHDAY: the side takes part in birthday-paradox punching; its mapping.
  std::optional<Mapping> birthday;
};

/// Appends ICE-UFRAG, ICE-PASSWORD, TIE-BREAKER, CERT-FINGERPRINT and, when
/// set, RELAY-CANDIDATE and BIRTHDAY.
void add_offer(stun::Message& m, const IntroductionOffer& offer);
/// Reads them back. Errors (domain stun, EINVAL): one missing, a ufrag outside
/// 4..64 or a password outside 22..128 ice-chars (RFC 8445 5.3), a fingerprint
/// that is not 32 bytes, a RELAY-CANDIDATE that is not an address, a BIRTHDAY
/// that is not 1 or 2.
Result<IntroductionOffer> read_offer(const stun::Message& m);

}  // namespace quiclab::rendezvous
