// The QUIC server core on simulated time with a capturing packet sink: bad
// input never crashes it or leaks connections, and the address-validation and
// flood defences do what they say.
#include "transport/quic/server_core.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "tests/unit/quic/client_initial.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;

namespace {

struct CaptureSink : quic::PacketSink {
  struct Sent {
    quic::Path path;
    Bytes data;
    std::size_t segment_size;
  };
  std::vector<Sent> sent;
  quic::SendResult send(const quic::Path& path, ByteView data, std::size_t segment_size, quic::Ecn) override {
    sent.push_back({path, Bytes(data.begin(), data.end()), segment_size});
    return {quic::SendStatus::sent, data.size(), 0};
  }
  std::size_t bytes_to(const SocketAddress& a) const {
    std::size_t n = 0;
    for (const auto& s : sent)
      if (s.path.remote == a) n += s.data.size();
    return n;
  }
};

struct Fixture {
  Fixture() {
    std::random_device rd;
    dir = std::filesystem::temp_directory_path() / ("quiclab-core-test-" + std::to_string(rd()));
    auto certs = tls::generate_self_signed(dir);
    REQUIRE(certs);
    quic::tls::ServerConfig tc;
    tc.cert_file = certs->cert;
    tc.key_file = certs->key;
    auto ctx = quic::tls::make_server_context(tc);
    REQUIRE(ctx);
    tls = std::move(*ctx);
  }
  ~Fixture() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::unique_ptr<quic::ServerCore> make_core(quic::ServerCoreConfig config = {}) {
    return std::make_unique<quic::ServerCore>(config, *tls, sink, nullptr);
  }
  std::filesystem::path dir;
  std::unique_ptr<quic::tls::ServerContext> tls;
  CaptureSink sink;
  SocketAddress server = *SocketAddress::from_ip("127.0.0.1", 4433);
  quic::Path path_from(std::uint16_t port) { return quic::Path{server, *SocketAddress::from_ip("127.0.0.1", port)}; }
};

constexpr Timestamp kStart = 1'000 * kNanosPerSecond;

}  // namespace

TEST_CASE("quic server core: random bytes, truncated and oversized datagrams are dropped", "[quic][core]") {
  Fixture f;
  auto core = f.make_core();
  std::mt19937 rng(42);
  Timestamp now = kStart;
  for (int i = 0; i < 3000; ++i) {
    std::size_t len = rng() % 1600;
    if (i % 100 == 0) len = 65000;  // oversized
    Bytes junk(len);
    for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
    core->on_datagram(f.path_from(static_cast<std::uint16_t>(10000 + i % 50)), junk, quic::Ecn::not_ect, now);
    now += 1000;
  }
  core->flush(now);
  CHECK(core->connection_count() == 0);
  CHECK(core->stats().dropped_unknown > 0);
  // Answers to junk are only ever small control packets (stateless reset,
  // Version Negotiation), each no larger than what triggered it.
  for (const auto& s : f.sink.sent) CHECK(s.data.size() <= 1200);

  // Truncations of a real Initial: none may create a connection.
  test::ClientInitialBuilder builder;
  auto initial = builder.build(*SocketAddress::from_ip("127.0.0.1", 20000), f.server);
  REQUIRE(initial.size() >= 1200);
  for (std::size_t cut : {0ul, 1ul, 5ul, 20ul, 100ul, 600ul, 1199ul}) {
    core->on_datagram(f.path_from(20000), ByteView(initial.data(), cut), quic::Ecn::not_ect, now);
  }
  core->flush(now);
  CHECK(core->connection_count() == 0);
  // The whole Initial does.
  core->on_datagram(f.path_from(20000), initial, quic::Ecn::not_ect, now);
  core->flush(now);
  CHECK(core->connection_count() == 1);
  CHECK(core->half_open_count() == 1);
  // Its first flight respects the amplification limit.
  CHECK(f.sink.bytes_to(*SocketAddress::from_ip("127.0.0.1", 20000)) <= 3 * initial.size());
  CHECK(core->stats().amplification_violations == 0);
}

TEST_CASE("quic server core: unknown versions get Version Negotiation, only for full-size datagrams", "[quic][core]") {
  Fixture f;
  auto core = f.make_core();
  test::ClientInitialBuilder builder;
  auto initial = builder.build(*SocketAddress::from_ip("127.0.0.1", 20001), f.server);
  REQUIRE(initial.size() >= 1200);
  Bytes odd = initial;
  odd[1] = 0x1a;  // version 0x1a000001: not one we speak
  core->on_datagram(f.path_from(20001), odd, quic::Ecn::not_ect, kStart);
  CHECK(core->stats().version_negotiations_sent == 1);
  core->on_datagram(f.path_from(20001), ByteView(odd.data(), 600), quic::Ecn::not_ect, kStart);
  CHECK(core->stats().version_negotiations_sent == 1);
  CHECK(core->connection_count() == 0);
}

TEST_CASE("quic server core: Retry, forged Retry tokens and garbage tokens", "[quic][core]") {
  Fixture f;
  quic::ServerCoreConfig config;
  config.retry = true;
  auto core = f.make_core(config);
  test::ClientInitialBuilder builder;
  auto from = *SocketAddress::from_ip("127.0.0.1", 20002);
  // No token: Retry, no connection state.
  core->on_datagram(f.path_from(20002), builder.build(from, f.server), quic::Ecn::not_ect, kStart);
  CHECK(core->stats().retries_sent == 1);
  CHECK(core->connection_count() == 0);
  // A token that looks like a Retry token but was not made by us: INVALID_TOKEN close.
  Bytes forged(80, 0x5a);
  forged[0] = NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY;
  core->on_datagram(f.path_from(20002), builder.build(from, f.server, forged), quic::Ecn::not_ect, kStart);
  CHECK(core->stats().invalid_token_closes == 1);
  CHECK(core->connection_count() == 0);
  // A forged regular (NEW_TOKEN) token and a token of unknown kind: treated as no token (Retry).
  Bytes regular(60, 0x11);
  regular[0] = NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR;
  core->on_datagram(f.path_from(20002), builder.build(from, f.server, regular), quic::Ecn::not_ect, kStart);
  core->on_datagram(f.path_from(20002), builder.build(from, f.server, Bytes(30, 0xee)), quic::Ecn::not_ect, kStart);
  CHECK(core->stats().retries_sent == 3);
  CHECK(core->stats().tokens_accepted == 0);
  CHECK(core->connection_count() == 0);
}

TEST_CASE("quic server core: a flood of Initials from many ports stays bounded", "[quic][core]") {
  Fixture f;
  quic::ServerCoreConfig config;
  config.max_half_open = 300;
  config.auto_retry_half_open = 100;
  config.handshake_timeout = 2 * kNanosPerSecond;
  auto core = f.make_core(config);
  test::ClientInitialBuilder builder;
  Timestamp now = kStart;
  for (int i = 0; i < 1000; ++i) {
    auto port = static_cast<std::uint16_t>(30000 + i);
    core->on_datagram(f.path_from(port), builder.build(*SocketAddress::from_ip("127.0.0.1", port), f.server),
                      quic::Ecn::not_ect, now);
    if (i % 32 == 31) core->flush(now);
    now += 10'000;
  }
  core->flush(now);
  // Past 100 half-open connections the server asks for Retry instead of keeping state.
  CHECK(core->half_open_count() == 100);
  CHECK(core->connection_count() == 100);
  CHECK(core->stats().retries_sent == 900);
  // The handshakes never complete: the handshake timeout frees everything.
  for (int i = 0; i < 100 && core->connection_count() > 0; ++i) {
    now += 100 * kNanosPerMilli;
    if (auto next = core->expiry(); next && *next > now) now = *next;
    core->handle_expiry(now);
  }
  CHECK(core->connection_count() == 0);
  CHECK(core->half_open_count() == 0);
  CHECK(core->stats().amplification_violations == 0);
  CHECK(core->stats().max_unvalidated_ratio <= 3.0);
}

TEST_CASE("quic server core: stateless reset for unknown short-header packets, rate limited", "[quic][core]") {
  Fixture f;
  quic::ServerCoreConfig config;
  config.stateless_resets_per_second = 10;
  auto core = f.make_core(config);
  Bytes pkt(100, 0x42);
  pkt[0] = 0x40;  // short header, fixed bit set
  for (int i = 0; i < 50; ++i) core->on_datagram(f.path_from(40000), pkt, quic::Ecn::not_ect, kStart + i);
  CHECK(core->stats().stateless_resets_sent == 10);
  for (const auto& s : f.sink.sent) CHECK(s.data.size() < pkt.size());
  // Too short to answer without amplification or loops.
  Bytes tiny(20, 0x42);
  tiny[0] = 0x40;
  core->on_datagram(f.path_from(40000), tiny, quic::Ecn::not_ect, kStart + 2 * kNanosPerSecond);
  CHECK(core->stats().stateless_resets_sent == 10);
}

TEST_CASE("quic server core: shutdown with half-open connections finishes", "[quic][core]") {
  Fixture f;
  auto core = f.make_core();
  test::ClientInitialBuilder builder;
  for (int i = 0; i < 5; ++i) {
    auto port = static_cast<std::uint16_t>(50000 + i);
    core->on_datagram(f.path_from(port), builder.build(*SocketAddress::from_ip("127.0.0.1", port), f.server),
                      quic::Ecn::not_ect, kStart);
  }
  core->flush(kStart);
  CHECK(core->connection_count() == 5);
  core->shutdown(kStart + 1);
  CHECK(core->finished());
  // New Initials are ignored during shutdown.
  core->on_datagram(f.path_from(50010), builder.build(*SocketAddress::from_ip("127.0.0.1", 50010), f.server),
                    quic::Ecn::not_ect, kStart + 2);
  CHECK(core->connection_count() == 0);
}

namespace {
// A STUN message as a shared socket sees one: header, then SOFTWARE.
Bytes stun_message(std::uint16_t type, std::uint8_t first_tid_byte) {
  const std::string software = "quiclab test";  // 12 bytes: no padding
  Bytes m = {static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type), 0, 16, 0x21, 0x12, 0xA4, 0x42};
  for (int i = 0; i < 12; ++i) m.push_back(static_cast<std::uint8_t>(first_tid_byte + i));
  m.insert(m.end(), {0x80, 0x22, 0x00, 0x0c});
  m.insert(m.end(), software.begin(), software.end());
  return m;
}
}  // namespace

TEST_CASE("quic server core: STUN is never answered, not even with a stateless reset", "[quic][core][demux]") {
  Fixture f;
  auto core = f.make_core();
  // A Binding request (first byte 0x00) and a Binding success response
  // (0x01): short-header look-alikes with the fixed bit clear, 36 bytes each,
  // which an unknown-CID rule alone would answer with a stateless reset.
  auto request = stun_message(0x0001, 0x10);
  auto response = stun_message(0x0101, 0x20);
  REQUIRE(request.size() == 36);
  core->on_datagram(f.path_from(40100), request, quic::Ecn::not_ect, kStart);
  core->on_datagram(f.path_from(40100), response, quic::Ecn::not_ect, kStart + 1);
  core->flush(kStart + 2);
  CHECK(f.sink.sent.empty());
  CHECK(core->stats().dropped_stun == 2);
  CHECK(core->stats().stateless_resets_sent == 0);
  // The same bytes with a wrong cookie, or a length that does not match the
  // datagram, are not STUN: they are greased-QUIC-shaped unknown packets.
  auto no_cookie = request;
  no_cookie[4] = 0x22;
  auto bad_length = request;
  bad_length.push_back(0);
  core->on_datagram(f.path_from(40101), no_cookie, quic::Ecn::not_ect, kStart + 3);
  core->on_datagram(f.path_from(40102), bad_length, quic::Ecn::not_ect, kStart + 4);
  CHECK(core->stats().dropped_stun == 2);
  CHECK(core->stats().stateless_resets_sent == 2);
  CHECK(core->connection_count() == 0);
}

TEST_CASE("quic server core: the accept hook chooses who may open a connection", "[quic][core][demux]") {
  Fixture f;
  quic::ServerCoreConfig config;
  auto allowed = *SocketAddress::from_ip("127.0.0.1", 20010);
  std::vector<std::string> asked;
  config.accept_initial = [&](const SocketAddress& remote) {
    asked.push_back(remote.to_string());
    return remote == allowed;
  };
  auto core = f.make_core(config);
  test::ClientInitialBuilder builder;
  auto stranger = *SocketAddress::from_ip("127.0.0.1", 20011);
  core->on_datagram(f.path_from(20011), builder.build(stranger, f.server), quic::Ecn::not_ect, kStart);
  // An unknown version from a stranger gets no Version Negotiation either.
  auto odd = builder.build(stranger, f.server);
  odd[1] = 0x1a;
  core->on_datagram(f.path_from(20011), odd, quic::Ecn::not_ect, kStart);
  core->flush(kStart);
  CHECK(core->connection_count() == 0);
  CHECK(f.sink.sent.empty());
  CHECK(core->stats().dropped_not_accepted == 2);
  CHECK(core->stats().version_negotiations_sent == 0);
  core->on_datagram(f.path_from(20010), builder.build(allowed, f.server), quic::Ecn::not_ect, kStart + 1);
  core->flush(kStart + 1);
  CHECK(core->connection_count() == 1);
  CHECK(f.sink.bytes_to(allowed) > 0);
  CHECK(asked == std::vector<std::string>{"127.0.0.1:20011", "127.0.0.1:20011", "127.0.0.1:20010"});
}

TEST_CASE("quic server core: the loopback datagram size is the config's number, the qlog goes to the sink",
          "[quic][core][qlog]") {
  Fixture f;
  struct Writer final : quic::QlogWriter {
    Bytes* out;
    explicit Writer(Bytes* o) : out(o) {}
    void write(ByteView data) override { out->insert(out->end(), data.begin(), data.end()); }
  };
  std::map<std::string, Bytes> traces;
  std::map<std::string, std::size_t> payload;  // max_tx_udp_payload_size per connection
  quic::ServerCoreConfig config;
  config.loopback_udp_payload = 9000;  // what the adapter measured, not what the kernel says
  config.qlog = [&](std::string_view id) -> Result<std::unique_ptr<quic::QlogWriter>> {
    return std::unique_ptr<quic::QlogWriter>(std::make_unique<Writer>(&traces[std::string(id)]));
  };
  auto core = std::make_unique<quic::ServerCore>(config, *f.tls, f.sink,
                                                 [&](ngtcp2_conn* conn, const quic::ConnectionInfo& info) {
                                                   payload[info.id] = ngtcp2_conn_get_max_tx_udp_payload_size(conn);
                                                   return std::unique_ptr<quic::StreamApplication>();
                                                 });
  test::ClientInitialBuilder builder;
  auto loopback = *SocketAddress::from_ip("127.0.0.1", 20020);
  core->on_datagram(f.path_from(20020), builder.build(loopback, f.server), quic::Ecn::not_ect, kStart);
  // A peer that is not on loopback gets ngtcp2's default, whatever the number.
  auto remote = *SocketAddress::from_ip("192.0.2.7", 20021);
  core->on_datagram(quic::Path{f.server, remote}, builder.build(remote, f.server), quic::Ecn::not_ect, kStart);
  core->flush(kStart);
  REQUIRE(core->connection_count() == 2);
  REQUIRE(payload.size() == 2);
  std::vector<std::size_t> sizes;
  for (const auto& [id, n] : payload) sizes.push_back(n);
  std::sort(sizes.begin(), sizes.end());
  CHECK(sizes == std::vector<std::size_t>{NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE, 9000});
  // One trace per connection, by the same ID, and no file anywhere.
  REQUIRE(traces.size() == 2);
  for (const auto& [id, bytes] : traces) {
    CHECK(payload.count(id) == 1);
    REQUIRE_FALSE(bytes.empty());
    CHECK(bytes[0] == 0x1e);  // JSON-SEQ record separator
  }
  // A sink that fails costs the trace, not the connection.
  quic::ServerCoreConfig failing;
  failing.qlog = [](std::string_view) -> Result<std::unique_ptr<quic::QlogWriter>> {
    return make_error(ErrorDomain::os, EACCES, "no room");
  };
  auto core2 = f.make_core(failing);
  auto other = *SocketAddress::from_ip("127.0.0.1", 20022);
  core2->on_datagram(f.path_from(20022), builder.build(other, f.server), quic::Ecn::not_ect, kStart);
  CHECK(core2->connection_count() == 1);
}

TEST_CASE("qlog_to_directory writes <id>.sqlog, an empty directory means no sink", "[quic][qlog]") {
  Fixture f;
  CHECK_FALSE(quic::qlog_to_directory({}));
  auto sink = quic::qlog_to_directory(f.dir);
  REQUIRE(sink);
  {
    auto w = sink("00aabb");
    REQUIRE(w);
    REQUIRE(*w);
    const std::uint8_t chunk[] = {0x1e, '{', '}', '\n'};
    (*w)->write(ByteView(chunk, sizeof chunk));
    (*w)->finish();
    (*w)->write(ByteView(chunk, sizeof chunk));  // after finish: ignored
  }
  CHECK(std::filesystem::file_size(f.dir / "00aabb.sqlog") == 4);
  auto missing = quic::qlog_to_directory(f.dir / "no" / "such")("01");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().domain == ErrorDomain::os);
  CHECK(missing.error().message.find("00aabb") == std::string::npos);
  CHECK(missing.error().message.find("01.sqlog") != std::string::npos);
}
