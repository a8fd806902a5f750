// Rendezvous server and client cores driven together in memory on simulated time.
#include <catch2/catch.hpp>

#include "p2p/rendezvous_client.hpp"
#include "p2p/rendezvous_server.hpp"

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
  return c;
}

Event only_event(Client& c) {
  auto events = c.take_events();
  REQUIRE(events.size() == 1);
  return events.front();
}

}  // namespace

TEST_CASE("two registered peers are introduced and get each other's candidates", "[p2p][rendezvous]") {
  Harness h;
  auto a_addr = addr("198.51.100.10", 40000);
  auto b_addr = addr("203.0.113.20", 50000);
  Client a(client_config("alice", 1));
  Client b(client_config("bob", 2));
  a.register_name(h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  auto ea = only_event(a);
  CHECK(ea.kind == Event::Kind::Registered);
  CHECK(ea.mapped == a_addr);
  CHECK(ea.lifetime_s == 300);
  b.register_name(h.clock.now());
  h.deliver(h.exchange(b, b_addr), b, b_addr);
  CHECK(only_event(b).kind == Event::Kind::Registered);
  CHECK(h.server.registrations() == 2);

  a.lookup("bob", h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  auto lk = only_event(a);
  CHECK(lk.kind == Event::Kind::LookupResult);
  CHECK(lk.found);
  a.lookup("carol", h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  auto lk2 = only_event(a);
  CHECK(lk2.kind == Event::Kind::LookupResult);
  CHECK_FALSE(lk2.found);

  a.introduce("bob", h.clock.now());
  auto out = h.exchange(a, a_addr);
  REQUIRE(out.size() == 2);  // the response to alice and the indication to bob, in one call
  h.deliver(out, a, a_addr);
  h.deliver(out, b, b_addr);
  auto ia = only_event(a);
  auto ib = only_event(b);
  REQUIRE(ia.kind == Event::Kind::Introduced);
  REQUIRE(ib.kind == Event::Kind::IntroductionReceived);
  CHECK(ia.candidates.name == "bob");
  CHECK(ia.candidates.reflexive == b_addr);
  REQUIRE(ia.candidates.hosts.size() == 1);
  CHECK(ia.candidates.hosts[0] == addr("10.0.0.5", 5000));
  CHECK(ib.candidates.name == "alice");
  CHECK(ib.candidates.reflexive == a_addr);
  CHECK(h.server.counters().introductions == 1);
}

TEST_CASE("a third party cannot take a name, look up or introduce without the key", "[p2p][rendezvous]") {
  Harness h;
  auto a_addr = addr("198.51.100.10", 40000);
  auto b_addr = addr("203.0.113.20", 50000);
  auto m_addr = addr("192.0.2.66", 6666);
  Client a(client_config("alice", 1));
  Client b(client_config("bob", 2));
  a.register_name(h.clock.now());
  h.deliver(h.exchange(a, a_addr), a, a_addr);
  b.register_name(h.clock.now());
  h.deliver(h.exchange(b, b_addr), b, b_addr);
  a.take_events();
  b.take_events();

  // Mallory claims "alice" with her own key: 403, and alice's registration is untouched.
  Client m(client_config("alice", 9));
  m.register_name(h.clock.now());
  auto out = h.exchange(m, m_addr);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == m_addr);
  h.deliver(out, m, m_addr);
  auto em = only_event(m);
  CHECK(em.kind == Event::Kind::RequestFailed);
  CHECK(em.error_code == 403);
  CHECK(h.server.counters().name_conflicts == 1);

  // Mallory pretends to be alice (wrong key) to introduce alice to bob: 401, no indication to bob.
  m.introduce("bob", h.clock.now());
  out = h.exchange(m, m_addr);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == m_addr);
  h.deliver(out, m, m_addr);
  CHECK(only_event(m).error_code == 401);

  // Mallory registers her own name and asks for alice: she is introduced (that is the
  // protocol), but she never learns candidates by Lookup, and she cannot make the
  // server send anything to an address that is not a registered peer's own.
  Client m2(client_config("mallory", 9));
  m2.register_name(h.clock.now());
  h.deliver(h.exchange(m2, m_addr), m2, m_addr);
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
  CHECK(only_event(a).kind == Event::Kind::Registered);
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
    if (e.kind == Event::Kind::Registered) ok++;
    if (e.kind == Event::Kind::RequestFailed && e.error_code == 486) quota++;
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
  CHECK(only_event(*clients[4]).kind == Event::Kind::Registered);
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
  Client a(client_config("alice", 1));
  a.register_name(h.clock.now());
  CHECK(a.take_datagrams().size() == 1);  // lost
  REQUIRE(a.expiry());
  h.clock.set(*a.expiry());
  a.handle_expiry(h.clock.now());
  h.deliver(h.exchange(a, at), a, at);  // the retransmission gets through
  CHECK(only_event(a).kind == Event::Kind::Registered);
  REQUIRE(a.expiry());
  CHECK(*a.expiry() == h.clock.now() + 150 * kNanosPerSecond);
  h.clock.set(*a.expiry());
  a.handle_expiry(h.clock.now());
  h.deliver(h.exchange(a, at), a, at);
  CHECK(only_event(a).kind == Event::Kind::Registered);
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
