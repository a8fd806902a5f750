// libFuzzer target over the STUN decoder and the typed attribute getters.
// Invariants checked (a violation traps): a message that decodes re-encodes to
// a message that decodes again with the same header and attributes.
#include <cstddef>
#include <cstdint>

#include "p2p/stun.hpp"

using namespace quiclab;
using namespace quiclab::stun;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ByteView input(data, size);
  for (bool legacy : {false, true}) {
    auto m = decode(input, DecodeOptions{legacy});
    if (!m) continue;
    // Every getter must cope with whatever the attribute holds.
    (void)m->address(attr::kMappedAddress);
    (void)m->xor_address(attr::kXorMappedAddress);
    (void)m->xor_addresses(attr::kHostCandidate);
    (void)m->error();
    (void)m->unknown_attributes();
    (void)m->change_request();
    (void)m->response_port();
    (void)m->u32(attr::kLifetime);
    (void)m->string(attr::kUsername);
    static const std::uint8_t key[] = {'k', 'e', 'y'};
    (void)check_integrity(*m, key);
    (void)check_integrity_sha256(*m, key);
    (void)unknown_comprehension_required(*m, {attr::kUsername});

    Message copy = *m;
    copy.attributes.clear();
    for (const auto& a : m->attributes) {
      if (a.type != attr::kFingerprint) copy.attributes.push_back(a);
    }
    auto wire = encode(copy);
    auto again = decode(wire, DecodeOptions{legacy});
    if (!again) __builtin_trap();
    if (again->method != m->method || again->message_class != m->message_class ||
        again->transaction_id != m->transaction_id) {
      __builtin_trap();
    }
    // Attributes after an integrity attribute may be dropped on re-decode; the
    // ones before must survive unchanged.
    for (std::size_t i = 0; i < copy.attributes.size() && i < again->attributes.size(); ++i) {
      if (again->attributes[i].type != copy.attributes[i].type ||
          again->attributes[i].value != copy.attributes[i].value) {
        __builtin_trap();
      }
      if (copy.attributes[i].type == attr::kMessageIntegrity ||
          copy.attributes[i].type == attr::kMessageIntegritySha256)
        break;
    }
  }
  return 0;
}
