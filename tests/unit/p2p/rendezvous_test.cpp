// Rendezvous server and client cores driven together in memory on simulated time.
#include <catch2/catch.hpp>

#include "p2p/rendezvous_client.hpp"
#include "p2p/rendezvous_server.hpp"
#include "tests/unit/sim/nat_sim.hpp"

using namespace quiclab;
using namespace quiclab::rendezvous;
using namespace quiclab::stun;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return SocketAddress::from_ip(ip, port).value(); }

struct Harness {
  ManualClock clock{1'000'000'000};
  Server server;
  Harness() : server(config()) {}
  static ServerConfig config() {
    ServerConfig c;
    c.local[kPrimary] = addr("192.0.2.1", 3478);
    c.local[kAltPort] = addr("192.0.2.1", 3479);
    c.local[kAltIp] = addr("192.0.2.2", 3478);
    c.local[kAltBoth] = addr("192.0.2.2", 3479);
    c.max_registrations_per_source = 3;
    return c;
  }
  // Delivers everything the client wants to send, and routes the server's
  // output back to the clients by destination address.
  std::vector<OutgoingDatagram> exchange(Client& c, const SocketAddress& from) {
    std::vector<OutgoingDatagram> out;
    for (auto& d : c.take_datagrams()) server.handle_datagram(kPrimary, from, d, clock.now(), out);
    return out;
  }
  std::vector<OutgoingDatagram> raw(const SocketAddress& from, const Bytes& d, int socket = kPrimary) {
    std::vector<OutgoingDatagram> out;
    server.handle_datagram(socket, from, d, clock.now(), out);
    return out;
  }
  // Registers c from `at` and hands it the answer (its events stay for the test).
  void join(Client& c, const SocketAddress& at) {
    c.register_name(clock.now());
    deliver(exchange(c, at), c, at);
  }
  void deliver(const std::vector<OutgoingDatagram>& out, Client& c, const SocketAddress& at) {
    for (const auto& d : out) {
      if (d.to == at) c.handle_datagram(d.data, clock.now());
    }
  }
};

ClientConfig client_config(std::string name, std::uint8_t key_byte) {
  ClientConfig c;
  c.name = std::move(name);
  c.key = Bytes(32, key_byte);
  c.host_candidates = {addr("10.0.0.5", 5000)};
  c.certificate_fingerprint = Bytes(32, static_cast<std::uint8_t>(0xA0 + key_byte));
  return c;
}

Event only_event(Client& c) {
  auto events = c.take_events();
  REQUIRE(events.size() == 1);
  return events.front();
}

template <class T>
bool is(const Event& e) {
  return std::holds_alternative<T>(e);
}

// The one event c has, which must be a T.
template <class T>
T only(Client& c) {
  auto e = only_event(c);
  INFO("event: " << event_name(e));
  REQUIRE(is<T>(e));
  return std::get<T>(e);
}

}  // namespace

TEST_CASE("two registered peers are introduced and get each other's candidates", "[p2p][rendezvous]") {
  Harness h;
  auto a_addr = addr("198.51.100.10", 40000);
  auto b_addr = addr("203.0.113.20", 50000);
  Client a(client_config("alice", 1));
  Client b(client_config("bob", 2));
  h.join(a, a_addr);
  auto ea = only<Registered>(a);
  CHECK(ea.mapped == a_addr);
  CHECK(ea.lifetime_s == 300);
  h.join(b, b_addr);
  CHECK(is<Registered>(only_event(b)));
  CHECK(h.server.registrations() == 2);

  a.lookup("bob", h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  auto lk = only<LookupResult>(a);
  CHECK(lk.found);
  a.lookup("carol", h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  auto lk2 = only<LookupResult>(a);
  CHECK_FALSE(lk2.found);

  a.introduce("bob", h.clock.now());
  auto out = h.exchange(a, a_addr);
  REQUIRE(out.size() == 2);  // the response to alice and the PeerIntroduction to bob, in one call
  h.deliver(out, a, a_addr);
  h.deliver(out, b, b_addr);
  auto pending = only<IntroductionPending>(a);
  CHECK(pending.peer == "bob");
  CHECK(pending.wait_s == 0);
  auto ib = only<IntroductionReceived>(b);
  CHECK(ib.id == pending.id);
  CHECK(ib.candidates.name == "alice");
  CHECK(ib.candidates.reflexive == a_addr);
  // Bob's answer (his offer) reaches the server, which reports to alice.
  out = h.exchange(b, b_addr);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == a_addr);
  h.deliver(out, a, a_addr);
  auto ia = only<Introduced>(a);
  CHECK(ia.id == pending.id);
  CHECK(ia.candidates.name == "bob");
  CHECK(ia.candidates.reflexive == b_addr);
  REQUIRE(ia.candidates.hosts.size() == 1);
  CHECK(ia.candidates.hosts[0] == addr("10.0.0.5", 5000));
  // Each side got the other's offer, as the other made it.
  CHECK(ia.remote.ufrag == ib.local.ufrag);
  CHECK(ia.remote.password == ib.local.password);
  CHECK(ia.remote.tie_breaker == ib.local.tie_breaker);
  CHECK(ib.remote.ufrag == ia.local.ufrag);
  CHECK(ib.remote.password == ia.local.password);
  CHECK(ib.remote.fingerprint == Bytes(32, 0xA1));
  CHECK(ia.remote.fingerprint == Bytes(32, 0xA2));
  CHECK(ia.local.ufrag != ib.local.ufrag);
  // Alice acknowledges; the server is done with it.
  CHECK(h.exchange(a, a_addr).empty());
  CHECK(h.server.introductions_in_flight() == 0);
  CHECK(h.server.counters().introductions == 1);
  CHECK(h.server.counters().introductions_delivered == 1);
}

TEST_CASE("a third party cannot take a name, look up or introduce without the key", "[p2p][rendezvous]") {
  Harness h;
  auto a_addr = addr("198.51.100.10", 40000);
  auto b_addr = addr("203.0.113.20", 50000);
  auto m_addr = addr("192.0.2.66", 6666);
  Client a(client_config("alice", 1));
  Client b(client_config("bob", 2));
  h.join(a, a_addr);
  h.join(b, b_addr);
  a.take_events();
  b.take_events();

  // Mallory claims "alice" with her own key: 403, and alice's registration is untouched.
  Client m(client_config("alice", 9));
  m.register_name(h.clock.now());
  auto out = h.exchange(m, m_addr);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == m_addr);
  h.deliver(out, m, m_addr);
  auto em = only<RequestFailed>(m);
  CHECK(em.error_code == 403);
  CHECK(h.server.counters().name_conflicts == 1);

  // Mallory pretends to be alice (wrong key) to introduce alice to bob: 401, no indication to bob.
  m.introduce("bob", h.clock.now());
  out = h.exchange(m, m_addr);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == m_addr);
  h.deliver(out, m, m_addr);
  CHECK(only<RequestFailed>(m).error_code == 401);

  // Mallory registers her own name and asks for alice: she is introduced (that is the
  // protocol), but she never learns candidates by Lookup, and she cannot make the
  // server send anything to an address that is not a registered peer's own.
  Client m2(client_config("mallory", 9));
  h.join(m2, m_addr);
  m2.take_events();
  m2.lookup("alice", h.clock.now());
  out = h.exchange(m2, m_addr);
  REQUIRE(out.size() == 1);
  auto resp = decode(out[0].data);
  REQUIRE(resp.ok());
  CHECK(resp->find(attr::kReflexiveCandidate) == nullptr);
  CHECK(resp->find(attr::kHostCandidate) == nullptr);

  // Alice still owns her name and can refresh it.
  a.refresh(h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  CHECK(is<Registered>(only_event(a)));
}

TEST_CASE("registrations expire and per-source quotas hold", "[p2p][rendezvous]") {
  Harness h;
  auto src = addr("198.51.100.10", 40000);
  std::vector<std::unique_ptr<Client>> clients;
  int ok = 0, quota = 0;
  for (int i = 0; i < 5; ++i) {
    auto c = std::make_unique<Client>(client_config("peer" + std::to_string(i), static_cast<std::uint8_t>(i + 1)));
    c->register_name(h.clock.now());
    auto at = addr("198.51.100.10", static_cast<std::uint16_t>(40000 + i));
    h.deliver(h.exchange(*c, at), *c, at);
    auto e = only_event(*c);
    if (is<Registered>(e)) ok++;
    if (auto* f = std::get_if<RequestFailed>(&e); f && f->error_code == 486) quota++;
    clients.push_back(std::move(c));
  }
  CHECK(ok == 3);
  CHECK(quota == 2);
  h.clock.advance(301 * kNanosPerSecond);
  REQUIRE(h.server.expiry().has_value());
  CHECK(*h.server.expiry() <= h.clock.now());
  h.server.handle_expiry(h.clock.now());
  CHECK(h.server.registrations() == 0);
  CHECK(h.server.counters().registrations_expired == 3);
  // The quota is free again.
  clients[4]->register_name(h.clock.now());
  h.deliver(h.exchange(*clients[4], src), *clients[4], src);
  CHECK(is<Registered>(only_event(*clients[4])));
}

TEST_CASE("the server schedules housekeeping only while it tracks something", "[p2p][rendezvous]") {
  Harness h;
  CHECK_FALSE(h.server.expiry().has_value());  // idle: no timer at all
  Client a(client_config("alice", 1));
  a.register_name(h.clock.now());
  auto at = addr("198.51.100.10", 40000);
  h.deliver(h.exchange(a, at), a, at);
  REQUIRE(h.server.registrations() == 1);
  REQUIRE(h.server.expiry() == h.clock.now() + Server::kHousekeepingInterval);
  // Early calls change nothing; at the deadline it sweeps and schedules the next.
  h.server.handle_expiry(h.clock.now());
  CHECK(h.server.expiry() == h.clock.now() + Server::kHousekeepingInterval);
  h.clock.set(*h.server.expiry());
  h.server.handle_expiry(h.clock.now());
  CHECK(h.server.registrations() == 1);
  CHECK(h.server.expiry() == h.clock.now() + Server::kHousekeepingInterval);
  // Once the registration has expired and the source is idle, nothing is left to schedule.
  h.clock.advance(400 * kNanosPerSecond);
  h.server.handle_expiry(h.clock.now());
  CHECK(h.server.registrations() == 0);
  CHECK(h.server.tracked_sources() == 0);
  CHECK_FALSE(h.server.expiry().has_value());
}

TEST_CASE("the client refreshes before expiry and retransmits lost requests", "[p2p][rendezvous]") {
  Harness h;
  auto at = addr("198.51.100.10", 40000);
  auto config = client_config("alice", 1);
  config.keepalive = 0;  // only the refresh is due
  Client a(config);
  a.register_name(h.clock.now());
  CHECK(a.take_datagrams().size() == 1);  // lost
  REQUIRE(a.expiry());
  h.clock.set(*a.expiry());
  a.handle_expiry(h.clock.now());
  h.deliver(h.exchange(a, at), a, at);  // the retransmission gets through
  CHECK(is<Registered>(only_event(a)));
  REQUIRE(a.expiry());
  CHECK(*a.expiry() == h.clock.now() + 150 * kNanosPerSecond);
  h.clock.set(*a.expiry());
  a.handle_expiry(h.clock.now());
  h.deliver(h.exchange(a, at), a, at);
  CHECK(is<Registered>(only_event(a)));
  CHECK(h.server.counters().registrations_refreshed == 1);
}

TEST_CASE("Binding answers with RFC 5780 attributes and CHANGE-REQUEST picks the socket", "[p2p][rendezvous]") {
  Harness h;
  auto from = addr("198.51.100.10", 40000);
  Message req;
  req.transaction_id = random_transaction_id();
  req.add_change_request(true, true);
  auto out = h.raw(from, encode(req, {std::nullopt, std::nullopt, true}));
  REQUIRE(out.size() == 1);
  CHECK(out[0].socket == kAltBoth);
  auto resp = decode(out[0].data);
  REQUIRE(resp.ok());
  CHECK(resp->message_class == MessageClass::SuccessResponse);
  CHECK(*resp->xor_address(attr::kXorMappedAddress).value() == from);
  CHECK(*resp->address(attr::kResponseOrigin).value() == addr("192.0.2.2", 3479));
  CHECK(*resp->address(attr::kOtherAddress).value() == addr("192.0.2.2", 3479));
  CHECK(resp->find(attr::kFingerprint) != nullptr);

  Message port_only;
  port_only.transaction_id = random_transaction_id();
  port_only.add_change_request(false, true);
  out = h.raw(from, encode(port_only), kAltIp);
  REQUIRE(out.size() == 1);
  CHECK(out[0].socket == kAltBoth);
  CHECK(*decode(out[0].data)->address(attr::kOtherAddress).value() == addr("192.0.2.1", 3479));

  // RFC 3489 request (no magic cookie) gets MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS.
  Message legacy;
  legacy.magic_cookie = 0x11223344;
  legacy.transaction_id = random_transaction_id();
  out = h.raw(from, encode(legacy));
  REQUIRE(out.size() == 1);
  auto lr = decode(out[0].data, {true});
  REQUIRE(lr.ok());
  CHECK(lr->magic_cookie == 0x11223344);
  CHECK(*lr->address(attr::kMappedAddress).value() == from);
  CHECK(*lr->address(attr::kChangedAddress).value() == addr("192.0.2.2", 3479));
  CHECK(lr->find(attr::kXorMappedAddress) == nullptr);
}

TEST_CASE("bad requests get the RFC error or a silent drop", "[p2p][rendezvous]") {
  Harness h;
  auto from = addr("198.51.100.10", 40000);
  // Unknown comprehension-required attribute: 420 listing it.
  Message req;
  req.transaction_id = random_transaction_id();
  req.add(0x7abc, Bytes{1, 2, 3, 4});
  req.add(0xcabc, Bytes{1});  // comprehension-optional: ignored
  auto out = h.raw(from, encode(req));
  REQUIRE(out.size() == 1);
  auto r = decode(out[0].data);
  REQUIRE(r.ok());
  CHECK(r->error().value()->code == 420);
  CHECK(r->unknown_attributes().value() == std::vector<std::uint16_t>{0x7abc});
  // Responses, indications and garbage: dropped.
  Message resp;
  resp.message_class = MessageClass::SuccessResponse;
  CHECK(h.raw(from, encode(resp)).empty());
  CHECK(h.raw(from, Bytes{0x00, 0x01, 0x00}).empty());
  CHECK(h.server.counters().malformed == 1);
  CHECK(h.server.counters().not_a_request == 1);
  // Duplicate attributes in a rendezvous request: 400.
  Message dup;
  dup.method = method::kRegister;
  dup.transaction_id = random_transaction_id();
  dup.add_string(attr::kUsername, "x");
  dup.add_string(attr::kUsername, "y");
  out = h.raw(from, encode(dup, {std::nullopt, Bytes(32, 1), true}));
  REQUIRE(out.size() == 1);
  CHECK(decode(out[0].data)->error().value()->code == 400);
}

TEST_CASE("a flood from one source is cut by the rate limit, others still get answers", "[p2p][rendezvous]") {
  Harness h;
  Message req;
  req.transaction_id = random_transaction_id();
  auto wire = encode(req);
  std::size_t answered = 0;
  for (int i = 0; i < 1000; ++i) {
    answered += h.raw(addr("198.51.100.10", static_cast<std::uint16_t>(1000 + i)), wire).size();
  }
  CHECK(answered == 100);  // the burst, no more at the same instant
  CHECK(h.server.counters().rate_limited == 900);
  CHECK(h.raw(addr("198.51.100.11", 1), wire).size() == 1);
  h.clock.advance(kNanosPerSecond);
  CHECK(h.raw(addr("198.51.100.10", 1), wire).size() == 1);
  CHECK(h.server.metrics_text().find("quiclab_rendezvous_rate_limited_total 900") != std::string::npos);
}

TEST_CASE("while registered the client sends Binding indications when it has sent nothing else for 15 s",
          "[p2p][rendezvous][keepalive]") {
  Harness h;
  auto at = addr("198.51.100.10", 40000);
  Client a(client_config("alice", 1));
  h.join(a, at);
  REQUIRE(is<Registered>(only_event(a)));
  const Timestamp t0 = h.clock.now();
  REQUIRE(a.expiry() == t0 + 15 * kNanosPerSecond);
  auto step_to = [&](Timestamp t) {
    h.clock.set(t);
    a.handle_expiry(h.clock.now());
    return a.take_datagrams();
  };
  auto d = step_to(t0 + 15 * kNanosPerSecond);
  REQUIRE(d.size() == 1);
  auto k = decode(d[0]);
  REQUIRE(k);
  CHECK(k->message_class == MessageClass::Indication);
  CHECK(k->method == method::kBinding);
  CHECK(k->find(attr::kFingerprint) != nullptr);
  std::vector<OutgoingDatagram> out;
  h.server.handle_datagram(kPrimary, at, d[0], h.clock.now(), out);
  CHECK(out.empty());  // never answered
  CHECK(h.server.counters().binding_indications == 1);
  // Other traffic to the server counts: a lookup at +20 s moves the next keepalive to +35 s.
  h.clock.set(t0 + 20 * kNanosPerSecond);
  a.lookup("bob", h.clock.now());
  h.deliver(h.exchange(a, at), a, at);
  (void)a.take_events();
  CHECK(a.expiry() == t0 + 35 * kNanosPerSecond);
  CHECK(step_to(t0 + 35 * kNanosPerSecond).size() == 1);
  CHECK(a.keepalives_sent() == 2);
  // Unregistered (lifetime 0): no more keepalives.
  a.refresh(h.clock.now(), 0);
  h.deliver(h.exchange(a, at), a, at);
  (void)a.take_events();
  CHECK_FALSE(a.expiry().has_value());
  // Configured off: none at all.
  auto quiet = client_config("bob", 2);
  quiet.keepalive = 0;
  Client b(quiet);
  b.register_name(h.clock.now());
  auto bat = addr("198.51.100.11", 40000);
  h.deliver(h.exchange(b, bat), b, bat);
  (void)b.take_events();
  CHECK(b.expiry() == h.clock.now() + 150 * kNanosPerSecond);  // only the refresh
}

namespace {
// Alice behind a port-restricted NAT whose UDP mappings die after 30 s of
// silence; bob (public) asks to be introduced 100 s after alice registered.
// Returns whether alice heard of it.
bool introduction_reaches_nat_peer(Timestamp keepalive) {
  Harness h;
  sim::NatConfig nc = sim::NatConfig::port_restricted();
  nc.udp_timeout = 30 * kNanosPerSecond;
  sim::Nat nat(nc);
  const auto alice_inside = addr("10.0.0.2", 5000), bob_at = addr("203.0.113.77", 6000);
  const auto server_at = Harness::config().local[kPrimary];
  auto ca = client_config("alice", 1);
  ca.keepalive = keepalive;
  Client alice(ca);
  Client bob(client_config("bob", 2));
  bool heard = false;
  auto alice_out = [&] {
    for (auto& d : alice.take_datagrams()) {
      std::vector<OutgoingDatagram> out;
      h.server.handle_datagram(kPrimary, nat.outbound(alice_inside, server_at, h.clock.now()), d, h.clock.now(), out);
      for (auto& o : out)
        if (nat.inbound(server_at, o.to, h.clock.now())) alice.handle_datagram(o.data, h.clock.now());
    }
    for (auto& e : alice.take_events()) heard = heard || is<IntroductionReceived>(e);
  };
  alice.register_name(h.clock.now());
  alice_out();
  REQUIRE(alice.registered());
  h.join(bob, bob_at);
  const Timestamp intro_at = h.clock.now() + 100 * kNanosPerSecond;
  while (h.clock.now() < intro_at) {
    auto e = alice.expiry();
    REQUIRE(e);
    h.clock.set(std::min(*e, intro_at));
    alice.handle_expiry(h.clock.now());
    alice_out();
  }
  bob.introduce("alice", h.clock.now());
  auto out = h.exchange(bob, bob_at);
  for (auto& o : out) {
    if (o.to == bob_at) continue;
    if (nat.inbound(server_at, o.to, h.clock.now())) alice.handle_datagram(o.data, h.clock.now());
  }
  for (auto& e : alice.take_events()) heard = heard || is<IntroductionReceived>(e);
  return heard;
}
}  // namespace

TEST_CASE("keepalives keep the NAT mapping, and with it the introduction, without them it is lost",
          "[p2p][rendezvous][keepalive][nat]") {
  CHECK(introduction_reaches_nat_peer(15 * kNanosPerSecond));
  CHECK_FALSE(introduction_reaches_nat_peer(0));
}

TEST_CASE("a Binding request with PADDING gets a response padded to the MTU, never above the request",
          "[p2p][rendezvous][rfc5780]") {
  Harness h;
  auto ask = [&](const SocketAddress& from, std::size_t padding) {
    Message req;
    req.transaction_id = random_transaction_id();
    req.add(attr::kPadding, Bytes(padding, 0));
    auto d = encode(req);
    auto out = h.raw(from, d);
    REQUIRE(out.size() == 1);
    auto resp = decode(out[0].data);
    REQUIRE(resp);
    return std::make_pair(d.size(), out[0].data.size());
  };
  // A request padded to a 1500-byte IPv4 MTU (1472 bytes of UDP payload): the answer is as big.
  auto [req4, resp4] = ask(addr("198.51.100.10", 40000), 1472 - 20 - 4);
  CHECK(req4 == 1472);
  CHECK(resp4 == 1472);
  // IPv6 headers are 20 bytes longer: 1452.
  auto [req6, resp6] = ask(addr("2001:db8::10", 40000), 1472 - 20 - 4);
  CHECK(req6 == 1472);
  CHECK(resp6 == 1452);
  // A small padded request buys no large answer.
  auto [reqs, resps] = ask(addr("198.51.100.12", 40000), 8);
  CHECK(resps < 200);
  CHECK(resps >= reqs - 32);  // padded at most to the request: here not at all
  CHECK(h.server.counters().padded_responses == 2);
  // Without PADDING nothing changes.
  Message plain;
  plain.transaction_id = random_transaction_id();
  auto out = h.raw(addr("198.51.100.13", 40000), encode(plain));
  REQUIRE(out.size() == 1);
  CHECK(decode(out[0].data)->find(attr::kPadding) == nullptr);
}

TEST_CASE("an introduction is retransmitted until the target answers, and the asker learns if it never does",
          "[p2p][rendezvous][introduction]") {
  Harness h;
  auto a_addr = addr("198.51.100.10", 40000), b_addr = addr("203.0.113.20", 50000);
  Client a(client_config("alice", 1)), b(client_config("bob", 2));
  h.join(a, a_addr);
  h.join(b, b_addr);
  (void)a.take_events();
  (void)b.take_events();
  a.introduce("bob", h.clock.now());
  auto out = h.exchange(a, a_addr);
  h.deliver(out, a, a_addr);  // alice: pending; the first PeerIntroduction to bob is lost
  auto pending = only<IntroductionPending>(a);
  // The server retransmits with doubling RTOs: 0.5, 1, 2, 4 s after the first.
  std::vector<Timestamp> resent;
  const Timestamp t0 = h.clock.now();
  for (int i = 0; i < 3; ++i) {
    std::vector<OutgoingDatagram> d;
    for (int steps = 0; steps < 10 && d.empty(); ++steps) {  // housekeeping deadlines come in between
      REQUIRE(h.server.expiry());
      h.clock.set(*h.server.expiry());
      h.server.handle_expiry(h.clock.now());
      d = h.server.take_datagrams();
    }
    REQUIRE(d.size() == 1);
    CHECK(d[0].to == b_addr);
    resent.push_back(h.clock.now() - t0);
    if (i == 2) {
      // The third retransmission gets through; bob answers once per copy, reports once.
      h.deliver(d, b, b_addr);
      h.deliver(d, b, b_addr);
    }
  }
  CHECK(resent == std::vector<Timestamp>{500 * kNanosPerMilli, 1500 * kNanosPerMilli, 3500 * kNanosPerMilli});
  auto events = b.take_events();
  REQUIRE(events.size() == 1);
  CHECK(std::get<IntroductionReceived>(events[0]).id == pending.id);
  out = h.exchange(b, b_addr);  // two identical answers: the second matches nothing
  REQUIRE(out.size() == 1);
  h.deliver(out, a, a_addr);
  CHECK(only<Introduced>(a).id == pending.id);

  // Now carol never answers: alice hears that it failed, within the bound.
  Client c(client_config("carol", 3));
  auto c_addr = addr("192.0.2.30", 7000);
  h.join(c, c_addr);
  CHECK(h.exchange(a, a_addr).empty());  // alice's acknowledgement ends it at the server
  CHECK(h.server.introductions_in_flight() == 0);
  a.introduce("carol", h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);  // carol's copy is never delivered
  (void)only<IntroductionPending>(a);
  const Timestamp asked = h.clock.now();
  std::vector<OutgoingDatagram> to_alice;
  for (int i = 0; i < 20 && to_alice.empty(); ++i) {
    REQUIRE(h.server.expiry());
    h.clock.set(*h.server.expiry());
    h.server.handle_expiry(h.clock.now());
    for (auto& d : h.server.take_datagrams())
      if (d.to == a_addr) to_alice.push_back(d);
  }
  REQUIRE(to_alice.size() == 1);
  CHECK(h.clock.now() - asked <= h.server.config().introduction_timeout);
  h.deliver(to_alice, a, a_addr);
  auto failed = only<IntroductionFailed>(a);
  CHECK(failed.peer == "carol");
  CHECK(failed.error_code == 408);
  CHECK_THAT(failed.reason, Catch::Contains("no answer from 'carol'"));
  CHECK(h.server.counters().introductions_failed == 1);
}

TEST_CASE("an introduction can wait for a peer that has not registered yet, bounded",
          "[p2p][rendezvous][introduction]") {
  Harness h;
  auto a_addr = addr("198.51.100.10", 40000), b_addr = addr("203.0.113.20", 50000);
  Client a(client_config("alice", 1)), b(client_config("bob", 2));
  h.join(a, a_addr);
  (void)a.take_events();
  // Without WAIT an absent peer is a 404, as before.
  a.introduce("bob", h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  CHECK(only<RequestFailed>(a).error_code == 404);
  // With WAIT the server holds it (capped at its maximum).
  a.introduce("bob", h.clock.now(), 30);
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  auto pending = only<IntroductionPending>(a);
  CHECK(pending.wait_s == 30);
  CHECK(h.server.counters().introductions_waiting == 1);
  // Bob registers 10 s later: the introduction goes out in the same call.
  h.clock.advance(10 * kNanosPerSecond);
  b.register_name(h.clock.now());
  auto out = h.exchange(b, b_addr);
  REQUIRE(out.size() == 2);  // Register response + PeerIntroduction
  h.deliver(out, b, b_addr);
  auto events = b.take_events();
  REQUIRE(events.size() == 2);
  CHECK(std::holds_alternative<Registered>(events[0]));
  CHECK(std::get<IntroductionReceived>(events[1]).candidates.name == "alice");
  h.deliver(h.exchange(b, b_addr), a, a_addr);
  CHECK(only<Introduced>(a).id == pending.id);

  // Limits: at most max_waiting_per_asker waiting at once (486 after), and an
  // expired wait is reported as a failure.
  (void)a.take_datagrams();
  for (std::size_t i = 0; i <= h.server.config().max_waiting_per_asker; ++i) {
    a.introduce("nobody" + std::to_string(i), h.clock.now(), 5);
    h.deliver(h.exchange(a, a_addr), a, a_addr);
    h.clock.advance(kNanosPerSecond);  // the introduction budget refills (2/s, burst 5)
  }
  auto limited = a.take_events();
  REQUIRE(limited.size() == h.server.config().max_waiting_per_asker + 1);
  CHECK(std::get<RequestFailed>(limited.back()).error_code == 486);
  h.clock.advance(10 * kNanosPerSecond);
  h.server.handle_expiry(h.clock.now());
  std::size_t failures = 0;
  for (auto& d : h.server.take_datagrams()) {
    CHECK(d.to == a_addr);
    a.handle_datagram(d.data, h.clock.now());
  }
  for (auto& e : a.take_events())
    if (auto* f = std::get_if<IntroductionFailed>(&e)) {
      CHECK_THAT(f->reason, Catch::Contains("did not register within 5 s"));
      ++failures;
    }
  CHECK(failures == h.server.config().max_waiting_per_asker);
}

TEST_CASE("a forged introduction cannot point a peer at a third address", "[p2p][rendezvous]") {
  Harness h;
  auto b_addr = addr("203.0.113.20", 50000);
  Client b(client_config("bob", 2));
  h.join(b, b_addr);
  b.take_events();
  // Mallory (no key of bob's) sends bob a PeerIntroduction naming "alice" at
  // her own address, with an offer of her own: signed with a wrong key,
  // without any integrity, and with the right integrity of another name.
  IntroductionOffer offer;
  offer.ufrag = "abcd";
  offer.password = std::string(22, 'p');
  offer.tie_breaker = 7;
  offer.fingerprint = Bytes(32, 0x66);
  for (int variant = 0; variant < 3; ++variant) {
    Message m;
    m.method = method::kPeerIntroduction;
    m.transaction_id = random_transaction_id();
    m.add_u64(attr::kIntroductionId, 4242 + static_cast<std::uint64_t>(variant));
    m.add_string(attr::kPeerName, "alice");
    m.add_xor_address(attr::kReflexiveCandidate, addr("192.0.2.66", 6666));
    add_offer(m, offer);
    EncodeOptions eo;
    if (variant == 0) eo.integrity_sha256_key = Bytes(32, 9);  // a key that is not bob's
    if (variant == 2) eo.integrity_sha256_key = Bytes(32, 1);  // alice's key, not bob's
    eo.fingerprint = true;
    INFO("variant " << variant);
    CHECK_FALSE(b.handle_datagram(encode(m, eo), h.clock.now()));
    CHECK(b.take_events().empty());
    CHECK(b.take_datagrams().empty());  // not even an answer that would confirm bob is there
  }
}

TEST_CASE("relay candidates travel in both offers, and a peer without one gets none", "[p2p][rendezvous]") {
  for (const bool bob_relays : {true, false}) {
    INFO("bob has a relay: " << bob_relays);
    Harness h;
    auto a_addr = addr("198.51.100.10", 40000);
    auto b_addr = addr("203.0.113.20", 50000);
    auto a_cfg = client_config("alice", 1);
    a_cfg.relay_candidate = addr("198.51.100.2", 49200);
    a_cfg.birthday = Mapping::endpoint_dependent;
    auto b_cfg = client_config("bob", 2);
    if (bob_relays) b_cfg.relay_candidate = addr("198.51.100.2", 49300);
    if (bob_relays) b_cfg.birthday = Mapping::endpoint_independent;
    Client a(a_cfg);
    Client b(b_cfg);
    h.join(a, a_addr);
    a.take_events();
    h.join(b, b_addr);
    b.take_events();
    a.introduce("bob", h.clock.now());
    auto out = h.exchange(a, a_addr);
    h.deliver(out, a, a_addr);
    h.deliver(out, b, b_addr);
    a.take_events();
    auto ib = only<IntroductionReceived>(b);
    REQUIRE(ib.remote.relay.has_value());
    CHECK(*ib.remote.relay == addr("198.51.100.2", 49200));
    h.deliver(h.exchange(b, b_addr), a, a_addr);
    auto ia = only<Introduced>(a);
    CHECK(ia.remote.relay.has_value() == bob_relays);
    if (bob_relays) CHECK(*ia.remote.relay == addr("198.51.100.2", 49300));
    CHECK(ia.local.relay == a_cfg.relay_candidate);
    // BIRTHDAY (birthday punching and the side's mapping) travels the same way.
    CHECK(ib.remote.birthday == Mapping::endpoint_dependent);
    CHECK(ia.remote.birthday == b_cfg.birthday);
  }
}

TEST_CASE("an offer's BIRTHDAY must name a mapping", "[p2p][rendezvous]") {
  IntroductionOffer o;
  o.ufrag = "abcd";
  o.password = std::string(22, 'x');
  o.tie_breaker = 7;
  o.fingerprint = Bytes(32, 1);
  stun::Message good;
  o.birthday = Mapping::endpoint_independent;
  add_offer(good, o);
  auto read = read_offer(good);
  REQUIRE(read);
  CHECK(read->birthday == Mapping::endpoint_independent);
  stun::Message bad;
  o.birthday.reset();
  add_offer(bad, o);
  bad.add_u32(stun::attr::kBirthday, 3);
  auto r = read_offer(bad);
  REQUIRE(!r);
  CHECK_THAT(r.error().message, Catch::Contains("BIRTHDAY") && Catch::Contains("3"));
}
