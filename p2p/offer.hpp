// Manual signalling (`quiclab peer --signal stdio`): everything one side's
// connectivity checks and QUIC need from the other, as one JSON line, like an
// SDP offer or answer copied by hand between two terminals.
//
//   {"v":1,"name":"alice","role":"controlling","ufrag":"…","password":"…",
//    "tie_breaker":"0123456789abcdef","fingerprint":"AB:CD:…",
//    "candidates":[{"type":"host","address":"10.0.1.2:5000","priority":2130706431}, …]}
//
// The tie-breaker is a hex string because JSON numbers lose 64-bit integers
// in most readers. Parsing never throws: a missing or malformed field is an
// Error that names it.
#pragma once

#include <string>
#include <vector>

#include "p2p/ice_agent.hpp"
#include "p2p/introduction.hpp"
#include "transport/core/result.hpp"

namespace quiclab::p2p {

struct Offer {
  std::string name;
  bool controlling = false;
  rendezvous::IntroductionOffer ice;  ///< ufrag, password, tie-breaker, certificate SHA-256
  std::vector<ice::Candidate> candidates;
};

/// One line of JSON, no newline.
std::string offer_to_json(const Offer& offer);
/// Errors (domain config, EINVAL): not JSON, wrong version, a field missing
/// or of the wrong type, a bad address or fingerprint, more than 32 candidates,
/// or an offer whose ICE values read_offer() would refuse.
Result<Offer> offer_from_json(std::string_view line);

}  // namespace quiclab::p2p
