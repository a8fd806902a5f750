#include "transport/tls/tls.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

using namespace quiclab;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path =
      fs::temp_directory_path() / ("quiclab-tls-" + std::to_string(::getpid()) + "-" + std::to_string(rand()));
  ~TempDir() { fs::remove_all(path); }
};

// Shuttles ciphertext between two sessions until neither has anything to say.
void pump(tls::Session& a, tls::Session& b) {
  for (int i = 0; i < 20; ++i) {
    (void)a.handshake();
    (void)b.handshake();
    auto ab = a.take_output();
    auto ba = b.take_output();
    if (ab.empty() && ba.empty()) return;
    b.feed(ab);
    a.feed(ba);
  }
}
}  // namespace

TEST_CASE("self-signed certificate, in-memory TLS 1.3 handshake with ALPN h2", "[tls]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path);
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}, {}, {}});
  REQUIRE(server_ctx.ok());
  auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert, {}, {}});
  REQUIRE(client_ctx.ok());

  tls::Session server(*server_ctx);
  tls::Session client(*client_ctx, "localhost");
  pump(client, server);
  REQUIRE(client.established());
  REQUIRE(server.established());
  CHECK(client.alpn() == "h2");
  CHECK(server.alpn() == "h2");
  CHECK(client.version() == "TLSv1.3");

  REQUIRE(client.write(as_bytes("hello")).ok());
  server.feed(client.take_output());
  Bytes buf(100);
  auto n = server.read(buf);
  REQUIRE(n.ok());
  CHECK(as_string(ByteView(buf.data(), *n)) == "hello");
}

TEST_CASE("verification fails for the wrong name and for an unknown CA", "[tls]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path, {"localhost"});
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}, {}, {}});
  REQUIRE(server_ctx.ok());
  SECTION("wrong host name") {
    auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert, {}, {}});
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "example.org");
    pump(client, server);
    auto r = client.handshake();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("verify") != std::string::npos);
  }
  SECTION("no ALPN overlap is refused") {
    auto client_ctx = tls::Context::client({{"http/1.1"}, true, {}, {}, {}});
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "localhost");
    pump(client, server);
    CHECK_FALSE(server.established());
    CHECK_FALSE(client.handshake().ok());
  }
}

TEST_CASE("a missing certificate file is a clear error", "[tls]") {
  auto ctx = tls::Context::server({"/nonexistent/cert.pem", "/nonexistent/key.pem", {"h2"}, {}, {}});
  REQUIRE_FALSE(ctx.ok());
  CHECK(ctx.error().message.find("/nonexistent/cert.pem") != std::string::npos);
}

TEST_CASE("read: close_notify is a clean close, a corrupted record a TLS failure", "[tls][error]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path);
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}, {}, {}});
  REQUIRE(server_ctx.ok());
  auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert, {}, {}});
  REQUIRE(client_ctx.ok());
  Bytes buf(100);

  SECTION("close_notify") {
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "localhost");
    pump(client, server);
    REQUIRE(server.established());
    client.shutdown();
    server.feed(client.take_output());
    auto n = server.read(buf);
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().is_clean_close());
    CHECK(n.error().domain == ErrorDomain::tls);
    CHECK_FALSE(server.peer_alert());
  }
  SECTION("a record whose authentication tag does not verify") {
    tls::Session server(*server_ctx);
    tls::Session client(*client_ctx, "localhost");
    pump(client, server);
    REQUIRE(server.established());
    REQUIRE(client.write(as_bytes("hello")).ok());
    auto record = client.take_output();
    REQUIRE(record.size() > 10);
    record.back() ^= 0x01;
    server.feed(record);
    auto n = server.read(buf);
    REQUIRE_FALSE(n.ok());
    INFO(n.error().message);
    CHECK_FALSE(n.error().is_clean_close());
    CHECK(n.error().domain == ErrorDomain::tls);
    CHECK(n.error().code == SSL_ERROR_SSL);  // the very value that once meant "closed"
    CHECK_FALSE(server.peer_alert());        // we raised it; the peer sent nothing
    // The failure sticks: later reads report it again.
    auto again = server.read(buf);
    REQUIRE_FALSE(again.ok());
    CHECK_FALSE(again.error().is_clean_close());
  }
}

namespace {
// The lengths of the TLS records in `wire` (5-byte headers: type, version, length).
std::vector<std::size_t> record_lengths(ByteView wire) {
  std::vector<std::size_t> out;
  for (std::size_t at = 0; at + 5 <= wire.size();) {
    const std::size_t len = (std::size_t{wire[at + 3]} << 8) | wire[at + 4];
    out.push_back(len);
    at += 5 + len;
  }
  return out;
}
}  // namespace

TEST_CASE("dynamic record sizing: one-segment records first, full ones after, small again after idle", "[tls]") {
  TempDir dir;
  auto paths = tls::generate_self_signed(dir.path);
  REQUIRE(paths.ok());
  auto server_ctx = tls::Context::server({paths->cert, paths->key, {"h2"}, {}, {}});
  auto client_ctx = tls::Context::client({{"h2"}, false, paths->cert, {}, {}});
  REQUIRE(server_ctx.ok());
  REQUIRE(client_ctx.ok());
  tls::Session server(*server_ctx);
  tls::Session client(*client_ctx, "localhost");
  pump(client, server);
  REQUIRE(server.established());
  (void)server.take_output();

  // 1448-byte segments: 1426 bytes of plaintext per record in TLS 1.3 (1443 on the wire after the header).
  CHECK(tls::one_segment_record(1448) == 1426);
  CHECK(tls::one_segment_record(1448, false) == 1419);
  CHECK(tls::one_segment_record(100) == 512);
  tls::RecordSizing rs;
  rs.small_bytes = tls::one_segment_record(1448);
  rs.full_after = 64 * 1024;
  rs.idle = kNanosPerSecond;
  server.set_record_sizing(rs);
  Bytes body(200 * 1024, 0x5a);
  const Timestamp t0 = 10 * kNanosPerSecond;
  REQUIRE(server.write(body, t0).ok());
  auto lengths = record_lengths(server.take_output());
  // ceil(64 KiB / 1426) = 46 small records, then full ones (16384 + 17 on the wire).
  const std::size_t small = (64 * 1024 + 1425) / 1426;
  REQUIRE(lengths.size() > small);
  for (std::size_t i = 0; i < small; ++i) CHECK(lengths[i] == 1426 + 17);
  for (std::size_t i = small; i + 1 < lengths.size(); ++i) CHECK(lengths[i] == 16384 + 17);
  CHECK(server.small_records() == small);
  // Busy (written 100 ms later): still full-size.
  REQUIRE(server.write(body, t0 + 100 * kNanosPerMilli).ok());
  CHECK(record_lengths(server.take_output()).front() == 16384 + 17);
  // Idle for 2 s: small again.
  REQUIRE(server.write(Bytes(5000, 1), t0 + 2100 * kNanosPerMilli).ok());
  auto again = record_lengths(server.take_output());
  REQUIRE(again.size() == 4);  // 1426 * 3 + 722
  CHECK(again[0] == 1426 + 17);
  CHECK(again[3] == 5000 - 3 * 1426 + 17);
  // Sizing off: records of 16 KiB as before.
  tls::Session s2(*server_ctx);
  tls::Session c2(*client_ctx, "localhost");
  pump(c2, s2);
  (void)s2.take_output();
  REQUIRE(s2.write(body, t0).ok());
  auto plain = record_lengths(s2.take_output());
  CHECK(plain.front() == 16384 + 17);
  CHECK(s2.small_records() == 0);
}
