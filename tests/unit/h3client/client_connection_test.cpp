// The sans-IO HTTP/3 client core on simulated time: no sockets, no loop.
#include <ngtcp2/ngtcp2.h>

#include <catch2/catch.hpp>
#include <cerrno>

#include "transport/core/clock.hpp"
#include "transport/h3/client.hpp"

using namespace quiclab;

namespace {

h3::ClientConnection::Config config() {
  h3::ClientConnection::Config c;
  c.origin = *http::Url::parse("https://127.0.0.1:4433/x");
  c.options.insecure = true;
  c.tuning.handshake_timeout_ms = 2000;
  c.local = *SocketAddress::from_ip("127.0.0.1", 50000);
  c.remote = *SocketAddress::from_ip("127.0.0.1", 4433);
  return c;
}

struct Captured {
  std::vector<Bytes> datagrams;
  h3::ClientConnection::BurstSink sink() {
    return [this](const h3::ClientConnection::Burst& b) {
      std::size_t seg = b.segment_size ? b.segment_size : b.data.size();
      for (std::size_t off = 0; off < b.data.size(); off += seg) {
        auto n = std::min(seg, b.data.size() - off);
        datagrams.emplace_back(b.data.begin() + static_cast<std::ptrdiff_t>(off),
                               b.data.begin() + static_cast<std::ptrdiff_t>(off + n));
      }
      return b.data.size();
    };
  }
};

http::ClientRequest get(const char* url) {
  http::ClientRequest r;
  r.url = *http::Url::parse(url);
  return r;
}

}  // namespace

TEST_CASE("h3 client core: first flight is a padded Initial, then the handshake times out", "[h3client]") {
  ManualClock clock(1'000 * kNanosPerSecond);
  auto conn = h3::ClientConnection::create(config(), clock.now());
  REQUIRE(conn.ok());
  auto& c = **conn;
  std::optional<http::ClientResponse> done;
  c.submit(get("https://127.0.0.1:4433/a"), nullptr, [&](http::ClientResponse&& r) { done = std::move(r); });
  CHECK(c.outstanding() == 1);

  Captured out;
  c.write(clock.now(), out.sink());
  REQUIRE(!out.datagrams.empty());
  // Client Initials are padded to at least 1200 bytes (RFC 9000 section 14.1)
  // and carry a long header of type Initial.
  CHECK(out.datagrams[0].size() >= 1200);
  CHECK((out.datagrams[0][0] & 0xf0) == 0xc0);
  REQUIRE(c.expiry().has_value());
  CHECK(*c.expiry() > clock.now());

  // No answer: timers (PTO) resend, until the handshake timeout ends it.
  std::size_t rounds = 0;
  while (!c.closed() && rounds++ < 1000) {
    REQUIRE(c.expiry().has_value());
    clock.set(std::max(clock.now() + 1, *c.expiry()));
    c.handle_expiry(clock.now());
    c.write(clock.now(), out.sink());
  }
  REQUIRE(c.closed());
  CHECK_FALSE(c.expiry().has_value());  // closed: nothing scheduled (nullopt, not a sentinel)
  CHECK(out.datagrams.size() > 1);      // probes were sent
  auto ev = c.take_events();
  REQUIRE(ev.ready.has_value());
  REQUIRE_FALSE(ev.ready->ok());
  CHECK(ev.ready->error().code == ETIMEDOUT);
  REQUIRE(ev.completions.size() == 1);
  REQUIRE(ev.completions[0].response.error.has_value());
  CHECK(ev.completions[0].response.error->message.find("handshake timed out") != std::string::npos);
  ev.completions[0].callback(std::move(ev.completions[0].response));
  CHECK(done.has_value());
  // Submitting to a closed connection fails the request, through events.
  c.submit(get("https://127.0.0.1:4433/b"), nullptr, nullptr);
  CHECK(c.take_events().completions.size() == 1);
}

TEST_CASE("h3 client core: garbage datagrams are dropped, the connection lives on", "[h3client]") {
  ManualClock clock(5 * kNanosPerSecond);
  auto conn = h3::ClientConnection::create(config(), clock.now());
  REQUIRE(conn.ok());
  auto& c = **conn;
  Captured out;
  c.write(clock.now(), out.sink());
  auto cfg = config();
  Bytes junk(1300, 0x5a);
  for (std::uint8_t first : {0x00, 0x40, 0xc0, 0xff}) {
    junk[0] = first;
    c.read(cfg.local, cfg.remote, junk, 0, clock.now());
    INFO("after full junk " << int(first));
    REQUIRE_FALSE(c.closed());
    c.read(cfg.local, cfg.remote, ByteView(junk).first(3), 0, clock.now());
    INFO("after 3 bytes");
    REQUIRE_FALSE(c.closed());
    c.read(cfg.local, cfg.remote, ByteView(), 0, clock.now());
    INFO("after empty");
    REQUIRE_FALSE(c.closed());
  }
  // Seeded random datagrams of every size class, bounded in count.
  std::uint32_t x = 12345;
  auto next = [&x] { return x = x * 1103515245u + 12345u; };
  for (int i = 0; i < 3000; ++i) {
    Bytes d((next() >> 8) % 1500 + 1);
    for (auto& b : d) b = static_cast<std::uint8_t>(next() >> 16);
    c.read(cfg.local, cfg.remote, d, static_cast<std::uint8_t>(i & 3), clock.now());
  }
  c.write(clock.now(), out.sink());
  auto ev = c.take_events();
  if (ev.ready) INFO("closed: " << (ev.ready->ok() ? std::string("ok") : ev.ready->error().message));
  CHECK_FALSE(c.closed());
  CHECK_FALSE(ev.ready.has_value());
}

TEST_CASE("h3 client core: abort fails queued requests and writes CONNECTION_CLOSE", "[h3client]") {
  ManualClock clock(7 * kNanosPerSecond);
  auto conn = h3::ClientConnection::create(config(), clock.now());
  REQUIRE(conn.ok());
  auto& c = **conn;
  for (int i = 0; i < 3; ++i) c.submit(get("https://127.0.0.1:4433/q"), nullptr, nullptr);
  Captured out;
  c.write(clock.now(), out.sink());
  c.close(true, clock.now());
  CHECK(c.closed());
  CHECK_FALSE(c.close_packet().empty());
  auto ev = c.take_events();
  CHECK(ev.completions.size() == 3);
  for (auto& d : ev.completions) {
    REQUIRE(d.response.error.has_value());
    CHECK(d.response.error->code == ECANCELED);
  }
}

TEST_CASE("h3 client core: the loopback datagram size is the config's number, the core asks the kernel nothing",
          "[h3client]") {
  ManualClock clock(9 * kNanosPerSecond);
  auto payload = [&](std::size_t loopback, const char* remote, std::size_t forced = 0) {
    auto cfg = config();
    cfg.remote = *SocketAddress::from_ip(remote, 4433);
    cfg.loopback_udp_payload = loopback;
    cfg.options.max_udp_payload = forced;
    auto conn = h3::ClientConnection::create(cfg, clock.now());
    REQUIRE(conn.ok());
    return ngtcp2_conn_get_max_tx_udp_payload_size((*conn)->conn());
  };
  // No number from the adapter: ngtcp2's default, even to loopback (the
  // core used to measure the loopback MTU itself and take 16 KiB).
  CHECK(payload(0, "127.0.0.1") == NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);
  CHECK(payload(9000, "127.0.0.1") == 9000);
  CHECK(payload(9000, "192.0.2.1") == NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);  // not loopback
  CHECK(payload(9000, "127.0.0.1", 1300) == 1300);                         // forced wins
}

TEST_CASE("h3 client core: a failing qlog sink fails create(), a resume session that cannot be used is ignored",
          "[h3client][qlog]") {
  ManualClock clock(11 * kNanosPerSecond);
  auto cfg = config();
  cfg.qlog = [](std::string_view) -> Result<std::unique_ptr<quic::QlogWriter>> {
    return make_error(ErrorDomain::os, EACCES, "cannot open qlog file x.sqlog: Permission denied");
  };
  auto failed = h3::ClientConnection::create(cfg, clock.now());
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == EACCES);

  auto cfg2 = config();
  h3::StoredSession junk;
  junk.tls_session = {1, 2, 3};
  junk.transport_params = {4, 5, 6};
  cfg2.resume = junk;
  std::size_t reported = 0;
  cfg2.on_session = [&](const h3::StoredSession&) { ++reported; };
  auto conn = h3::ClientConnection::create(cfg2, clock.now());
  REQUIRE(conn.ok());
  CHECK_FALSE((*conn)->info().resumed);
  Captured out;
  (*conn)->write(clock.now(), out.sink());
  CHECK_FALSE(out.datagrams.empty());
  CHECK(reported == 0);  // nothing from the server yet
}
