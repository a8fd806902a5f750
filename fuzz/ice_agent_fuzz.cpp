// libFuzzer target over the connectivity-check agent's datagram input
// (p2p/ice_agent.*): checks and answers from several sources, kept across
// inputs so pairs, prflx candidates, role conflicts and nomination are
// exercised. The first byte chooses the source and a mode: with the low bit
// set the input is decoded and signed again with the right password (and,
// with bit 1, given the transaction ID of the agent's latest check), so the
// fuzzer also reaches the paths behind MESSAGE-INTEGRITY. Every third agent
// punches birthday-style (open role: four extra bases, which inputs reach in
// turn; probe role: probes to random ports), so probe answers, hits on extra
// bases and 487s on probes are fuzzed too. No input may crash, hang, leak or
// grow the agent past its bounds (pairs, candidates, probes, bases).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "p2p/ice_agent.hpp"

using namespace quiclab;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return *SocketAddress::from_ip(ip, port); }

const ice::Credentials kLocal{"fuzzLocl", "local-password-24-chars!"};
const ice::Credentials kRemote{"fuzzRemt", "remote-password-24-chars"};

std::unique_ptr<ice::Agent> make_agent(Random& r, bool controlling, ice::BirthdayConfig::Role role, Timestamp now) {
  ice::AgentConfig c;
  c.controlling = controlling;
  c.tie_breaker = 0x8000000000000000ull;
  c.local = kLocal;
  c.max_pairs = 16;
  c.birthday.role = role;
  c.birthday.wait = 0;
  c.birthday.sockets = 4;
  c.birthday.probes = 64;
  c.birthday.rate = 1000;
  auto a = std::make_unique<ice::Agent>(c, r, now);
  a->add_local_candidate({ice::CandidateType::host, addr("10.0.0.2", 4000), 0});
  a->add_local_candidate({ice::CandidateType::srflx, addr("203.0.113.9", 4000), 0});
  return a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static SeededRandom random(1);
  static Timestamp now = kNanosPerSecond;
  static std::unique_ptr<ice::Agent> agent;
  static stun::TransactionId last_check{};
  static unsigned inputs = 0;
  static const SocketAddress sources[] = {
      addr("198.51.100.1", 5000), addr("198.51.100.1", 5001), addr("198.51.100.2", 6000), addr("203.0.113.50", 7000),
      addr("192.0.2.77", 9),      addr("2001:db8::7", 7000),  addr("198.51.100.3", 1),    addr("198.51.100.4", 65535)};
  if (!agent || ++inputs % 500 == 0) {
    static const ice::BirthdayConfig::Role roles[] = {ice::BirthdayConfig::Role::none, ice::BirthdayConfig::Role::open,
                                                      ice::BirthdayConfig::Role::probe};
    agent = make_agent(random, inputs % 1000 < 500, roles[(inputs / 500) % 3], now);
    agent->set_remote(kRemote, {{ice::CandidateType::srflx, sources[0], 0}, {ice::CandidateType::host, sources[2], 0}},
                      now);
  }
  if (size == 0) return 0;
  const std::uint8_t sel = data[0];
  Bytes datagram(data + 1, data + size);
  if (sel & 1) {
    if (auto m = stun::decode(datagram)) {
      std::vector<stun::Attribute> kept;
      for (auto& a : m->attributes)
        if (a.type != stun::attr::kMessageIntegrity && a.type != stun::attr::kMessageIntegritySha256 &&
            a.type != stun::attr::kFingerprint)
          kept.push_back(a);
      m->attributes = std::move(kept);
      if (sel & 2) m->transaction_id = last_check;
      const bool request = m->message_class == stun::MessageClass::Request;
      // Requests are signed with our password, answers with the peer's.
      const auto& key = request ? kLocal.password : kRemote.password;
      stun::EncodeOptions eo;
      eo.integrity_key = Bytes(key.begin(), key.end());
      eo.fingerprint = (sel & 4) != 0;
      datagram = stun::encode(*m, eo);
    }
  }
  now += ((sel >> 3) & 3) * 20 * kNanosPerMilli;
  // On an extra base every other input, once there are any (base numbers past them are refused).
  const auto base = static_cast<std::uint16_t>(inputs % 2 ? 0 : inputs % 7);
  agent->handle_datagram(sources[(sel >> 5) & 7], datagram, now, false, base);
  if (auto e = agent->expiry(); e && *e <= now) agent->handle_expiry(now);
  for (auto& d : agent->take_datagrams()) {
    if (auto m = stun::decode(d.data); m && m->message_class == stun::MessageClass::Request)
      last_check = m->transaction_id;
  }
  for (auto& e : agent->take_events()) {
    if (auto* bs = std::get_if<ice::BirthdayStarted>(&e); bs && bs->role == ice::BirthdayConfig::Role::open)
      for (std::uint16_t k = 0; k < 6; ++k)  // two more than the budget: refused
        (void)agent->add_birthday_base(addr("10.0.0.2", static_cast<std::uint16_t>(41000 + k)), now);
  }
  if (agent->birthday_base(5)) __builtin_trap();
  if (agent->stats().birthday_probes > agent->config().birthday.probes) __builtin_trap();
  if (agent->pairs().size() > agent->config().max_pairs) __builtin_trap();
  if (agent->local_candidates().size() > agent->config().max_pairs + 2) __builtin_trap();
  return 0;
}
