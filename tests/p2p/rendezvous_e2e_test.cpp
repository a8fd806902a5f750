// End-to-end tests of `quiclab rendezvous` over real UDP sockets on loopback:
// introductions, what a third party cannot do, bad input and a bounded flood.
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <regex>

#include "p2p/rendezvous_client.hpp"
#include "p2p/stun.hpp"
#include "process.hpp"
#include "transport/core/clock.hpp"
#include "udp_test_socket.hpp"

using namespace quiclab;
using namespace quiclab::stun;
using quiclab::rendezvous::Client;
using quiclab::rendezvous::ClientConfig;
using quiclab::rendezvous::Event;
using quiclab::rendezvous::Introduced;
using quiclab::rendezvous::IntroductionPending;
using quiclab::rendezvous::IntroductionReceived;
using quiclab::rendezvous::LookupResult;
using quiclab::rendezvous::Registered;
using quiclab::rendezvous::RequestFailed;
using quiclab::test::UdpSocket;

namespace {
template <class T>
bool is(const Event& e) {
  return std::holds_alternative<T>(e);
}
// The event as a T; the test stops when it is something else.
template <class T>
const T& as(const Event& e) {
  INFO("event: " << quiclab::rendezvous::event_name(e));
  REQUIRE(is<T>(e));
  return std::get<T>(e);
}
}  // namespace

namespace {

struct Server {
  std::unique_ptr<test::ChildProcess> process;
  SocketAddress primary;
  explicit Server(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{QUICLAB_BIN, "rendezvous", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = std::make_unique<test::ChildProcess>(argv);
    REQUIRE(process->wait_for_stdout("listening primary="));
    std::smatch m;
    auto out = process->stdout_text();
    REQUIRE(std::regex_search(out, m, std::regex("primary=([0-9.]+:[0-9]+)")));
    primary = SocketAddress::parse(m[1].str()).value();
  }
  /// Counter value from the Prometheus text printed on SIGUSR1.
  std::uint64_t metric(const std::string& name) {
    auto before = process->stdout_text().size();
    process->signal(SIGUSR1);
    for (int i = 0; i < 500; ++i) {
      auto text = process->stdout_text();
      if (text.size() > before && text.find("quiclab_rendezvous_tracked_sources ", before) != std::string::npos) {
        std::smatch m;
        std::string tail = text.substr(before);
        if (std::regex_search(tail, m, std::regex("\nquiclab_rendezvous_" + name + " ([0-9]+)"))) {
          return std::stoull(m[1].str());
        }
        return ~0ull;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ~0ull;
  }
};

Timestamp now_ns() { return SteadyClock::instance().now(); }

// Drives a client over its socket until `done` says so or 20 s pass.
template <class Done>
std::vector<Event> drive(Client& c, UdpSocket& sock, const SocketAddress& server, Done done) {
  std::vector<Event> events;
  auto until = now_ns() + 20 * kNanosPerSecond;
  while (now_ns() < until) {
    for (auto& d : c.take_datagrams()) sock.send(server, d);
    for (auto& e : c.take_events()) events.push_back(e);
    if (done(events)) break;
    int wait_ms = 50;
    if (auto e = c.expiry(); e && *e > now_ns())
      wait_ms = static_cast<int>(std::min<Timestamp>((*e - now_ns()) / kNanosPerMilli + 1, 50));
    if (auto d = sock.recv(wait_ms)) c.handle_datagram(*d, now_ns());
    if (auto e = c.expiry(); e && *e <= now_ns()) c.handle_expiry(now_ns());
  }
  return events;
}

ClientConfig config(std::string name, std::uint8_t key_byte, SocketAddress host) {
  ClientConfig c;
  c.name = std::move(name);
  c.key = Bytes(32, key_byte);
  c.host_candidates = {host};
  c.transaction.rto = 200 * kNanosPerMilli;
  return c;
}

Event register_client(Client& c, UdpSocket& s, const SocketAddress& server) {
  c.register_name(now_ns());
  auto ev = drive(c, s, server, [](const auto& e) { return !e.empty(); });
  REQUIRE(ev.size() == 1);
  return ev[0];
}

// Sends raw bytes and waits for one answer (or none within timeout).
std::optional<Message> ask(UdpSocket& s, const SocketAddress& server, ByteView data, int timeout_ms = 1000) {
  s.send(server, data);
  auto r = s.recv(timeout_ms);
  if (!r) return std::nullopt;
  auto m = decode(*r, {true});
  REQUIRE(m.ok());
  return *m;
}

int error_of(const std::optional<Message>& m) {
  if (!m) return -1;
  auto e = m->error();
  if (!e || !*e) return 0;
  return (*e)->code;
}

bool binding_works(UdpSocket& s, const SocketAddress& server) {
  Message req;
  req.transaction_id = random_transaction_id();
  for (int i = 0; i < 5; ++i) {
    auto r = ask(s, server, encode(req), 1000);
    if (r && r->message_class == MessageClass::SuccessResponse && r->transaction_id == req.transaction_id) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("two peers register and are introduced with each other's candidates", "[p2p][e2e]") {
  Server server;
  UdpSocket sa, sb;
  Client alice(config("alice", 1, SocketAddress::from_ip("10.1.1.1", 1111).value()));
  Client bob(config("bob", 2, SocketAddress::from_ip("10.2.2.2", 2222).value()));
  auto ra = register_client(alice, sa, server.primary);
  REQUIRE(is<Registered>(ra));
  CHECK(as<Registered>(ra).mapped == sa.local());
  REQUIRE(is<Registered>(register_client(bob, sb, server.primary)));

  alice.lookup("bob", now_ns());
  auto lk = drive(alice, sa, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(lk.size() == 1);
  CHECK(as<LookupResult>(lk[0]).found);

  alice.introduce("bob", now_ns());
  auto pending = drive(alice, sa, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(pending.size() == 1);
  REQUIRE(is<IntroductionPending>(pending[0]));
  // Bob hears about alice on his registered socket without asking, and answers.
  auto ib = drive(bob, sb, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(ib.size() == 1);
  REQUIRE(is<IntroductionReceived>(ib[0]));
  CHECK(as<IntroductionReceived>(ib[0]).candidates.name == "alice");
  CHECK(as<IntroductionReceived>(ib[0]).candidates.reflexive == sa.local());
  CHECK(as<IntroductionReceived>(ib[0]).candidates.hosts[0].to_string() == "10.1.1.1:1111");
  // Alice gets bob's candidates and offer once bob has answered.
  auto ia = drive(alice, sa, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(ia.size() == 1);
  REQUIRE(is<Introduced>(ia[0]));
  CHECK(as<Introduced>(ia[0]).candidates.reflexive == sb.local());
  REQUIRE(as<Introduced>(ia[0]).candidates.hosts.size() == 1);
  CHECK(as<Introduced>(ia[0]).candidates.hosts[0].to_string() == "10.2.2.2:2222");
  CHECK(as<Introduced>(ia[0]).remote.ufrag == as<IntroductionReceived>(ib[0]).local.ufrag);
  // Alice's acknowledgement goes out with the next turn of her loop.
  drive(alice, sa, server.primary, [](const auto&) { return true; });
  CHECK(server.metric("introductions_total") == 1);
  CHECK(server.process->alive());
}

TEST_CASE("a third party can neither take a name, nor read candidates, nor introduce as another", "[p2p][e2e]") {
  Server server;
  UdpSocket sa, sb, sm;
  Client alice(config("alice", 1, SocketAddress::from_ip("10.1.1.1", 1111).value()));
  Client bob(config("bob", 2, SocketAddress::from_ip("10.2.2.2", 2222).value()));
  REQUIRE(is<Registered>(register_client(alice, sa, server.primary)));
  REQUIRE(is<Registered>(register_client(bob, sb, server.primary)));

  Client fake_alice(config("alice", 66, SocketAddress::from_ip("10.6.6.6", 6666).value()));
  auto taken = register_client(fake_alice, sm, server.primary);
  CHECK(is<RequestFailed>(taken));
  CHECK(as<RequestFailed>(taken).error_code == 403);

  fake_alice.introduce("bob", now_ns());
  auto intro = drive(fake_alice, sm, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(intro.size() == 1);
  CHECK(is<RequestFailed>(intro[0]));
  CHECK(as<RequestFailed>(intro[0]).error_code == 401);
  fake_alice.lookup("bob", now_ns());
  auto look = drive(fake_alice, sm, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(look.size() == 1);
  CHECK(as<RequestFailed>(look[0]).error_code == 401);
  // Nothing reached bob: no introduction was made on mallory's word.
  CHECK_FALSE(sb.recv(500));

  // Registered under her own name, mallory learns by Lookup only that alice exists.
  Client mallory(config("mallory", 66, SocketAddress::from_ip("10.6.6.6", 6666).value()));
  REQUIRE(is<Registered>(register_client(mallory, sm, server.primary)));
  Message lookup;
  lookup.method = method::kLookup;
  lookup.transaction_id = random_transaction_id();
  lookup.add_string(attr::kPeerName, "alice");
  lookup.add_string(attr::kUsername, "mallory");
  auto answer = ask(sm, server.primary, encode(lookup, {std::nullopt, Bytes(32, 66), true}));
  REQUIRE(answer);
  CHECK(answer->message_class == MessageClass::SuccessResponse);
  CHECK(answer->find(attr::kReflexiveCandidate) == nullptr);
  CHECK(answer->find(attr::kHostCandidate) == nullptr);

  // Alice's registration is intact: an introduction from bob reaches her real socket.
  bob.introduce("alice", now_ns());
  auto bp = drive(bob, sb, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(bp.size() == 1);
  CHECK(is<IntroductionPending>(bp[0]));
  auto ai = drive(alice, sa, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(ai.size() == 1);
  CHECK(as<IntroductionReceived>(ai[0]).candidates.name == "bob");
  auto bi = drive(bob, sb, server.primary, [](const auto& e) { return !e.empty(); });
  REQUIRE(bi.size() == 1);
  CHECK(as<Introduced>(bi[0]).candidates.reflexive == sa.local());
  CHECK(server.metric("name_conflicts_total") == 1);
}

TEST_CASE("bad input through a real socket: RFC error or silent drop, a log line, no crash", "[p2p][e2e]") {
  Server server;
  UdpSocket s;
  const auto& to = server.primary;
  Message binding;
  binding.transaction_id = random_transaction_id();
  auto good = encode(binding, {std::nullopt, std::nullopt, true});

  // Truncated header: dropped.
  CHECK_FALSE(ask(s, to, ByteView(good).first(10), 300));
  // Oversized datagram with a consistent header: dropped.
  Bytes big(9000, 0);
  big[1] = 0x01;
  big[2] = static_cast<std::uint8_t>((big.size() - 20) >> 8);
  big[3] = static_cast<std::uint8_t>(big.size() - 20);
  big[4] = 0x21, big[5] = 0x12, big[6] = 0xA4, big[7] = 0x42;
  CHECK_FALSE(ask(s, to, big, 300));
  // Header length past the end: dropped.
  auto longer = good;
  longer[3] = static_cast<std::uint8_t>(longer[3] + 8);
  CHECK_FALSE(ask(s, to, longer, 300));
  // Attribute length past the end of the message: dropped.
  Message sw;
  sw.transaction_id = random_transaction_id();
  sw.add_string(attr::kSoftware, "abcd");
  auto overrun = encode(sw);
  overrun[23] = 0x40;
  CHECK_FALSE(ask(s, to, overrun, 300));
  // Bad fingerprint: dropped.
  auto badfp = good;
  badfp[badfp.size() - 1] ^= 0xFF;
  CHECK_FALSE(ask(s, to, badfp, 300));
  // Wrong magic cookie on a rendezvous method: dropped (RFC 3489 has no such method).
  Message reg;
  reg.method = method::kRegister;
  reg.transaction_id = random_transaction_id();
  reg.add_string(attr::kUsername, "eve");
  auto wrong_cookie = encode(reg);
  wrong_cookie[4] ^= 0x01;
  CHECK_FALSE(ask(s, to, wrong_cookie, 300));
  // Wrong cookie on Binding: answered the RFC 3489 way, with MAPPED-ADDRESS only.
  auto legacy = encode(binding);
  legacy[4] ^= 0x01;
  auto lr = ask(s, to, legacy);
  REQUIRE(lr);
  CHECK(lr->is_legacy());
  CHECK(*lr->address(attr::kMappedAddress).value() == s.local());
  CHECK(lr->find(attr::kXorMappedAddress) == nullptr);
  // Unknown comprehension-required attribute: 420 with UNKNOWN-ATTRIBUTES.
  Message unknown;
  unknown.transaction_id = random_transaction_id();
  unknown.add(0x7f01, Bytes{1, 2, 3, 4});
  auto ur = ask(s, to, encode(unknown));
  CHECK(error_of(ur) == 420);
  REQUIRE(ur);
  CHECK(ur->unknown_attributes().value() == std::vector<std::uint16_t>{0x7f01});
  // Duplicate comprehension-required attribute in a rendezvous request: 400.
  Message dup;
  dup.method = method::kRegister;
  dup.transaction_id = random_transaction_id();
  dup.add_string(attr::kUsername, "eve");
  dup.add(attr::kRegistrationKey, Bytes(32, 5));
  dup.add(attr::kRegistrationKey, Bytes(32, 6));
  CHECK(error_of(ask(s, to, encode(dup, {std::nullopt, Bytes(32, 5), true}))) == 400);
  // Bad integrity on Register: 401, and the name is not taken.
  Message badmi;
  badmi.method = method::kRegister;
  badmi.transaction_id = random_transaction_id();
  badmi.add_string(attr::kUsername, "eve");
  badmi.add(attr::kRegistrationKey, Bytes(32, 5));
  CHECK(error_of(ask(s, to, encode(badmi, {std::nullopt, Bytes(32, 9), true}))) == 401);
  // CHANGE-REQUEST without an alternate address: 420 (RFC 5780 section 6.1).
  Message change;
  change.transaction_id = random_transaction_id();
  change.add_change_request(true, true);
  CHECK(error_of(ask(s, to, encode(change))) == 420);

  CHECK(binding_works(s, to));
  CHECK(server.process->alive());
  CHECK(server.metric("malformed_total") == 5);
  CHECK(server.metric("registrations") == 0);
  auto log = server.process->stderr_text();
  CHECK_THAT(log, Catch::Contains("shorter than the 20-byte header"));
  CHECK_THAT(log, Catch::Contains("exceeds the 8192-byte limit"));
  CHECK_THAT(log, Catch::Contains("does not match the"));
  CHECK_THAT(log, Catch::Contains("past the end of the message"));
  CHECK_THAT(log, Catch::Contains("FINGERPRINT"));
  CHECK_THAT(log, Catch::Contains("unknown comprehension-required attribute 0x7f01"));
  CHECK_THAT(log, Catch::Contains("duplicate REGISTRATION-KEY"));
  CHECK_THAT(log, Catch::Contains("bad integrity"));
}

TEST_CASE("a bounded flood from many ports leaves the limits intact and the server answering", "[p2p][e2e]") {
  Server server({"--rate", "20", "--burst", "40", "--max-registrations-per-source", "4"});
  // 100 sockets x 20 Binding requests = 2000 requests from one source IP, as fast as we can.
  std::vector<std::unique_ptr<UdpSocket>> sockets;
  for (int i = 0; i < 100; ++i) sockets.push_back(std::make_unique<UdpSocket>());
  Message req;
  req.transaction_id = random_transaction_id();
  auto wire = encode(req);
  auto started = now_ns();
  for (int round = 0; round < 20; ++round) {
    for (auto& s : sockets) s->send(server.primary, wire);
  }
  std::size_t answers = 0;
  for (auto& s : sockets) {
    while (s->recv(answers == 0 ? 1000 : 50)) answers++;
  }
  double elapsed_s = static_cast<double>(now_ns() - started) / 1e9;
  INFO("answers " << answers << " in " << elapsed_s << " s");
  // The per-source budget is 40 at once plus 20 per second afterwards.
  CHECK(answers >= 40);
  CHECK(static_cast<double>(answers) <= 40 + 20 * elapsed_s + 1);
  CHECK(server.metric("rate_limited_total") > 0);

  // Registration quota per source holds under many ports: 4 of 10 get through.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // let the bucket refill
  int registered = 0, refused = 0;
  for (int i = 0; i < 10; ++i) {
    Client c(config("flood" + std::to_string(i), static_cast<std::uint8_t>(i + 1),
                    SocketAddress::from_ip("10.0.0.1", 1).value()));
    auto e = register_client(c, *sockets[static_cast<std::size_t>(i)], server.primary);
    if (is<Registered>(e)) registered++;
    if (is<RequestFailed>(e) && as<RequestFailed>(e).error_code == 486) refused++;
  }
  CHECK(registered == 4);
  CHECK(refused == 6);
  CHECK(server.metric("registrations") == 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(binding_works(*sockets[0], server.primary));
  CHECK(server.process->alive());
}
