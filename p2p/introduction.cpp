#include "p2p/introduction.hpp"

#include <cerrno>

namespace quiclab::rendezvous {

namespace {
bool ice_chars(const std::string& s) {
  for (unsigned char c : s)
    if (!(std::isalnum(c) || c == '+' || c == '/')) return false;
  return true;
}
Error bad(const std::string& what) { return make_error(ErrorDomain::stun, EINVAL, "introduction offer: " + what); }
}  // namespace

void add_offer(stun::Message& m, const IntroductionOffer& offer) {
  m.add_string(stun::attr::kIceUfrag, offer.ufrag);
  m.add_string(stun::attr::kIcePassword, offer.password);
  m.add_u64(stun::attr::kTieBreaker, offer.tie_breaker);
  m.add(stun::attr::kCertFingerprint, offer.fingerprint);
  if (offer.relay) m.add_xor_address(stun::attr::kRelayCandidate, *offer.relay);
  if (offer.birthday) m.add_u32(stun::attr::kBirthday, static_cast<std::uint32_t>(*offer.birthday));
}

Result<IntroductionOffer> read_offer(const stun::Message& m) {
  IntroductionOffer o;
  auto ufrag = m.string(stun::attr::kIceUfrag);
  auto password = m.string(stun::attr::kIcePassword);
  if (!ufrag || !password) return bad("no ICE-UFRAG or ICE-PASSWORD");
  if (ufrag->size() < 4 || ufrag->size() > 64 || !ice_chars(*ufrag)) return bad("ICE-UFRAG is not 4..64 ice-chars");
  if (password->size() < 22 || password->size() > 128 || !ice_chars(*password))
    return bad("ICE-PASSWORD is not 22..128 ice-chars");
  auto tb = m.u64(stun::attr::kTieBreaker);
  if (!tb) return tb.error();
  if (!*tb) return bad("no TIE-BREAKER");
  const auto* fp = m.find(stun::attr::kCertFingerprint);
  if (!fp) return bad("no CERT-FINGERPRINT");
  if (fp->value.size() != 32) return bad("CERT-FINGERPRINT is not 32 bytes (SHA-256)");
  o.ufrag = std::move(*ufrag);
  o.password = std::move(*password);
  o.tie_breaker = **tb;
  o.fingerprint = fp->value;
  auto relay = m.xor_address(stun::attr::kRelayCandidate);
  if (!relay) return bad("RELAY-CANDIDATE: " + relay.error().message);
  if (*relay) o.relay = **relay;
  auto birthday = m.u32(stun::attr::kBirthday);
  if (!birthday) return bad("BIRTHDAY: " + birthday.error().message);
  if (*birthday) {
    if (**birthday != 1 && **birthday != 2) return bad("BIRTHDAY: unknown mapping " + std::to_string(**birthday));
    o.birthday = static_cast<Mapping>(**birthday);
  }
  return o;
}

}  // namespace quiclab::rendezvous
