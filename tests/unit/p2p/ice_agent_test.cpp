// The connectivity-check agent (p2p/ice_agent.*) on simulated time: the RFC
// 8445 formulas, two agents on an open path, credentials, checks that come
// before the introduction, role conflicts, consent freshness, and every cell
// of the NAT matrix through the NAT simulator (tests/unit/sim/nat_sim.hpp),
// with the STUN server core giving each side its server-reflexive address.
#include "p2p/ice_agent.hpp"

#include <catch2/catch.hpp>
#include <functional>
#include <map>

#include "p2p/nat_behavior.hpp"
#include "p2p/rendezvous_server.hpp"
#include "tests/unit/sim/nat_sim.hpp"
#include "transport/core/datagram_kind.hpp"

using namespace quiclab;
using ice::Agent;
using ice::Candidate;
using ice::CandidateType;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return SocketAddress::from_ip(ip, port).value(); }

Candidate host(const SocketAddress& a) { return Candidate{CandidateType::host, a, 0}; }

// Everything a remote side needs from an agent: what the introduction carries.
struct Offer {
  ice::Credentials credentials;
  std::vector<Candidate> candidates;
};
Offer offer_of(const Agent& a) { return {a.config().local, a.local_candidates()}; }

// One host: an agent, optionally a STUN client for its reflexive address,
// all behind one address on a sim::Network.
struct Host {
  SocketAddress address;
  std::unique_ptr<Agent> agent;
  std::optional<stun::NatBehaviorDiscovery> discovery;
  std::vector<ice::Event> events;
  std::vector<std::string> trace;        // for the determinism check
  std::unique_ptr<SeededRandom> random;  // the agent keeps a reference: a stable address
  std::vector<SocketAddress> birthday;   // extra sockets (birthday punching, open role): base k is [k - 1]
  Host(SocketAddress a, bool controlling, std::uint64_t seed, ice::AgentConfig base = {})
      : address(a), random(std::make_unique<SeededRandom>(seed)) {
    base.controlling = controlling;
    random->fill(reinterpret_cast<std::uint8_t*>(&base.tie_breaker), sizeof base.tie_breaker);
    base.local = ice::random_credentials(*random);
    agent = std::make_unique<Agent>(base, *random, 0);
    agent->add_local_candidate(host(a));
  }
};

const char* name(const ice::Event& e) {
  if (std::holds_alternative<ice::CheckResult>(e)) return "check";
  if (std::holds_alternative<ice::Connected>(e)) return "connected";
  if (std::holds_alternative<ice::Failed>(e)) return "failed";
  if (std::holds_alternative<ice::PathChanged>(e)) return "path_changed";
  if (std::holds_alternative<ice::BirthdayStarted>(e)) return "birthday_started";
  if (std::holds_alternative<ice::BirthdayEnded>(e)) return "birthday_ended";
  return "role";
}

// Drives two hosts (and the STUN server core) over a network until both have
// a verdict or `until` passes. Before that, `introduce` runs once both know
// their reflexive address (or at once, without a STUN server).
struct World {
  sim::Network net;
  std::unique_ptr<rendezvous::Server> stun_server;
  rendezvous::ServerConfig stun_config;
  Host a, b;
  Timestamp now = 0;
  bool introduced = false;
  // TURN relays, one per host when set: a public address whose traffic the
  // host's agent sends and receives with via_relay (the client <-> server leg
  // is instantaneous here; p2p/turn_client is tested on its own).
  std::optional<SocketAddress> relay_a, relay_b;
  Timestamp introduce_b_after = 0;  // B gets its introduction this much later (checks may come first)

  World(std::uint64_t seed, bool with_stun, SocketAddress a_at = addr("10.0.1.2", 5000),
        SocketAddress b_at = addr("10.0.2.2", 5000), bool b_controlling = false)
      : net(seed), a(a_at, true, seed * 2 + 1), b(b_at, b_controlling, seed * 2 + 2) {
    if (with_stun) {
      stun_config.local[rendezvous::kPrimary] = addr("192.0.2.1", 3478);
      stun_server = std::make_unique<rendezvous::Server>(stun_config);
      for (Host* h : {&a, &b}) {
        stun::TransactionConfig tc;
        tc.rto = 100 * kNanosPerMilli;
        h->discovery.emplace(stun_config.local[rendezvous::kPrimary], h->address, false, tc);
        h->discovery->start(0);
      }
    }
  }

  Host& at(const SocketAddress& x) { return x.ip() == a.address.ip() ? a : b; }
  static std::uint16_t base_of(const Host& h, const SocketAddress& x) {
    for (std::size_t i = 0; i < h.birthday.size(); ++i)
      if (h.birthday[i] == x) return static_cast<std::uint16_t>(i + 1);
    return 0;
  }
  const std::optional<SocketAddress>& relay_of(const Host& h) const { return &h == &a ? relay_a : relay_b; }

  void flush(Host& h) {
    if (h.discovery)
      for (auto& d : h.discovery->take_datagrams()) net.send(h.address, d.to, d.data, now);
    for (auto& e : h.agent->take_events()) {
      // Birthday punching, open role: the sockets the agent asks for, on ports 20000 and up.
      if (auto* bs = std::get_if<ice::BirthdayStarted>(&e); bs && bs->role == ice::BirthdayConfig::Role::open) {
        for (std::size_t i = 0; i < h.agent->config().birthday.sockets; ++i) {
          h.birthday.push_back(SocketAddress::from_ip(h.address.ip(), static_cast<std::uint16_t>(20000 + i)).value());
          CHECK(h.agent->add_birthday_base(h.birthday.back(), now) == h.birthday.size());
        }
      }
      h.trace.push_back(std::to_string(now) + " " + name(e));
      h.events.push_back(std::move(e));
    }
    for (auto& d : h.agent->take_datagrams()) {
      REQUIRE((!d.via_relay || relay_of(h)));
      REQUIRE(d.base <= h.birthday.size());
      net.send(d.via_relay ? *relay_of(h) : d.base ? h.birthday[d.base - 1] : h.address, d.to, d.data, now);
    }
  }

  void maybe_introduce() {
    if (introduced) return;
    for (Host* h : {&a, &b})
      if (h->discovery && !h->discovery->done()) return;
    introduced = true;
    for (Host* h : {&a, &b}) {
      if (h->discovery && h->discovery->result().error.empty() && h->discovery->result().behind_nat)
        h->agent->add_local_candidate(Candidate{CandidateType::srflx, h->discovery->result().mapped, 0});
      if (relay_of(*h)) h->agent->add_local_candidate(Candidate{CandidateType::relay, *relay_of(*h), 0});
    }
    a.agent->set_remote(offer_of(*b.agent).credentials, offer_of(*b.agent).candidates, now);
    if (introduce_b_after == 0) b.agent->set_remote(offer_of(*a.agent).credentials, offer_of(*a.agent).candidates, now);
  }

  bool done() const { return a.agent->state() != Agent::State::checking && b.agent->state() != Agent::State::checking; }

  void run(Timestamp until, bool stop_when_done = true) {
    maybe_introduce();
    flush(a);
    flush(b);
    const Timestamp b_intro_at = introduce_b_after;
    bool b_introduced = introduce_b_after == 0;
    while (now <= until && !(stop_when_done && done())) {
      // The next event: a delivery, a core's deadline, B's late introduction.
      std::optional<Timestamp> next = net.next_delivery();
      auto take = [&](std::optional<Timestamp> t) {
        if (t && (!next || *t < *next)) next = t;
      };
      for (Host* h : {&a, &b}) {
        take(h->agent->expiry());
        if (h->discovery && !h->discovery->done()) take(h->discovery->expiry());
      }
      if (!b_introduced && introduced) take(b_intro_at);
      if (!next) break;
      now = std::max(now, *next);
      if (now > until) break;
      for (auto& d : net.take_due(now)) {
        if (relay_a && d.to == *relay_a) {
          a.agent->handle_datagram(d.from, d.data, now, true);
          continue;
        }
        if (relay_b && d.to == *relay_b) {
          b.agent->handle_datagram(d.from, d.data, now, true);
          continue;
        }
        if (stun_server && d.to == stun_config.local[rendezvous::kPrimary]) {
          std::vector<rendezvous::OutgoingDatagram> out;
          stun_server->handle_datagram(rendezvous::kPrimary, d.from, d.data, now, out);
          for (auto& o : out) net.send(stun_config.local[rendezvous::kPrimary], o.to, o.data, now);
          continue;
        }
        Host& h = at(d.to);
        // The demultiplexer's rule: STUN from the STUN server to discovery,
        // other STUN to the checks.
        if (stun_server && d.from == stun_config.local[rendezvous::kPrimary]) {
          if (h.discovery) h.discovery->handle_datagram(d.from, d.data, now);
        } else if (is_stun_message(d.data)) {
          h.agent->handle_datagram(d.from, d.data, now, false, base_of(h, d.to));
        }
      }
      for (Host* h : {&a, &b}) {
        if (auto e = h->agent->expiry(); e && *e <= now) h->agent->handle_expiry(now);
        if (h->discovery && !h->discovery->done())
          if (auto e = h->discovery->expiry(); e && *e <= now) h->discovery->handle_expiry(now);
      }
      maybe_introduce();
      if (!b_introduced && introduced && now >= b_intro_at) {
        b_introduced = true;
        b.agent->set_remote(offer_of(*a.agent).credentials, offer_of(*a.agent).candidates, now);
      }
      flush(a);
      flush(b);
    }
  }
};

template <class T>
const T* find_event(const Host& h) {
  for (const auto& e : h.events)
    if (auto* p = std::get_if<T>(&e)) return p;
  return nullptr;
}

}  // namespace

TEST_CASE("ice: priorities follow RFC 8445's formulas", "[p2p][ice]") {
  CHECK(ice::candidate_priority(CandidateType::host, 65535) == (126u << 24 | 65535u << 8 | 255u));
  CHECK(ice::candidate_priority(CandidateType::srflx, 65535) == (100u << 24 | 65535u << 8 | 255u));
  CHECK(ice::candidate_priority(CandidateType::prflx, 1) == (110u << 24 | 1u << 8 | 255u));
  CHECK(ice::candidate_priority(CandidateType::relay, 0) == 255u);
  CHECK(ice::candidate_priority(CandidateType::host) > ice::candidate_priority(CandidateType::prflx));
  CHECK(ice::candidate_priority(CandidateType::prflx) > ice::candidate_priority(CandidateType::srflx));
  // 2^32 min + 2 max + (G > D): symmetric apart from the last bit.
  CHECK(ice::pair_priority(10, 20) == (std::uint64_t{10} << 32) + 40);
  CHECK(ice::pair_priority(20, 10) == (std::uint64_t{10} << 32) + 41);
}

TEST_CASE("ice: credentials are fresh ice-chars of the RFC's minimum lengths or more", "[p2p][ice]") {
  SeededRandom r(7);
  auto c1 = ice::random_credentials(r), c2 = ice::random_credentials(r);
  CHECK(c1.ufrag.size() >= 4);
  CHECK(c1.password.size() >= 22);
  CHECK(c1.ufrag != c2.ufrag);
  CHECK(c1.password != c2.password);
  for (char ch : c1.ufrag + c1.password)
    CHECK((std::isalnum(static_cast<unsigned char>(ch)) || ch == '+' || ch == '/'));
}

TEST_CASE("ice: two agents on an open path connect over host candidates and keep consent", "[p2p][ice]") {
  World w(1, false, addr("198.51.100.1", 5000), addr("198.51.100.2", 5000));  // public hosts, no NAT
  w.run(2 * kNanosPerSecond);
  REQUIRE(w.a.agent->state() == Agent::State::connected);
  REQUIRE(w.b.agent->state() == Agent::State::connected);
  auto* ca = find_event<ice::Connected>(w.a);
  auto* cb = find_event<ice::Connected>(w.b);
  REQUIRE(ca);
  REQUIRE(cb);
  CHECK(ca->remote.address == w.b.address);
  CHECK(cb->remote.address == w.a.address);
  CHECK(ca->local.type == CandidateType::host);
  CHECK(ca->remote.type == CandidateType::host);
  // Two one-way delays for a check, a few for nomination; Ta pacing on top.
  CHECK(ca->since_start < 200 * kNanosPerMilli);
  REQUIRE(ca->rtt);
  CHECK(*ca->rtt == 20 * kNanosPerMilli);
  CHECK(w.a.agent->selected()->nominated);
  // Consent: a minute later both are still connected, having checked ~12 times.
  w.run(62 * kNanosPerSecond, false);
  CHECK(w.a.agent->state() == Agent::State::connected);
  CHECK(w.b.agent->state() == Agent::State::connected);
  CHECK(w.a.agent->stats().consent_checks >= 10);
  CHECK(w.a.agent->stats().consent_checks <= 16);
  // Then the path goes dark: consent is lost 30 s after the last answer.
  w.net.set_loss(1.0);
  const Timestamp dark = w.now;
  w.run(dark + 40 * kNanosPerSecond, false);
  REQUIRE(w.a.agent->state() == Agent::State::failed);
  auto* f = find_event<ice::Failed>(w.a);
  REQUIRE(f);
  CHECK_THAT(f->reason, Catch::Contains("consent lost"));
}

TEST_CASE("ice: checks with wrong credentials are ignored and counted, not answered", "[p2p][ice]") {
  SeededRandom r(5);
  ice::AgentConfig c;
  c.local = {"ufragA", "passwordpasswordpassword"};
  Agent a(c, r, 0);
  a.add_local_candidate(host(addr("198.51.100.1", 5000)));
  auto forged = [&](const std::string& user, const std::string& key) {
    stun::Message m;
    m.transaction_id = stun::random_transaction_id();
    m.add_string(stun::attr::kUsername, user);
    m.add_u64(stun::attr::kIceControlling, 1);
    stun::EncodeOptions eo;
    eo.integrity_key = Bytes(key.begin(), key.end());
    return stun::encode(m, eo);
  };
  const auto from = addr("198.51.100.9", 4444);
  a.handle_datagram(from, forged("ufragA:x", "wrong password"), 0);
  a.handle_datagram(from, forged("other:x", "passwordpasswordpassword"), 0);
  a.handle_datagram(from, as_bytes("not stun at all, just bytes of junk"), 0);
  CHECK(a.stats().bad_credentials == 2);
  CHECK(a.stats().bad_messages == 1);
  CHECK(a.take_datagrams().empty());
  CHECK(a.pairs().empty());  // no peer-reflexive candidate from a forged check
  // The right credentials are answered, and the source becomes a prflx pair.
  a.handle_datagram(from, forged("ufragA:x", "passwordpasswordpassword"), 0);
  auto out = a.take_datagrams();
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == from);
  auto answer = stun::decode(out[0].data);
  REQUIRE(answer);
  CHECK(answer->message_class == stun::MessageClass::SuccessResponse);
  CHECK(stun::check_integrity(*answer, as_bytes("passwordpasswordpassword")) == stun::IntegrityCheck::Ok);
  REQUIRE(a.pairs().size() == 1);
  CHECK(a.pairs()[0].remote.type == CandidateType::prflx);
}

TEST_CASE("ice: a check that arrives before the introduction is answered and paired when it comes", "[p2p][ice]") {
  World w(2, false, addr("198.51.100.1", 5000), addr("198.51.100.2", 5000));
  w.introduce_b_after = 300 * kNanosPerMilli;
  w.run(3 * kNanosPerSecond);
  REQUIRE(w.a.agent->state() == Agent::State::connected);
  REQUIRE(w.b.agent->state() == Agent::State::connected);
  // B answered A's checks before it knew A: A's address was peer-reflexive to B first.
  CHECK(w.b.agent->stats().prflx_remote == 1);
  auto* cb = find_event<ice::Connected>(w.b);
  REQUIRE(cb);
  CHECK(cb->since_start >= 300 * kNanosPerMilli);
  CHECK(cb->since_start < 500 * kNanosPerMilli);  // right after its introduction, not after a retransmission
}

TEST_CASE("ice: two controlling agents repair the conflict with the tie-breaker and connect", "[p2p][ice]") {
  World w(3, false, addr("198.51.100.1", 5000), addr("198.51.100.2", 5000), /*b_controlling=*/true);
  const bool a_wins = w.a.agent->config().tie_breaker >= w.b.agent->config().tie_breaker;
  w.run(3 * kNanosPerSecond);
  REQUIRE(w.a.agent->state() == Agent::State::connected);
  REQUIRE(w.b.agent->state() == Agent::State::connected);
  // The larger tie-breaker keeps the controlling role (RFC 8445 7.3.1.1).
  CHECK(w.a.agent->controlling() == a_wins);
  CHECK(w.b.agent->controlling() == !a_wins);
  CHECK(w.a.agent->stats().role_conflicts + w.b.agent->stats().role_conflicts >= 1);
  CHECK(w.a.agent->selected()->remote.address == w.b.address);
}

namespace {

struct Cell {
  Agent::State a = Agent::State::checking, b = Agent::State::checking;
  bool prflx = false;
  std::vector<std::string> trace_a, trace_b;
  std::string reason;
  Timestamp connected_at = 0;
};

Cell run_cell(sim::NatConfig na, sim::NatConfig nb, bool same_nat, std::uint64_t seed, double loss = 0) {
  World w(seed, true, addr("10.0.1.2", 5000), addr(same_nat ? "10.0.1.3" : "10.0.2.2", 5000));
  w.net.set_loss(loss);
  na.public_ip = "203.0.113.1";
  nb.public_ip = "203.0.113.2";
  w.net.add_nat("10.0.1.", na);
  if (!same_nat) w.net.add_nat("10.0.2.", nb);
  w.run(12 * kNanosPerSecond);
  Cell c;
  c.a = w.a.agent->state();
  c.b = w.b.agent->state();
  for (Host* h : {&w.a, &w.b}) {
    if (auto* e = find_event<ice::Connected>(*h)) {
      c.prflx = c.prflx || e->remote.type == CandidateType::prflx || e->local.type == CandidateType::prflx;
      c.connected_at = std::max(c.connected_at, e->since_start);
    }
    if (auto* f = find_event<ice::Failed>(*h)) c.reason = f->reason;
  }
  c.trace_a = w.a.trace;
  c.trace_b = w.b.trace;
  return c;
}

}  // namespace

TEST_CASE("ice: every cell of the NAT matrix gives the expected outcome", "[p2p][ice][nat]") {
  const std::pair<const char*, sim::NatConfig> types[] = {
      {"full-cone", sim::NatConfig::full_cone()},
      {"address-restricted", sim::NatConfig::address_restricted()},
      {"port-restricted", sim::NatConfig::port_restricted()},
      {"symmetric", sim::NatConfig::symmetric()},
  };
  enum E { D, P, N };  // direct, direct with a peer-reflexive candidate, no direct path
  const E expected[4][4] = {{D, D, D, P}, {D, D, D, P}, {D, D, D, N}, {P, P, N, N}};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      INFO(types[i].first << " <-> " << types[j].first);
      auto c = run_cell(types[i].second, types[j].second, false, 11);
      if (expected[i][j] == N) {
        CHECK(c.a == Agent::State::failed);
        CHECK(c.b == Agent::State::failed);
        CHECK_THAT(c.reason, Catch::Contains("no direct path") && Catch::Contains("relay"));
      } else {
        CHECK(c.a == Agent::State::connected);
        CHECK(c.b == Agent::State::connected);
        CHECK(c.prflx == (expected[i][j] == P));
        CHECK(c.connected_at < 2 * kNanosPerSecond);
      }
    }
  }
  // Both behind one NAT without hairpin: host candidates meet on the LAN.
  auto same = run_cell(sim::NatConfig::symmetric(), sim::NatConfig::symmetric(), true, 11);
  CHECK(same.a == Agent::State::connected);
  CHECK(same.b == Agent::State::connected);
}

TEST_CASE("ice: the same seed gives the same event sequence, 5% loss included", "[p2p][ice][nat]") {
  auto one = run_cell(sim::NatConfig::port_restricted(), sim::NatConfig::address_restricted(), false, 21, 0.05);
  auto two = run_cell(sim::NatConfig::port_restricted(), sim::NatConfig::address_restricted(), false, 21, 0.05);
  CHECK(one.trace_a == two.trace_a);
  CHECK(one.trace_b == two.trace_b);
  CHECK(one.a == Agent::State::connected);
  CHECK(one.b == Agent::State::connected);
}

namespace {

struct RelayCell {
  Agent::State a = Agent::State::checking, b = Agent::State::checking;
  const ice::Connected* connected_a = nullptr;
  const ice::Connected* connected_b = nullptr;
  const ice::PathChanged* changed_a = nullptr;
  const ice::PathChanged* changed_b = nullptr;
  std::unique_ptr<World> w;
};

// A cell with a relay on each side (198.51.100.10 and .11, like coturn's relayed ports).
RelayCell run_relay_cell(sim::NatConfig na, sim::NatConfig nb, std::uint64_t seed, Timestamp until,
                         ice::AgentConfig base = {}, sim::Network::Blocker blocker = nullptr) {
  RelayCell c;
  c.w = std::make_unique<World>(seed, true);
  auto& w = *c.w;
  for (Host* h : {&w.a, &w.b}) {
    auto config = base;
    config.controlling = h->agent->controlling();
    config.tie_breaker = h->agent->config().tie_breaker;
    config.local = h->agent->config().local;
    h->agent = std::make_unique<Agent>(config, *h->random, 0);
    h->agent->add_local_candidate(host(h->address));
  }
  na.public_ip = "203.0.113.1";
  nb.public_ip = "203.0.113.2";
  w.net.add_nat("10.0.1.", na);
  w.net.add_nat("10.0.2.", nb);
  if (blocker) w.net.set_blocker(std::move(blocker));
  w.relay_a = addr("198.51.100.10", 49152);
  w.relay_b = addr("198.51.100.11", 49152);
  w.run(until, false);
  c.a = w.a.agent->state();
  c.b = w.b.agent->state();
  c.connected_a = find_event<ice::Connected>(w.a);
  c.connected_b = find_event<ice::Connected>(w.b);
  c.changed_a = find_event<ice::PathChanged>(w.a);
  c.changed_b = find_event<ice::PathChanged>(w.b);
  return c;
}

bool relayed_end(const Candidate& local, const Candidate& remote) {
  return local.type == CandidateType::relay || remote.type == CandidateType::relay;
}

}  // namespace

TEST_CASE("ice: with relays, symmetric <-> symmetric connects over the relay after the 2 s wait",
          "[p2p][ice][nat][relay]") {
  auto c = run_relay_cell(sim::NatConfig::symmetric(), sim::NatConfig::symmetric(), 11, 12 * kNanosPerSecond);
  REQUIRE(c.a == Agent::State::connected);
  REQUIRE(c.b == Agent::State::connected);
  REQUIRE(c.connected_a);
  REQUIRE(c.connected_b);
  // The controlling side picks its own relay (a local address of its own for QUIC).
  CHECK(c.connected_a->local.type == CandidateType::relay);
  CHECK(c.connected_a->local.address == *c.w->relay_a);
  CHECK(c.connected_b->remote.address == *c.w->relay_a);
  CHECK(c.w->a.agent->selected()->relayed);
  CHECK(c.connected_a->since_start >= 2 * kNanosPerSecond);
  CHECK(c.connected_a->since_start < 3 * kNanosPerSecond);
  CHECK(!c.changed_a);  // no direct path ever works here
  CHECK(!c.changed_b);
}

TEST_CASE("ice: with relays, the direct cells stay direct and are not slowed by the relay", "[p2p][ice][nat][relay]") {
  const std::pair<const char*, sim::NatConfig> cells[][2] = {
      {{"full-cone", sim::NatConfig::full_cone()}, {"symmetric", sim::NatConfig::symmetric()}},
      {{"port-restricted", sim::NatConfig::port_restricted()}, {"port-restricted", sim::NatConfig::port_restricted()}},
      {{"address-restricted", sim::NatConfig::address_restricted()}, {"full-cone", sim::NatConfig::full_cone()}},
  };
  for (const auto& cell : cells) {
    INFO(cell[0].first << " <-> " << cell[1].first);
    auto c = run_relay_cell(cell[0].second, cell[1].second, 11, 12 * kNanosPerSecond);
    REQUIRE(c.connected_a);
    REQUIRE(c.connected_b);
    CHECK(!relayed_end(c.connected_a->local, c.connected_a->remote));
    CHECK(!relayed_end(c.connected_b->local, c.connected_b->remote));
    CHECK(c.connected_a->since_start < 2 * kNanosPerSecond);
  }
}

TEST_CASE("ice: connected over the relay, a direct path that opens later takes over on both sides",
          "[p2p][ice][nat][relay]") {
  // The internet drops everything between the two NATs' public addresses for the first 5 s.
  auto blocker = [](const SocketAddress& from, const SocketAddress& to, Timestamp now) {
    const bool between_nats = from.ip().rfind("203.0.113.", 0) == 0 && to.ip().rfind("203.0.113.", 0) == 0;
    return between_nats && now < 5 * kNanosPerSecond;
  };
  auto c = run_relay_cell(sim::NatConfig::port_restricted(), sim::NatConfig::port_restricted(), 11,
                          30 * kNanosPerSecond, {}, blocker);
  REQUIRE(c.connected_a);
  REQUIRE(c.connected_b);
  CHECK(relayed_end(c.connected_a->local, c.connected_a->remote));
  REQUIRE(c.changed_a);
  REQUIRE(c.changed_b);
  CHECK(!relayed_end(c.changed_a->local, c.changed_a->remote));
  CHECK(!relayed_end(c.changed_b->local, c.changed_b->remote));
  CHECK(c.changed_a->since_start >= 5 * kNanosPerSecond);
  CHECK(!c.w->a.agent->selected()->relayed);
  CHECK(!c.w->b.agent->selected()->relayed);
  CHECK(c.a == Agent::State::connected);
  CHECK(c.b == Agent::State::connected);
}

TEST_CASE("ice: relay_only uses the relay at once, without a relay the symmetric cell still fails clearly",
          "[p2p][ice][nat][relay]") {
  ice::AgentConfig only;
  only.relay_only = true;
  auto c = run_relay_cell(sim::NatConfig::full_cone(), sim::NatConfig::full_cone(), 11, 12 * kNanosPerSecond, only);
  REQUIRE(c.connected_a);
  REQUIRE(c.connected_b);
  CHECK(relayed_end(c.connected_a->local, c.connected_a->remote));
  CHECK(c.connected_a->since_start < kNanosPerSecond);  // no 2 s wait
  CHECK(!c.changed_a);
  for (const auto& p : c.w->a.agent->pairs()) CHECK(is_relayed(p));
}

TEST_CASE("ice: relayed runs are deterministic for a seed", "[p2p][ice][nat][relay]") {
  auto one = run_relay_cell(sim::NatConfig::symmetric(), sim::NatConfig::port_restricted(), 5, 12 * kNanosPerSecond);
  auto two = run_relay_cell(sim::NatConfig::symmetric(), sim::NatConfig::port_restricted(), 5, 12 * kNanosPerSecond);
  CHECK(one.w->a.trace == two.w->a.trace);
  CHECK(one.w->b.trace == two.w->b.trace);
  CHECK(one.a == Agent::State::connected);
}

// ---- birthday-paradox punching ----

namespace {

struct BirthdayCell {
  std::unique_ptr<World> w;
  const ice::Connected* connected_a = nullptr;
  const ice::Connected* connected_b = nullptr;
  const ice::PathChanged* changed_b = nullptr;
  const ice::BirthdayEnded* ended_a = nullptr;
  const ice::BirthdayEnded* ended_b = nullptr;
  std::string reason;  // a Failed event's, if any
};

// A behind a port-restricted NAT (endpoint-independent mapping: the prober),
// B behind a symmetric one with random ports (the opener). b_controls: B is
// the controlling side (each role then meets the other's nomination path).
BirthdayCell run_birthday_cell(std::uint64_t seed, bool b_controls = false, ice::BirthdayConfig birthday = {},
                               bool relays = false, sim::NatConfig na = sim::NatConfig::port_restricted(),
                               sim::NatConfig nb = sim::NatConfig::symmetric()) {
  BirthdayCell c;
  c.w = std::make_unique<World>(seed, true, addr("10.0.1.2", 5000), addr("10.0.2.2", 5000), b_controls);
  auto& w = *c.w;
  for (Host* h : {&w.a, &w.b}) {
    ice::AgentConfig config;
    config.controlling = h->agent->controlling();
    config.tie_breaker = h->agent->config().tie_breaker;
    config.local = h->agent->config().local;
    config.birthday = birthday;
    config.birthday.role = h == &w.a ? ice::BirthdayConfig::Role::probe : ice::BirthdayConfig::Role::open;
    h->agent = std::make_unique<Agent>(config, *h->random, 0);
    h->agent->add_local_candidate(host(h->address));
  }
  na.public_ip = "203.0.113.1";
  nb.public_ip = "203.0.113.2";
  nb.random_ports = true;
  nb.port_seed = seed * 7 + 3;
  w.net.add_nat("10.0.1.", na);
  w.net.add_nat("10.0.2.", nb);
  if (relays) {
    w.relay_a = addr("198.51.100.10", 49152);
    w.relay_b = addr("198.51.100.11", 49152);
  }
  w.run(30 * kNanosPerSecond, !relays);
  c.connected_a = find_event<ice::Connected>(w.a);
  c.connected_b = find_event<ice::Connected>(w.b);
  c.changed_b = find_event<ice::PathChanged>(w.b);
  c.ended_a = find_event<ice::BirthdayEnded>(w.a);
  c.ended_b = find_event<ice::BirthdayEnded>(w.b);
  for (Host* h : {&w.a, &w.b})
    if (auto* f = find_event<ice::Failed>(*h)) c.reason = f->reason;
  return c;
}

}  // namespace

TEST_CASE("ice: birthday punching opens port-restricted <-> symmetric in most trials, within its budget",
          "[p2p][ice][nat][birthday]") {
  // (1 - 256/64512)^1024 = 1.7 %: about one trial in 60 misses. 40 seeded
  // trials, both sides controlling in turn.
  int hits = 0, trials = 0;
  std::uint64_t probes_to_hit = 0;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    INFO("seed " << seed);
    auto c = run_birthday_cell(seed, seed % 2 == 0);
    ++trials;
    const auto& sa = c.w->a.agent->stats();
    const auto& sb = c.w->b.agent->stats();
    // The budget holds whatever happens: 256 sockets, one first check each, at most 1024 probes.
    CHECK(c.w->b.birthday.size() == 256);
    CHECK(sb.birthday_sprays == 256);
    CHECK(sa.birthday_probes <= 1024);
    CHECK(sa.birthday_sprays == 0);
    CHECK(sb.birthday_probes == 0);
    REQUIRE(c.ended_a);
    if (!c.connected_a) {
      CHECK(!c.ended_a->hit);
      CHECK(sa.birthday_probes == 1024);
      CHECK_THAT(c.reason, Catch::Contains("birthday punching found no mapping"));
      continue;
    }
    REQUIRE(c.connected_b);
    ++hits;
    probes_to_hit += sa.birthday_probes;
    CHECK(c.ended_a->hit);
    // B's end of the pair is one of its birthday sockets (its local candidate
    // the mapping the probe found); A's is its one socket.
    const ice::Pair* sel_b = c.w->b.agent->selected();
    REQUIRE(sel_b);
    CHECK(sel_b->base > 0);
    REQUIRE(c.w->b.agent->birthday_base(sel_b->base));
    CHECK(c.w->b.agent->birthday_base(sel_b->base)->address == c.w->b.birthday[sel_b->base - 1]);
    CHECK(sel_b->local.address.ip() == "203.0.113.2");
    CHECK(c.w->a.agent->selected()->base == 0);
    CHECK(c.connected_b->remote.address.ip() == "203.0.113.1");
    // Birthday starts 1 s after the first check; 100 probes/s after that.
    CHECK(c.connected_a->since_start > kNanosPerSecond);
    CHECK(c.connected_a->since_start < 1200 * kNanosPerMilli + (sa.birthday_probes + 5) * 10 * kNanosPerMilli);
  }
  INFO(hits << "/" << trials << " trials, " << (hits ? probes_to_hit / hits : 0) << " probes to a hit on average");
  CHECK(hits >= 36);
  // About 64512 / 256 = 252 probes expected.
  REQUIRE(hits > 0);
  CHECK(probes_to_hit / hits > 100);
  CHECK(probes_to_hit / hits < 500);
}

TEST_CASE("ice: a small birthday budget fails with a reason that says so", "[p2p][ice][nat][birthday]") {
  ice::BirthdayConfig small;
  small.sockets = 4;
  small.probes = 16;
  auto c = run_birthday_cell(3, false, small);
  CHECK(!c.connected_a);
  CHECK(c.w->a.agent->stats().birthday_probes == 16);
  CHECK(c.w->b.agent->stats().birthday_sprays == 4);
  CHECK_THAT(c.reason, Catch::Contains("no direct path") && Catch::Contains("birthday punching found no mapping"));
  REQUIRE(c.ended_a);
  CHECK(!c.ended_a->hit);
  CHECK_THAT(c.ended_a->detail, Catch::Contains("16 probes"));
}

TEST_CASE("ice: birthday punching does not start where checks alone connect", "[p2p][ice][nat][birthday]") {
  // Full cone <-> symmetric connects with a peer-reflexive candidate in one round trip or two.
  auto c = run_birthday_cell(5, false, {}, false, sim::NatConfig::full_cone());
  REQUIRE(c.connected_a);
  REQUIRE(c.connected_b);
  CHECK(c.connected_a->since_start < kNanosPerSecond);
  CHECK(!find_event<ice::BirthdayStarted>(c.w->a));
  CHECK(!find_event<ice::BirthdayStarted>(c.w->b));
  CHECK(c.w->b.birthday.empty());
  CHECK(c.w->a.agent->stats().birthday_probes == 0);
}

TEST_CASE("ice: with relays, port-restricted <-> symmetric starts on the relay and birthday moves it direct",
          "[p2p][ice][nat][birthday][relay]") {
  // A probe that lands within the 2 s relay wait connects directly; later
  // ones move the relayed connection.
  int moved = 0, direct = 0;
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    INFO("seed " << seed);
    auto c = run_birthday_cell(seed, seed % 2 == 1, {}, true);
    REQUIRE(c.connected_a);
    REQUIRE(c.connected_b);
    if (!relayed_end(c.connected_a->local, c.connected_a->remote)) {
      ++direct;
      CHECK(c.connected_a->since_start < 2 * kNanosPerSecond);
      CHECK(c.w->b.agent->selected()->base > 0);
      CHECK(!c.changed_b);
      continue;
    }
    CHECK(c.connected_a->since_start >= 2 * kNanosPerSecond);  // the relay wait, then the relay
    if (!c.changed_b) continue;
    ++moved;
    CHECK(!relayed_end(c.changed_b->local, c.changed_b->remote));
    CHECK(c.w->b.agent->selected()->base > 0);
    CHECK(!c.w->a.agent->selected()->relayed);
    CHECK(c.w->a.agent->state() == Agent::State::connected);
  }
  INFO(direct << " direct at once, " << moved << " moved from the relay");
  CHECK(direct > 0);
  CHECK(moved > 0);
  CHECK(direct + moved >= 9);
}

TEST_CASE("ice: birthday runs are deterministic for a seed", "[p2p][ice][nat][birthday]") {
  auto one = run_birthday_cell(9);
  auto two = run_birthday_cell(9);
  CHECK(one.w->a.trace == two.w->a.trace);
  CHECK(one.w->b.trace == two.w->b.trace);
  CHECK(one.w->a.agent->stats().birthday_probes == two.w->a.agent->stats().birthday_probes);
}
